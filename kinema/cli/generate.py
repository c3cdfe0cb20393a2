"""``kinema generate EXPORT``: videos from an inference export, one seed per video."""

from __future__ import annotations

from kinema.cli._args import SAMPLER_RANGES, Range, add_sampler_arguments

NAME = "generate"
HELP = "generate videos from an exported model (one seed per video), or an interpolation between seeds"
ORDER = 40
RANGES = {"walk_loop": Range(int, 2), "interpolate": Range(int, 2), "jobs": Range(int, 1, 256),
          **SAMPLER_RANGES}  # kinema.cli._args
DESCRIPTION = """Generate videos from an inference export (.safetensors + .json, or a run folder: its latest
export). Output: one file per video in --out DIR (default), one video file when --out names one
(OUT.mp4, .webm, .gif, ...: the video of a single seed, or a grid of several), a tiled grid video
(--grid), a PNG grid (--png-grid), or folders of PNG frames (--frames-dir). The codec follows
--out's extension unless --codec is given. Clip length: the export's preview length when it
records one (meta.preview_frames), else the trained length. --interpolate STEPS instead walks the latents
through the seeds in order (--loop back to the first) and writes one video."""


def add_arguments(p) -> None:
    p.add_argument("export", help="export .safetensors/.json, or a training run folder")
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-63,70 (one video each; default 0-7)")
    p.add_argument("--num", type=int, default=None, help="number of videos: seeds 0..NUM-1 (instead of --seeds)")
    p.add_argument("--class", dest="class_", default=None, help="class index or name (conditional models)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per video (default: the export's preview length, else the trained length)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the files (default: from the export, else 16)")
    p.add_argument("--truncation", type=float, default=1.0, help="latent temperature in [0, 2]; <1 = more typical")
    p.add_argument("--batch", type=int, default=8, help="videos per generator call")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--out", required=True, help="output folder (one file per video) or file (--grid, --png-grid, --interpolate)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--grid", action="store_true", help="write one tiled grid video to --out FILE")
    kind.add_argument("--png-grid", action="store_true", help="write a PNG grid (rows = videos, columns = frames)")
    kind.add_argument("--frames-dir", action="store_true", help="write raw frames: --out DIR/seedNNNN/000000.png")
    p.add_argument("--cols", type=int, default=None, help="grid columns (--grid)")
    p.add_argument("--interpolate", type=int, default=None, metavar="STEPS",
                   help="interpolate through the seeds with STEPS clips per segment, written as one video")
    p.add_argument("--walk-loop", type=int, default=None, metavar="FRAMES",
                   help="one seamless loop of FRAMES frames whose per-frame latent circles through the seeds "
                        "(frame-per-latent models: dcgan)")
    p.add_argument("--space", default="all", help="latents to interpolate: all, content, motion, or a comma list")
    p.add_argument("--loop", action="store_true", help="interpolation returns to the first seed (seamless loop)")
    p.add_argument("--codec", default=None, help="h264, hevc, vp9, av1, gif, lossless, png (default: from --out's "
                                                  "extension, h264 for a folder)")
    p.add_argument("--crf", type=int, default=None, help="quality (lower = better, codec-specific scale)")
    p.add_argument("--preset", default=None, help="encoder speed preset (x264: ultrafast..veryslow)")
    p.add_argument("--jobs", type=int, default=1, help="videos encoded in parallel (one file per seed)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    add_sampler_arguments(p)


def run(args) -> int:
    from pathlib import Path

    from kinema.errors import KinemaError
    from kinema.fsutil import refuse_existing
    from kinema.io.write import codec_for
    from kinema.sample import load, parse_seeds
    from kinema import dist

    if args.seeds is not None and args.num is not None:
        raise KinemaError("give --seeds or --num, not both")
    if args.num is not None and args.num < 1:
        raise KinemaError(f"--num must be >= 1, got {args.num}")
    seeds = parse_seeds(args.seeds if args.seeds is not None else f"0-{(args.num or 8) - 1}")
    if args.fps is not None and not args.fps > 0:
        raise KinemaError(f"--fps must be positive, got {args.fps}")
    out = Path(args.out)
    refuse_existing(out, args.force)
    # The codec follows --out's extension; a folder of per-seed files defaults to h264 (.mp4).
    codec = "png" if args.frames_dir else codec_for(out, args.codec or (None if out.suffix else "h264"))
    # Under torchrun each rank drives its own device (cuda:LOCAL_RANK) and takes its share of the seeds.
    device = dist.init(args.device) if dist.is_torchrun() else args.device
    with dist.session():
        model = load(args.export, device=device)
        model.set_sampler(args.steps, args.cfg, args.solver)
        return _write(args, seeds, out, codec, model)


def _write(args, seeds, out, codec, model) -> int:
    import sys
    from pathlib import Path

    from kinema import dist
    from kinema.io import write_video
    from kinema.io.write import EXT_CODEC
    from kinema.sample import outputs

    fps = args.fps or model.fps
    enc = dict(codec=codec, crf=args.crf, preset=args.preset, force=args.force)
    gen = dict(frames=args.frames, class_=args.class_, truncation=args.truncation, batch=args.batch)
    label = args.seeds or f"0-{len(seeds) - 1}"

    one_file = Path(out).suffix != "" and Path(out).suffix.lower() in EXT_CODEC and not args.frames_dir
    if one_file and not (args.walk_loop is not None or args.interpolate is not None or args.grid or args.png_grid):
        if dist.is_main():  # --out names a video file: one video, or a grid of several
            if len(seeds) == 1:
                write_video(out, model.generate(seeds, **gen)[0], fps, overwrite=args.force, codec=codec,
                            crf=args.crf, preset=args.preset)
            else:
                outputs.write_grid(model, seeds, out, fps, False, args.cols, **enc, **gen)
            print(f"wrote {out} ({'seed ' + str(seeds[0]) if len(seeds) == 1 else f'grid of {len(seeds)} videos'})",
                  file=sys.stderr)
    elif not (args.walk_loop is not None or args.interpolate is not None or args.grid or args.png_grid):
        outputs.write_per_seed(model, seeds, out, fps, jobs=args.jobs, **enc, **gen)   # sharded over ranks
        dist.print0(f"wrote {len(seeds)} videos to {out}/" + (f" ({dist.world_size()} ranks)" if dist.world_size() > 1
                                                                   else ""), file=sys.stderr)
    elif not dist.is_main():
        pass                     # single files: rank 0 writes them, the others wait at the barrier below
    elif args.walk_loop is not None:
        n = outputs.write_walk_loop(model, seeds, out, fps, args.walk_loop, args.class_, args.truncation, **enc)
        print(f"wrote {out} ({n}-frame loop through seeds {label})", file=sys.stderr)
    elif args.interpolate is not None:
        n = outputs.write_interpolation(model, seeds, out, fps, args.interpolate, args.space, args.loop,
                                        args.grid, args.png_grid, args.cols, **enc, **gen)
        print(f"wrote {out} ({n} clips through seeds {label})", file=sys.stderr)
    elif args.grid or args.png_grid:
        outputs.write_grid(model, seeds, out, fps, args.png_grid, args.cols, **enc, **gen)
        print(f"wrote {out} ({len(seeds)} videos)", file=sys.stderr)
    dist.barrier()
    return 0
