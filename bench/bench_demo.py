"""Demo quality: does `kinema demo` (default budget, 2 CPU cores) learn digits that move like the data?

    python bench/bench_demo.py                       # runs `kinema demo` as a user would, then scores it
    python bench/bench_demo.py --export runs/demo    # only score an existing run (its latest export)
    python bench/bench_demo.py --export runs/x --targets 15min      # the 15-minute targets
    python bench/bench_demo.py --override '{"model": {"width": 24}}' --minutes 3   # tuning, in-process

Scoring (kinema.metrics.motion, see docs/motion.md): 64 generated clips of 16 frames (seeds 0..63,
exactly what `kinema generate` gives) against 64 real clips of the run's built-in dataset (seed
987654, not the training archive's): object speed and travel ratios (generated / real), near-static
clips (speed < 1% of the side per frame), identity held (one class in >= 14 of 16 frames, the
dataset's frame classifier), recognised frames (p >= 0.9), bounce-rate ratio and the generic motion
distance. Each is printed with PASS/FAIL against the targets (``--targets default``: the ~3-minute
demo budget; ``15min``), beside the same measures of a second, held-out real set (the ceiling,
measured in the same run). For generators that can extend (``can_extend``): 64-frame clips against
64-frame real clips (``--frames-long``), the speed ratio over the whole clip and the movement of
the last 16 frames relative to the first 16 (``extension`` targets).

Samples are drawn at the truncation (latent temperature) of the run's preview (``preview.json``,
1.0 if absent; ``--truncation`` to choose). The classifier is trained once and cached (minutes on a
loaded CPU), outside the demo's budget.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELD_OUT_SEED = 424242  # the second real set (the reference set uses kinema.metrics.motion.REAL_SEED)
# Rows of the table: (value name, label).
ROWS = [("speed_ratio", "speed ratio (gen/real)"), ("travel_ratio", "travel ratio"),
        ("static_frac", "near-static clips"), ("identity_held", "identity held"), ("recognised", "recognised frames"),
        ("bounce_ratio", "bounce rate ratio"), ("motion_distance", "motion distance (JS)"),
        ("generic_static_frac", "static clips (generic)"), ("displacement_ratio", "block displacement ratio")]
EXT_ROWS = [("speed_ratio_64", "64-frame speed ratio"), ("tail_ratio", "last-16 / first-16 movement"),
            ("static_frac_64", "near-static 64-frame clips")]


def fmt(v) -> str:
    return "-" if v is None else ("nan" if isinstance(v, float) and not math.isfinite(v) else f"{v:.3f}")


def table(values: dict, real: dict | None, budget: str) -> tuple[str, bool]:
    """The measures with their targets and verdicts; -> (text, every measured target passed)."""
    from kinema.metrics.motion import TARGETS, check_targets, format_target

    verdicts = {**check_targets(values, budget), **check_targets(values, "extension")}
    rows = [("measure", "generated", "real held-out", "target", "verdict")]
    for name, label in ROWS + (EXT_ROWS if "tail_ratio" in values else []):
        targets = TARGETS[budget] if name in TARGETS[budget] else TARGETS["extension"]
        target = format_target(name, budget if name in TARGETS[budget] else "extension") if name in targets else "-"
        v = verdicts.get(name)
        rows.append((label, fmt(values.get(name)), fmt((real or {}).get(name)), target,
                     "-" if name not in targets else ("not measured" if v is None else ("PASS" if v else "FAIL"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return text, all(v is not False for v in verdicts.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--out", default=None, help="demo run folder (default: a temp folder)")
    ap.add_argument("--export", default=None, help="score this run folder / export instead of running the demo")
    ap.add_argument("--override", default=None, help="JSON {section: {field: value}} for the demo preset (in-process)")
    ap.add_argument("--samples", type=int, default=64, help="generated (and real) clips to score")
    ap.add_argument("--threads", type=int, default=0, help="passed to `kinema demo --threads`")
    ap.add_argument("--frames", type=int, default=16, help="frames per scored clip")
    ap.add_argument("--frames-long", type=int, default=64, help="extension check length (0 = skip)")
    ap.add_argument("--targets", choices=["default", "15min"], default="default")
    ap.add_argument("--dataset", default=None, help="built-in dataset to compare with (default: the run's)")
    ap.add_argument("--truncation", type=float, default=None,
                    help="latent temperature for the scored samples (default: the demo preview's, from preview.json)")
    args = ap.parse_args()

    import torch

    from kinema.metrics.motion import MotionReference, builtin_dataset_of, real_clips, score_generator, summary
    from kinema.models import load_generator
    from kinema.train import latest_export
    from kinema.devices import available_cores

    torch.set_num_threads(available_cores())
    demo_seconds = None
    if args.export:
        path = Path(args.export)
        export = latest_export(path) if path.is_dir() else path
        out = path if path.is_dir() else path.parent
    else:
        # Train the classifier first (cached), so it does not eat into the demo's cores or budget.
        from kinema.metrics.digits import load_classifier

        load_classifier("moving_digits", size=32, channels=1)
        out = Path(args.out or tempfile.mkdtemp(prefix="kinema-bench-demo-"))
        t0 = time.monotonic()
        if args.override:
            from kinema.train.demo import run_demo
            torch.set_num_threads(args.threads or available_cores())
            run_demo(minutes=args.minutes, out=out, overrides=json.loads(args.override), progress=False)
        else:
            cmd = [sys.executable, "-m", "kinema", "demo", "--minutes", str(args.minutes), "--out", str(out),
                   "--no-progress"] + (["--threads", str(args.threads)] if args.threads else [])
            subprocess.run(cmd, check=True)
        demo_seconds = time.monotonic() - t0
        export = latest_export(out)

    G, config = load_generator(export)
    dataset = args.dataset or builtin_dataset_of(str(config.get("meta", {}).get("source") or "")) or "moving_digits"
    preview = out / "preview.json"
    shown = json.loads(preview.read_text()) if preview.exists() else {}
    psi = args.truncation if args.truncation is not None else float(shown.get("truncation", 1.0))
    t0 = time.monotonic()
    scored = score_generator(G, dataset, num=args.samples, frames=args.frames, truncation=psi, config=config,
                             extension_frames=args.frames_long)
    score_seconds = time.monotonic() - t0
    frames, size, channels = scored["frames"], G.resolution, G.channels
    # The ceiling: a second real set (another seed) scored exactly like the generated clips.
    ref = MotionReference(real_clips(dataset, args.samples, frames, size, channels), dataset)
    real = summary(ref.report(real_clips(dataset, args.samples, frames, size, channels, seed=HELD_OUT_SEED)))
    values = scored["values"]
    result = {
        "export": str(export), "model": config.get("name"), "dataset": dataset, "kimg": config.get("meta", {}).get("kimg"),
        "demo_seconds": round(demo_seconds, 1) if demo_seconds else None, "score_seconds": round(score_seconds, 1),
        "threads_available": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
        "samples": args.samples, "frames": frames, "truncation": psi, "targets": args.targets,
        "values": {k: round(v, 4) for k, v in values.items()}, "real_held_out": {k: round(v, 4) for k, v in real.items()},
    }
    print(json.dumps(result, indent=2))
    text, ok = table(values, real, args.targets)
    print(f"\n{config.get('name')} on {dataset}: {args.samples} generated vs {args.samples} real clips of {frames} "
          f"frames, targets '{args.targets}'" + (f"; extension at {args.frames_long} frames" if "tail_ratio" in values else ""))
    print(text)
    print("all measured targets PASS" if ok else "some targets FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
