"""Every registry model, trained for the same budget at the demo's settings, scored on motion side by side.

    python bench/bench_motion.py --minutes 3                     # each model of kinema.models.MODELS, 3 min each
    python bench/bench_motion.py --minutes 15 --targets 15min
    python bench/bench_motion.py --kimg 20 --models dcgan,mocogan --dataset bouncing_shapes
    python bench/bench_motion.py --check                          # no training: the measures on real and corrupted clips

Training: the `kinema demo` preset (kinema/train/config.py ``preset_demo``: 32x32, batch 16, hinge +
lazy R1, Adam 2e-3) with ``model.name`` set to each model; the preset's model options
(``model.extra``) are kept where the model accepts them. ``--frames`` sets the training clip length
(default: the preset's). Data is prepared before the clock starts; each model trains for ``--minutes``
of wall clock (or ``--kimg`` thousand clips) in this process, one after the other, so the numbers are
from one run on one machine. Scoring: kinema.metrics.motion.score_generator, 64 generated vs 64 real
clips of 16 frames (models that cannot extend: their own length) plus the 64-frame extension check
for models that can, as bench/bench_demo.py does; one table, one column per model, PASS/FAIL per
target of ``--targets``.

``--check`` prints the measures of held-out real, real slowed down 2x (each frame twice), frozen
(first frame repeated) and shuffled-frame clips against real clips, for the two object datasets and
photo_pans (generic measures only): the numbers quoted in docs/motion.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_demo import EXT_ROWS, ROWS, fmt  # noqa: E402  (the same rows as the demo bench)


def check(samples: int, size: int) -> None:
    """The motion measures of corrupted real clips against real clips (no model)."""
    import numpy as np
    import torch

    from kinema.metrics.motion import MotionReference, real_clips, summary

    print(f"motion measures vs {samples} real clips of 16 frames at {size}x{size} (another seed)\n")
    for dataset in ("moving_digits", "bouncing_shapes", "photo_pans"):
        channels = 1 if dataset == "moving_digits" else 3
        real = real_clips(dataset, samples, 16, size, channels)
        other = real_clips(dataset, samples, 32, size, channels, seed=424242)
        rng = np.random.default_rng(0)
        variants = {"held-out real": other[:, :16], "slowed 2x": np.repeat(other[:, :8], 2, axis=1),
                    "frozen": np.repeat(other[:, :1], 16, axis=1),
                    "shuffled": np.stack([c[rng.permutation(16)] for c in other[:, :16]])}
        # CPU seconds of this process (wall clock swings with other programs on a shared machine).
        t0 = time.process_time()
        ref = MotionReference(real, dataset if dataset != "photo_pans" else None)
        t_ref = time.process_time() - t0
        cols, times = {}, []
        for name, v in variants.items():
            t0 = time.process_time()
            cols[name] = summary(ref.report(v))
            times.append(time.process_time() - t0)
        names = list(cols["held-out real"])
        rows = [("measure", *cols)] + [(n, *(fmt(cols[c].get(n)) for c in cols)) for n in names]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print(f"{dataset} ({channels} channel{'s' if channels > 1 else ''})")
        print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
        print(f"CPU seconds ({torch.get_num_threads()} thread(s)): real reference {t_ref:.2f}, "
              f"one report of {samples} clips {np.median(times):.2f} (median of 4)\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training wall clock per model (default 3)")
    budget.add_argument("--kimg", type=float, default=None, help="training length per model in thousands of clips")
    ap.add_argument("--models", default=None, help="comma-separated registry names (default: all of kinema.models.MODELS)")
    ap.add_argument("--dataset", default="moving_digits", choices=["moving_digits", "bouncing_shapes"])
    ap.add_argument("--frames", type=int, default=0, help="training clip length (default: the demo preset's)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--targets", choices=["default", "15min"], default="default")
    ap.add_argument("--out", default=None, help="folder for the runs (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: the free cores)")
    ap.add_argument("--check", action="store_true", help="score corrupted real clips instead of training")
    ap.add_argument("--size", type=int, default=32, help="--check: frame size")
    args = ap.parse_args()

    import torch

    from kinema.devices import available_cores

    torch.set_num_threads(args.threads or available_cores())
    if args.check:
        check(args.samples, args.size)
        return 0

    from kinema.data import resolve_source
    from kinema.metrics.digits import load_classifier
    from kinema.metrics.motion import TARGETS, check_targets, format_target, score_generator
    from kinema.models import MODELS, accepted_options, load_generator
    from kinema.train import get_preset, override
    from kinema.train.loop import train

    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    minutes = args.minutes if args.minutes is not None else (0.0 if args.kimg else 3.0)
    root = Path(args.out or tempfile.mkdtemp(prefix="kinema-bench-motion-"))
    base = get_preset("demo")
    base = override(base, data={"source": f"builtin:{args.dataset}", "frames": args.frames or base.data.frames},
                    schedule={"minutes": minutes, "kimg": args.kimg or 0.0},
                    log={"progress": False, "tensorboard": False, "motion_clips": 0})
    # Outside every model's clock: the data and the classifier (cached after the first time).
    resolve_source(base.data.source, base.data.resolution, base.data.frames, cache_dir=base.data.cache_dir)
    load_classifier(args.dataset, size=base.data.resolution, channels=1)

    results = {}
    for name in names:
        cfg = override(base, model={"name": name, "extra": accepted_options(name, base.model.extra)},
                       log={"out": str(root / name)})
        print(f"== {name}: training {'%g min' % minutes if minutes else '%g kimg' % args.kimg} on {args.dataset}",
              flush=True)
        t0 = time.monotonic()
        run = train(cfg, log=lambda *a: None)
        G, config = load_generator(run.export)
        t1 = time.monotonic()
        scored = score_generator(G, args.dataset, num=args.samples, frames=16, config=config)
        results[name] = {"kimg": round(run.nimg / 1000, 3), "train_seconds": round(t1 - t0, 1),
                         "score_seconds": round(time.monotonic() - t1, 1), "frames": scored["frames"],
                         "can_extend": bool(G.can_extend), "values": scored["values"]}
        print(json.dumps({"model": name, **results[name]}), flush=True)

    # One table: a row per measure, a column per model.
    rows = [("measure", "target", *names),
            ("kimg", "-", *(f"{results[n]['kimg']:g}" for n in names)),
            ("scored frames", "-", *(str(results[n]["frames"]) for n in names))]
    for key, label in ROWS + EXT_ROWS:
        budget = args.targets if key in TARGETS[args.targets] else ("extension" if key in TARGETS["extension"] else None)
        cells = []
        for n in names:
            v = results[n]["values"].get(key)
            verdict = check_targets(results[n]["values"], budget).get(key) if budget else None
            cells.append(fmt(v) + ("" if verdict is None else (" PASS" if verdict else " FAIL")))
        rows.append((label, format_target(key, budget) if budget else "-", *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{args.dataset}, {'%g minutes' % minutes if minutes else '%g kimg' % args.kimg} per model, "
          f"{args.samples} generated vs {args.samples} real clips; {len(os.sched_getaffinity(0))} cores, "
          f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    bad = [n for n in names if any(not math.isfinite(v) for v in results[n]["values"].values())]
    if bad:
        print(f"nan: a ratio whose real value is 0, or a model without frames to compare ({', '.join(bad)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
