"""``kinema studio [RUNS_DIR]``: a local web app to train, watch, generate, compare and edit."""

from __future__ import annotations

NAME = "studio"
HELP = "a local web app: runs and their curves, training, generation, comparison, editing"
ORDER = 70
DESCRIPTION = """Serve kinema studio on http://127.0.0.1:PORT/ for the run folders under RUNS_DIR
(default: runs). Nothing outside RUNS_DIR and the --data-root folders can be read or written
through it. Needs the studio extra: pip install "kinema[studio]"."""



def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ranges():
    from kinema.cli._args import Range

    return {"port": Range(int, 1, 65535), "threads": Range(int, 1, 1024), "max_seeds": Range(int, 1, 100_000),
            "max_frames": Range(int, 1, 100_000), "max_resolution": Range(int, 8, 8192),
            "max_queue": Range(int, 1, 100_000), "max_upload_mb": Range(float, 0, 1_000_000, lo_open=True)}


RANGES = _ranges()   # kinema.cli._args


def add_arguments(p) -> None:
    from kinema.studio.app import Limits

    d = Limits()
    p.add_argument("runs_dir", nargs="?", default="runs", help="folder of training runs (created if missing)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder of prepared archives that training and metrics may read (repeatable)")
    p.add_argument("--port", type=int, default=8765, help="TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --expose")
    p.add_argument("--expose", action="store_true",
                   help="allow --host to be a non-loopback address (anyone who reaches it can train and generate)")
    p.add_argument("--device", default="cpu", help="torch device for generation and training (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for generation and training runs")
    p.add_argument("--max-seeds", type=int, default=d.max_seeds, help="videos per generate request")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="frames per generated video")
    p.add_argument("--max-resolution", type=int, default=d.max_resolution, help="largest export frame side served")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="jobs that may wait in the queue")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="largest upload, MiB")


def run(args) -> int:
    import dataclasses
    import sys

    from kinema.errors import KinemaError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise KinemaError(f"kinema studio needs the studio extra ({err.name} is missing): "
                          'pip install "kinema[studio]"') from None
    if not is_loopback(args.host) and not args.expose:
        raise KinemaError(f"--host {args.host}: not a loopback address; add --expose to serve on it "
                          "(the studio has no login: anyone who reaches it can read your runs and use your machine)")
    from kinema.sample.api import check_device
    from kinema.studio.app import Limits, Studio, serve

    check_device(args.device)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    limits = dataclasses.replace(Limits(), max_seeds=args.max_seeds, max_frames=args.max_frames,
                                 max_resolution=args.max_resolution, max_queue=args.max_queue,
                                 max_upload_mb=args.max_upload_mb)
    studio = Studio(args.runs_dir, args.data_root, limits, device=args.device, train_threads=args.threads)
    if not is_loopback(args.host):
        print(f"kinema studio: WARNING: serving on {args.host}:{args.port}, reachable from other machines; "
              "there is no login, anyone who reaches it can read these runs and train or generate", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"kinema studio: http://{host}:{args.port}/  (runs: {studio.runs_dir}; Ctrl-C to quit)", file=sys.stderr,
          flush=True)
    serve(studio, args.host, args.port)
    return 0
