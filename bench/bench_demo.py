"""Demo quality: does `kinema demo` (default budget, 2 CPU cores) learn moving digits?

    python bench/bench_demo.py                       # runs `kinema demo` as a user would, then scores it
    python bench/bench_demo.py --export runs/demo    # only score an existing run (its latest export)
    python bench/bench_demo.py --override '{"model": {"width": 24}}' --minutes 3   # tuning, in-process

Scoring (kinema.metrics.digits): a frame classifier trained on real moving-digit frames (plus a
"none" class of junk) labels every frame of N generated clips (seeds 0..N-1, exactly what
`kinema generate` gives). Reported: the fraction of frames recognised as a digit with
probability >= 0.9 (target >= 0.70), and the fraction of clips whose digit stays the same
through the clip (>= 80% of frames, i.e. 13 of 16; target >= 0.80), on clips as long as the
preview's (16 frames). The baseline, measured in the
same run, is the same scoring on real clips of the dataset; the ratio is generated / real.
Samples are drawn at the truncation (latent temperature) the demo uses for its own preview, read
from the run folder's ``preview.json`` (1.0 if absent; ``--truncation`` to choose); the scores at
truncation 1.0 (untouched latents) are always printed too.
The classifier is trained once and cached (about a minute), outside the demo's budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--out", default=None, help="demo run folder (default: a temp folder)")
    ap.add_argument("--export", default=None, help="score this run folder / export instead of running the demo")
    ap.add_argument("--override", default=None, help="JSON {section: {field: value}} for the demo preset (in-process)")
    ap.add_argument("--samples", type=int, default=128, help="generated clips to score")
    ap.add_argument("--threads", type=int, default=0, help="passed to `kinema demo --threads`")
    ap.add_argument("--frames", type=int, default=0,
                    help="frames per scored clip (default: the demo preview's, from preview.json)")
    ap.add_argument("--truncation", type=float, default=None,
                    help="latent temperature for the scored samples (default: the demo preview's, from preview.json)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from kinema.data import generate_builtin
    from kinema.io import to_uint8
    from kinema.metrics.digits import load_classifier, score_classes
    from kinema.models import load_generator
    from kinema.sample.generate import generate
    from kinema.train import latest_export

    from kinema.train.demo import available_cores

    # Train the classifier first (cached), so it does not eat into the demo's cores or budget.
    torch.set_num_threads(available_cores())
    classifier = load_classifier("moving_digits", size=32, channels=1)

    demo_seconds = None
    if args.export:
        path = Path(args.export)
        export = latest_export(path) if path.is_dir() else path
        out = path if path.is_dir() else path.parent
    else:
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
    preview = out / "preview.json"
    shown = json.loads(preview.read_text()) if preview.exists() else {}
    psi = args.truncation if args.truncation is not None else float(shown.get("truncation", 1.0))
    # Score clips of the length the preview shows (16 frames for the demo's dcgan), not the
    # (shorter) training clips: a digit has more chances to change over a longer clip.
    n_frames = args.frames or shown.get("frames") or G.frames

    def fakes(truncation: float):
        with torch.no_grad():
            return to_uint8(generate(G, list(range(args.samples)), frames=n_frames, config=config,
                                     truncation=truncation))  # [N, T, 32, 32, C]

    fake = fakes(psi)
    frames, size = fake.shape[1], fake.shape[2]
    real = np.stack([v for v, _, _ in generate_builtin("moving_digits", args.samples, frames, size, seed=987654)])
    got = score_classes(fake, classifier)
    plain = got if psi == 1.0 else score_classes(fakes(1.0), classifier)
    base = score_classes(real, classifier)
    result = {
        "export": str(export), "kimg": config.get("meta", {}).get("kimg"), "model": config.get("name"),
        "demo_seconds": round(demo_seconds, 1) if demo_seconds else None, "threads_available": len(os.sched_getaffinity(0)),
        "load_avg_1min": round(os.getloadavg()[0], 2), "samples": args.samples, "frames": int(frames),
        "truncation": psi, "recognised_frac_psi1": round(plain["recognised_frac"], 4),
        "consistent_frac_psi1": round(plain["consistent_frac"], 4),
        "recognised_frac": round(got["recognised_frac"], 4), "consistent_frac": round(got["consistent_frac"], 4),
        "real_recognised_frac": round(base["recognised_frac"], 4), "real_consistent_frac": round(base["consistent_frac"], 4),
        "histogram": got["histogram"], "classifier_accuracy": round(classifier.accuracy, 4),
    }
    print(json.dumps(result, indent=2))
    for key, target in (("recognised_frac", 0.70), ("consistent_frac", 0.80)):
        ratio = result[key] / max(result["real_" + key], 1e-9)
        verdict = "PASS" if result[key] >= target else "below target"
        print(f"{key:16s} generated {result[key]:.3f}  real {result['real_' + key]:.3f}  "
              f"ratio {ratio:.2f}  target {target:.2f}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
