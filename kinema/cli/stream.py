"""``kinema stream EXPORT``: generate frames in chunks and encode them as they come."""

from __future__ import annotations

from kinema.cli._args import NONNEG_INT, SAMPLER_RANGES, add_sampler_arguments

NAME = "stream"
HELP = "generate one long video chunk by chunk, encoded as it goes (file or stdout), in bounded memory"
ORDER = 41
RANGES = {"overlap": NONNEG_INT, **SAMPLER_RANGES}  # numeric options that are not "integer >= 1 / real > 0" (kinema.cli._args)
DESCRIPTION = """Generate --frames frames of one seed in chunks, encoding each chunk as soon as it is made,
so memory stays flat for any length. --out FILE writes a file atomically; --out - writes MPEG-TS
(or --format raw: headerless rgb24 frames) to stdout, e.g.
  kinema stream EXPORT --frames 10000 --out - | ffplay -
Statistics (generated fps vs target fps) go to stderr."""


def add_arguments(p) -> None:
    p.add_argument("export", help="export .safetensors/.json, a training run folder, or (--runtime onnx) "
                                  "a .onnx file from kinema export-onnx")
    p.add_argument("--out", required=True, help="output file, or - for stdout")
    p.add_argument("--frames", type=int, default=1000, help="total frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the stream")
    p.add_argument("--fps", type=float, default=None, help="target frame rate (default: from the export, else 16)")
    p.add_argument("--chunk", type=int, default=16, help="frames generated per step")
    p.add_argument("--class", dest="class_", default=None, help="class index or name (conditional models)")
    p.add_argument("--truncation", type=float, default=1.0, help="latent temperature in [0, 2]")
    p.add_argument("--overlap", type=int, default=None,
                   help="frames shared by consecutive clips: cross-faded (fixed-length models; default T/4), or "
                        "continued (flow models; default T/2)")
    p.add_argument("--drift", type=int, default=4, help="clips between latent keypoints (fixed-length models)")
    p.add_argument("--format", dest="fmt", default=None, choices=["mpegts", "raw"],
                   help="byte-stream format for --out - (default mpegts)")
    p.add_argument("--codec", default="h264", help="h264, hevc, vp9, av1, lossless, ...")
    p.add_argument("--crf", type=int, default=None, help="quality (lower = better)")
    p.add_argument("--preset", default=None, help="encoder speed preset (x264: ultrafast for live streams)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--runtime", default=None, choices=["torch", "onnx"],
                   help="run the generator in PyTorch or in onnxruntime on the CPU (default: onnx for a .onnx file)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--realtime", action="store_true", help="pace output to the target fps (live viewing)")
    p.add_argument("--no-thread", action="store_true", help="encode on the generating thread (no overlap)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_sampler_arguments(p)


def run(args) -> int:
    import sys

    from kinema.errors import KinemaError
    from kinema.sample import load

    if args.fps is not None and not args.fps > 0:
        raise KinemaError(f"--fps must be positive, got {args.fps}")
    runtime = args.runtime or ("onnx" if str(args.export).endswith(".onnx") else "torch")
    if runtime == "onnx":
        from kinema.models.onnx import load_onnx
        if args.device != "cpu":
            raise KinemaError(f"--runtime onnx runs on the CPU (onnxruntime), not --device {args.device}")
        if not str(args.export).endswith(".onnx"):
            raise KinemaError(f"{args.export}: --runtime onnx takes a .onnx file (make one with kinema export-onnx)")
        model = load_onnx(args.export, threads=args.threads)
    elif str(args.export).endswith(".onnx"):
        raise KinemaError(f"{args.export}: an ONNX file runs with --runtime onnx")
    else:
        model = load(args.export, device=args.device)
        model.set_sampler(args.steps, args.cfg, args.solver)
    fps = args.fps or model.fps
    if args.out == "-" or args.fmt == "raw":
        h = w = model.resolution
        pix = "gray" if model.channels == 1 else "rgb24"
        print(f"streaming {args.frames} frames {w}x{h} {pix} at {fps:g} fps "
              f"({args.fmt or 'mpegts'})", file=sys.stderr)
    try:
        stats = model.stream(args.out, args.frames, seed=args.seed, fps=fps, chunk=args.chunk, codec=args.codec,
                             fmt=args.fmt, crf=args.crf, class_=args.class_, truncation=args.truncation,
                             threaded=not args.no_thread, realtime=args.realtime, overlap=args.overlap,
                             drift=args.drift, force=args.force, preset=args.preset)
    except BrokenPipeError:
        # The reader went away (player closed, `| head`): a normal end for a pipe, not an error.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("kinema: stream: reader closed the pipe", file=sys.stderr)
        return 0
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s: generated {stats['generated_fps']:.1f} fps "
          f"vs target {stats['target_fps']:g} fps ({stats['realtime_factor']:.2f}x real time, "
          f"{stats['strategy']} continuity)", file=sys.stderr)
    return 0
