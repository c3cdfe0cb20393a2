"""The flow model on moving digits 32x32x16: what a CPU budget reaches, and how fast it samples.

    python bench/bench_flow.py --vae-minutes 8 --minutes 15 --out runs/bench-flow --threads 1
    python bench/bench_flow.py --vae runs/vae --minutes 15            # reuse a trained videovae (latent grid)
    python bench/bench_flow.py --score runs/bench-flow                # only score an existing bench folder
    python bench/bench_flow.py --vae runs/vae --train-args "--joint-images 4" --out runs/bench-flow-joint

Steps, each as a user would run it:

1. ``kinema train builtin:moving_digits --preset vaegrid`` (unless ``--vae``): the latent space.
   Its reconstruction PSNR on held-out clips (videos the archive does not hold) and the motion
   measures of those reconstructions are printed: they bound what the flow model can reach.
2. ``kinema train builtin:moving_digits --preset flow --vae VAE --minutes M``, with a snapshot
   every ``--snapshot-kimg`` thousand clips (the quality curve against training time).
3. Every snapshot: ``--samples`` clips (seeds 0..N-1, 16 Euler steps, guidance ``--cfg``) scored
   with :func:`kinema.metrics.motion.motion_report` against as many real clips (the baseline of
   the same run: ratios generated / real).
4. Sampling seconds per clip at 8, 16 and 32 Euler steps (and 16 Heun steps), with the VAE
   decoder's own time per clip as the baseline measured in the same run.

Targets (2 CPU cores, 15 minutes): identity held >= 0.8, recognised >= 0.8, speed and travel
within +-20% of real.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> float:
    """Run ``cmd``; returns the CPU seconds (user + system) it used: on a shared machine the wall
    clock budget buys a varying amount of computation, so both are reported."""
    print("+ " + " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def kinema(*args: str, threads: int) -> list[str]:
    return [sys.executable, "-m", "kinema", *args] + (["--threads", str(threads)] if threads else [])


def real_clips(num: int):
    import numpy as np

    from kinema.data import generate_builtin

    # Another seed than the training archive's (seed 0): held-out videos.
    return np.stack([v for v, _, _ in generate_builtin("moving_digits", num, 16, 32, seed=987654)])


def warm_cache(vae: Path) -> None:
    from kinema.data import resolve_source
    from kinema.train.flow import cached_latents, load_vae

    E, _, _, digest, _ = load_vae(vae)
    cached_latents(resolve_source("builtin:moving_digits", 32, 16), E, digest)


def vae_check(vae: Path, real) -> dict:
    """Reconstruction PSNR (dB, per clip, averaged) and motion measures of the reconstructions."""
    import torch

    from kinema.io import from_uint8, to_uint8
    from kinema.metrics.motion import motion_report, summary
    from kinema.train.flow import load_vae

    E, G, spec, _, path = load_vae(vae)
    x = from_uint8(torch.from_numpy(real))
    with torch.no_grad():
        rec = G({"z": E(x)[0]}).clamp(-1, 1)
    mse = ((rec - x) / 2).square().flatten(1).mean(1)
    report = summary(motion_report(to_uint8(rec), real, dataset="moving_digits"))
    return {"state": str(path), "kwargs": spec["kwargs"], "psnr_db": round(float((10 * torch.log10(1 / mse)).mean()), 2),
            **{f"recon_{k}": round(v, 4) for k, v in report.items()}}


def score_export(export: Path, real, samples: int, steps: int, cfg: float) -> dict:
    import torch

    import kinema
    from kinema.metrics.motion import motion_report, summary

    model = kinema.load(export)
    model.set_sampler(steps=steps, cfg=cfg if model.num_classes else 1.0, solver="euler")
    with torch.no_grad():
        fake = model.generate(seeds=range(samples), batch=16)
    return {k: round(v, 4) for k, v in summary(motion_report(fake, real, dataset="moving_digits")).items()}


def sampling_speed(export: Path, clips: int = 16) -> dict:
    """Seconds per clip at 8/16/32 Euler steps and 16 Heun steps; the decoder alone as baseline."""
    import torch

    import kinema

    model = kinema.load(export)
    G = model.G
    out = {}
    for solver, steps in (("euler", 8), ("euler", 16), ("euler", 32), ("heun", 16)):
        model.set_sampler(steps=steps, solver=solver, cfg=1.0)
        model.generate(seeds=range(2), batch=2)               # warm-up
        t0 = time.perf_counter()
        model.generate(seeds=range(clips), batch=clips)
        out[f"{solver}{steps}_s_per_clip"] = round((time.perf_counter() - t0) / clips, 4)
    noise = G.make_latents(clips, generator=torch.Generator().manual_seed(0))["noise"]
    with torch.no_grad():
        G.decode(noise)
        t0 = time.perf_counter()
        G.decode(noise)
    out["decode_only_s_per_clip"] = round((time.perf_counter() - t0) / clips, 4)
    out["euler16_over_decode"] = round(out["euler16_s_per_clip"] / max(out["decode_only_s_per_clip"], 1e-9), 1)
    return out


def snapshot_times(run_dir: Path) -> dict[int, float]:
    """Clips seen -> seconds since the run started (status.json), from the log's rows (kimg, wall time)."""
    started = json.loads((run_dir / "status.json").read_text())["started"]
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return {int(round(r["kimg"] * 1000)): r["time"] - started for r in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-flow")
    ap.add_argument("--vae", default=None, help="a trained videovae run (latent grid); default: train one")
    ap.add_argument("--vae-minutes", type=float, default=8.0)
    ap.add_argument("--minutes", type=float, default=15.0, help="flow training budget")
    ap.add_argument("--snapshot-kimg", type=float, default=4.0, help="snapshot interval (the quality curve)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=16, help="Euler steps of the scored samples")
    ap.add_argument("--cfg", type=float, default=1.0, help="guidance scale of the scored samples")
    ap.add_argument("--score", default=None, help="only score this existing bench folder")
    ap.add_argument("--train-args", default="", help="more `kinema train` options for the flow run, e.g. "
                                                      "'--joint-images 4 --model-opt depth=6'")
    args = ap.parse_args()

    import torch

    from kinema.train import list_exports
    from kinema.train.checkpoint import tag_nimg

    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = Path(args.score or args.out)
    vae = Path(args.vae) if args.vae else out / "vae"
    flow = out / "flow"
    if not args.score:
        if not args.vae:
            run(kinema("train", "builtin:moving_digits", "--preset", "vaegrid", "--minutes", str(args.vae_minutes),
                       "--out", str(vae), threads=args.threads))
        # Encode the archive once (cached: later runs on the same archive and VAE skip this).
        t0 = time.perf_counter()
        warm_cache(vae)
        print(f"latent cache ready after {time.perf_counter() - t0:.1f} s", flush=True)
        cpu = run(kinema("train", "builtin:moving_digits", "--preset", "flow", "--vae", str(vae), "--minutes",
                         str(args.minutes), "--snapshot-kimg", str(args.snapshot_kimg), "--keep", "1000", "--out",
                         str(flow), *shlex.split(args.train_args), threads=args.threads))
        (out / "train_cpu_seconds.txt").write_text(f"{cpu:.1f}\n")
    real = real_clips(args.samples)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "CPU") if os.path.exists("/proc/cpuinfo") else "CPU"
    result = {"machine": f"{os.cpu_count()}-core {cpu}, torch threads {torch.get_num_threads()}",
              "load_avg_1min": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d")}
    cfg = json.loads((flow / "config.json").read_text())
    vae = Path(cfg["model"]["vae"])
    result["vae"] = vae_check(vae, real)
    status = json.loads((flow / "status.json").read_text()) if (flow / "status.json").exists() else {}
    rows = [json.loads(line) for line in (flow / "log.jsonl").read_text().splitlines() if line.strip()]
    cpu_file = out / "train_cpu_seconds.txt"
    result["training"] = {"kimg": rows[-1]["kimg"], "clips_per_s_last": rows[-1].get("clips_per_s"),
                          "wall_seconds": round(rows[-1]["time"] - status["started"], 1) if "started" in status else None,
                          "cpu_seconds": float(cpu_file.read_text()) if cpu_file.exists() else None,
                          "status": status.get("state")}
    times = snapshot_times(flow)
    curve = []
    for _, export in list_exports(flow):
        nimg = tag_nimg(export.stem.split("-", 1)[1])
        seconds = times.get(nimg) or min(times.items(), key=lambda kv: abs(kv[0] - nimg))[1]
        scores = score_export(export, real, args.samples, args.steps, args.cfg)
        curve.append({"kimg": nimg / 1000, "minutes": round(seconds / 60, 2), **scores})
        print(json.dumps(curve[-1]), flush=True)
    result["curve"] = curve
    final = list_exports(flow)[-1][1]
    result["sampling"] = sampling_speed(final)
    print(json.dumps(result, indent=2))

    last = curve[-1]
    checks = {"identity_held": last.get("identity_held", 0) >= 0.8, "recognised": last.get("recognised", 0) >= 0.8,
              "speed_ratio": 0.8 <= last.get("speed_ratio", 0) <= 1.2,
              "travel_ratio": 0.8 <= last.get("travel_ratio", 0) <= 1.2}
    for name, ok in checks.items():
        print(f"{name:14s} {last.get(name, float('nan')):.3f}  target {'>= 0.8' if 'ratio' not in name else '0.8-1.2'}: "
              f"{'PASS' if ok else 'below target'}")
    print(f"VAE reconstruction PSNR on held-out clips: {result['vae']['psnr_db']} dB "
          f"(identity held {result['vae'].get('recon_identity_held')}, recognised {result['vae'].get('recon_recognised')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
