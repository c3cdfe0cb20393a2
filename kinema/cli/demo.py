"""``kinema demo [--minutes 3] [--out runs/demo]``: train a small model on moving digits, write a preview."""

from __future__ import annotations

from kinema.cli._args import Range

from kinema.models import MODELS


NAME = "demo"
HELP = "train a small model on built-in moving digits for a few minutes and write a preview video"
ORDER = 1
RANGES = {"threads": Range(int, 0, 1024)}  # 0: automatic (kinema.cli._args)


def add_arguments(p) -> None:
    p.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget, preparation included")
    p.add_argument("--out", default="runs/demo", help="run folder (an earlier run there is replaced only with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier run (training states, exports) in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, latents and data order")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: the cores this process may use, minus those other programs keep busy)")
    p.add_argument("--model", choices=list(MODELS), default=None,
                   help="model to train instead of the demo preset's")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress display (elsewhere than a terminal it is one line every 30 s)")


def run(args) -> int:
    import sys

    import torch

    from kinema.devices import available_cores
    from kinema.train.demo import run_demo

    torch.set_num_threads(args.threads or available_cores())
    say = lambda *a, **k: print(*a, file=sys.stderr, flush=True, **k)  # noqa: E731  (messages: stderr)
    run_demo(minutes=args.minutes, out=args.out, seed=args.seed, model=args.model, progress=not args.no_progress,
             force=args.force, log=say)
    return 0
