"""``kinema train [ARCHIVE|builtin:NAME] --model mocogan --kimg 500 --batch 32 --out runs/x``.

Argument parsing only: options start from a named preset (or, with ``--resume``, from the run's
own ``config.json``) and override the fields given; ``kinema.train.train`` does the work.
Multi-GPU / multi-process: ``torchrun --nproc_per_node=N -m kinema train ...``, or ``--gpus N``,
which runs exactly that (``torchrun --standalone``, the local machine only) with the same options.
"""

from __future__ import annotations

from pathlib import Path

from kinema.errors import KinemaError
from kinema.cli._args import NONNEG, NONNEG_INT, SIDE, Range
from kinema.models import MODELS

NAME = "train"
HELP = "train a video model on an archive or a built-in dataset"
ORDER = 30
# Numeric options that are not "integer >= 1 / real > 0" (kinema.cli._args).
RANGES = {"r1": NONNEG, "grad_clip": NONNEG, "weight_decay": NONNEG, "ema_kimg": NONNEG, "workers": NONNEG_INT,
          "threads": Range(int, 1, 1024), "gpus": Range(int, 1, 1024), "resolution": SIDE,
          "class_dropout": Range(float, 0, 1), "joint_images": Range(int, 0, 64)}

# option -> (config section, field); None values (not given) leave the base config alone.
FIELDS = {
    "data": ("data", "source"), "resolution": ("data", "resolution"), "frames": ("data", "frames"),
    "workers": ("data", "num_workers"), "flip": ("data", "flip"),
    "model": ("model", "name"), "width": ("model", "width"), "conditional": ("model", "conditional"),
    "spectral_norm": ("model", "spectral_norm"), "vae": ("model", "vae"),
    "class_dropout": ("loss", "class_dropout"), "joint_images": ("loss", "joint_images"),
    "loss": ("loss", "kind"), "r1": ("loss", "r1_gamma"), "r1_interval": ("loss", "r1_interval"),
    "lr_g": ("optim", "g_lr"), "lr_d": ("optim", "d_lr"), "grad_clip": ("optim", "grad_clip"),
    "weight_decay": ("optim", "weight_decay"),
    "kimg": ("schedule", "kimg"), "minutes": ("schedule", "minutes"), "batch": ("schedule", "batch"),
    "seed": ("schedule", "seed"), "ema_kimg": ("schedule", "ema_kimg"),
    "world_invariant": ("schedule", "world_invariant"),
    "out": ("log", "out"), "snapshot_kimg": ("log", "snapshot_kimg"), "sample_kimg": ("log", "sample_kimg"),
    "keep": ("log", "keep"),
    "device": ("runtime", "device"), "compile": ("runtime", "compile"), "precision": ("runtime", "precision"),
    "channels_last": ("runtime", "channels_last"), "fused": ("runtime", "fused"),
}


def add_arguments(p) -> None:
    p.add_argument("data", nargs="?", default=None,
                   help="prepared archive folder or builtin:NAME (default: the preset's, builtin:moving_digits)")
    p.add_argument("--preset", default="default", help="starting configuration: default, demo, tiny, gpu64, vaegrid, flow")
    p.add_argument("--model", choices=list(MODELS), help="model (preset: mocogan)")
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option (repeatable), VALUE as JSON where it parses: latent=grid, depth=6, patch=[1,2,2]")
    p.add_argument("--vae", metavar="RUN|STATE|EXPORT",
                   help="flow: learn the latents of this videovae run (latent=grid); default: pixels")
    p.add_argument("--class-dropout", type=float, help="flow: share of clips trained without their class (for --cfg)")
    p.add_argument("--joint-images", type=int, help="flow: independent frames of other clips appended to each clip "
                                                    "(image-video joint training; 0 = off)")
    p.add_argument("--kimg", type=float, help="train for this many thousand clips (preset: 500)")
    p.add_argument("--minutes", type=float, help="also stop after this many minutes of wall clock")
    p.add_argument("--batch", type=int, help="global batch, split over ranks (preset: 32)")
    p.add_argument("--out", help="run folder (preset: runs/train)")
    p.add_argument("--resume", metavar="latest|PATH", help="continue from the newest state in --out, or a state file")
    p.add_argument("--seed", type=int, help="seed of weights, latents, data order (preset: 0)")
    p.add_argument("--resolution", type=int, help="frame side for built-in data (archives decide their own)")
    p.add_argument("--frames", type=int, help="frames per clip for built-in data")
    p.add_argument("--width", type=int, help="base channel count of the networks")
    p.add_argument("--loss", choices=["ns", "hinge"], help="GAN loss: non-saturating BCE or hinge")
    p.add_argument("--r1", type=float, help="R1 gamma (0 = off)")
    p.add_argument("--r1-interval", type=int, help="lazy R1: apply every N steps")
    p.add_argument("--lr-g", type=float, help="generator learning rate")
    p.add_argument("--lr-d", type=float, help="discriminator learning rate")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0 = off)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--ema-kimg", type=float, help="EMA half-life in thousands of clips")
    p.add_argument("--world-invariant", action="store_true", default=None,
                   help="same results whatever the number of ranks: global-batch random draws, synced batch norm")
    p.add_argument("--diffaug", metavar="LIST", help="D-input augmentation: comma list of translation,cutout,color or none")
    p.add_argument("--conditional", action="store_true", default=None, help="condition on the archive's labels")
    p.add_argument("--spectral-norm", action="store_true", default=None, help="spectral norm in D")
    p.add_argument("--flip", action="store_true", default=None, help="random horizontal flips of real clips")
    p.add_argument("--snapshot-kimg", type=float, help="save state + export every N kimg")
    p.add_argument("--sample-kimg", type=float, help="write a sample grid every N kimg")
    p.add_argument("--keep", type=int, help="keep the last K states and exports")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="bf16 autocast or fp32 (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"],
                   help="channels-last memory layout for weights and batches (auto: on for CUDA)")
    p.add_argument("--fused", choices=["auto", "on", "off"], help="fused AdamW kernel (auto: on for CUDA)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile G and D")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="launch N processes on the local machine with torchrun --standalone (one per GPU; with "
                        "--device cpu, N CPU processes on gloo); for several machines call torchrun yourself")
    p.add_argument("--config", metavar="JSON", help="start from this config.json instead of the preset")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true",
                   help="no progress display (elsewhere than a terminal it is one line every 30 s)")


