"""``kinema train-upscaler ARCHIVE``: train a small x2/x4 super-resolution model on your own clips."""

from __future__ import annotations

from kinema.cli._args import SIDE, Range

NAME = "train-upscaler"
HELP = "train a learned x2/x4 upscaler on an archive's clips (held-out PSNR vs bicubic reported)"
ORDER = 46
RANGES = {"holdout": Range(float, 0, 0.9), "threads": Range(int, 1, 1024), "resolution": SIDE}  # kinema.cli._args
DESCRIPTION = """Train a small sub-pixel upscaler on ARCHIVE (a prepared archive folder or builtin:NAME):
pairs are frames and their area-downscaled copies; a held-out part of the clips (whole source
videos) measures PSNR against bicubic. Writes OUT.safetensors + OUT.json; apply it with
`kinema edit upscale INPUT OUTPUT --model OUT.safetensors`."""


def add_arguments(p) -> None:
    p.add_argument("archive", help="archive folder, or builtin:NAME")
    p.add_argument("--out", required=True, help="output .safetensors (a .json is written beside it)")
    p.add_argument("--scale", type=int, default=2, choices=[2, 3, 4], help="upscaling factor")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--width", type=int, default=32, help="channels of the hidden layers")
    p.add_argument("--depth", type=int, default=4, help="hidden 3x3 conv layers")
    p.add_argument("--batch", type=int, default=16, help="patches per step")
    p.add_argument("--patch", type=int, default=48, help="high-resolution patch side")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (cosine decay)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of source videos held out")
    p.add_argument("--resolution", type=int, default=64, help="builtin:NAME only: frame size to prepare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="replace an existing model file")


def run(args) -> int:
    import json
    from dataclasses import asdict
    import sys
    from pathlib import Path

    import torch

    from kinema.data import open_archive, resolve_source
    from kinema.data.builtin import builtin_name
    from kinema.edit.upscale import UpscalerTrainConfig, save_upscaler, train_upscaler
    from kinema.errors import KinemaError
    from kinema.fsutil import refuse_existing

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise KinemaError(f"{out}: --out must end in .safetensors")
    refuse_existing(out, args.force)
    for name, value in (("steps", args.steps), ("width", args.width), ("depth", args.depth),
                        ("batch", args.batch), ("patch", args.patch)):
        if value < 1:
            raise KinemaError(f"--{name} must be >= 1, got {value}")
    if args.patch < 2 * args.scale:
        raise KinemaError(f"--patch {args.patch} is too small for x{args.scale}")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = str(args.archive)
    if not Path(spec).exists() and builtin_name(spec) is not None:
        archive = resolve_source(spec, args.resolution, frames=8)
    else:
        archive = open_archive(spec)
    cfg = UpscalerTrainConfig(scale=args.scale, width=args.width, depth=args.depth, steps=args.steps,
                              seconds=None if args.minutes is None else args.minutes * 60, batch=args.batch,
                              patch=args.patch, lr=args.lr, holdout=args.holdout, seed=args.seed)
    model, report = train_upscaler(archive, cfg, log=lambda m: print(m, file=sys.stderr))
    meta = {"archive": str(archive.path), "archive_hash": archive.content_hash,
            "train": asdict(cfg), "held_out": report}
    save_upscaler(out, model, meta)
    print(json.dumps({"out": str(out), **report}))
    return 0