def _diffaug(spec: str) -> dict:
    parts = {s.strip() for s in spec.split(",") if s.strip()}
    unknown = parts - {"translation", "cutout", "color", "none"}
    if unknown:
        raise KinemaError(f"--diffaug: unknown augmentation(s) {sorted(unknown)} (translation, cutout, color, none)")
    return {"translation": 0.125 if "translation" in parts else 0.0,
            "cutout": 0.5 if "cutout" in parts else 0.0, "color": "color" in parts}


def _model_opts(items: list[str]) -> dict:
    """``["depth=6", "latent=grid"]`` -> ``{"depth": 6, "latent": "grid"}`` (values as JSON where they parse)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KinemaError(f"--model-opt: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def resolve_config(args):
    """The config this command line asks for (base: --config, the run's config.json on resume, or a preset)."""
    import dataclasses

    from kinema.train.config import DiffAugConfig, get_preset, load_json, override

    out_given = Path(args.out) if args.out else None
    source = None
    if args.config:
        source = args.config
    elif args.resume and (out_given or Path(get_preset(args.preset).log.out)).joinpath("config.json").is_file():
        source = (out_given or Path(get_preset(args.preset).log.out)) / "config.json"
    if source is not None:
        cfg = load_json(source)
        out = Path(cfg.log.out)
        if out_given is None and (out.is_absolute() or ".." in out.parts):
            # A config file may come from someone else: by default it writes only below this folder.
            raise KinemaError(f"{source}: log.out {str(out)[:120]!r} points outside the current folder; "
                              "pass --out to write there")
    else:
        cfg = get_preset(args.preset)
    sections: dict[str, dict] = {}
    for option, (section, field) in FIELDS.items():
        value = getattr(args, option, None)
        if value is not None:
            sections.setdefault(section, {})[field] = value
    if getattr(args, "quiet", False):
        sections.setdefault("log", {})["progress"] = False
    if args.model_opt:
        sections.setdefault("model", {})["extra"] = {**cfg.model.extra, **_model_opts(args.model_opt)}
    cfg = override(cfg, **sections)
    if args.diffaug is not None:
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, augment=DiffAugConfig(**_diffaug(args.diffaug))))
    return cfg.validate()


def _without_gpus(argv: list[str]) -> list[str]:
    """``argv`` without ``--gpus N`` / ``--gpus=N``, also as argparse's abbreviations (``--gpu 2``)."""
    def is_gpus(arg: str) -> bool:
        name = arg.split("=", 1)[0]
        return len(name) > 2 and "--gpus".startswith(name)

    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif is_gpus(a):
            skip = "=" not in a      # the value is the next word
        else:
            out.append(a)
    return out


def launch(args) -> int:
    """``--gpus N``: run this same command under ``torchrun --standalone --nproc_per_node=N``."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.gpus}",
           "-m", "kinema", *_without_gpus(args._argv)]
    print("kinema: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    return subprocess.run(cmd).returncode


def _say(*args, **kwargs) -> None:
    """Messages on stderr (rank 0), like every command's; stdout carries data only (--dry-run)."""
    import sys

    from kinema import dist

    dist.print0(*args, file=sys.stderr, **kwargs)


def run(args) -> int:
    from kinema import dist
    from kinema.train import list_states, to_json, train

    cfg = resolve_config(args)
    from kinema.devices import check_device

    check_device(cfg.runtime.device)  # also a config file's device
    if args.gpus is not None:
        if args.gpus < 1:
            raise KinemaError(f"--gpus: must be >= 1, got {args.gpus}")
        if dist.is_torchrun():
            raise KinemaError("--gpus: already running under torchrun; drop --gpus or call kinema directly")
        if cfg.schedule.batch % args.gpus:
            raise KinemaError(f"--gpus: global batch {cfg.schedule.batch} is not divisible by {args.gpus} ranks")
        if not args.dry_run:
            return launch(args)
    if args.dry_run:
        dist.print0(to_json(cfg), end="")
        return 0
    if not args.resume and list_states(cfg.log.out):
        raise KinemaError(f"{cfg.log.out}: already holds a run (training-state-*.pt); pass --resume latest "
                          "to continue it or choose another --out")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    with dist.session():
        result = train(cfg, resume=args.resume, log=_say)
    if result.export is not None:
        _say(f"export: {result.export}")
    return 0
