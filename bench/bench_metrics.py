"""Feature-extraction throughput (clips/s) for FVD extractors, with baselines measured in the same run.

    python bench/bench_metrics.py [--device cpu|cuda] [--clips 64] [--threads N]

Measures, on 16-frame 64x64 uint8 clips (what kinema's archives hold):
* built-in extractor, batch 16 vs batch 1 (ratio = the batching gain);
* I3D (random weights, VideoGPT preprocessing: resize to 224) batch 4 vs batch 1;
* Fréchet distance at D = 400 (I3D) and D = 2048 (Inception): eigh square root vs scipy sqrtm.
With CUDA present (or --device cuda) the extractors also run on the GPU, and the GPU/CPU ratio is
printed. Numbers depend on machine load; run it on a quiet machine for reportable figures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from kinema.metrics.builtin import BuiltinExtractor
from kinema.metrics.frechet import frechet_distance
from kinema.metrics.i3d import I3DStateDictExtractor, InceptionI3d


def throughput(extractor, clips: np.ndarray, batch: int, device: str, repeats: int = 2) -> float:
    """clips/s of ``extractor`` over ``clips`` uint8 [N, T, H, W, C] in batches of ``batch``."""
    x = torch.from_numpy(clips)
    extractor(x[:batch].to(device))  # warm-up (allocations, cuDNN autotune)
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            extractor(x[i:i + batch].to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def bench_device(device: str, n: int) -> dict:
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (n, 16, 64, 64, 3), dtype=np.uint8)
    builtin = BuiltinExtractor().to(device)
    i3d = I3DStateDictExtractor(InceptionI3d().eval()).to(device)
    out = {}
    out["builtin b16"] = throughput(builtin, clips, 16, device)
    out["builtin b1"] = throughput(builtin, clips[:max(8, n // 4)], 1, device)
    k = max(4, n // 8) if device == "cpu" else n
    out["i3d b4"] = throughput(i3d, clips[:k], 4, device, repeats=1)
    out["i3d b1"] = throughput(i3d, clips[:max(2, k // 2)], 1, device, repeats=1)
    for name, v in out.items():
        print(f"[{device}] {name:12s} {v:9.1f} clips/s")
    print(f"[{device}] builtin batch-16 / batch-1 ratio: {out['builtin b16'] / out['builtin b1']:.2f}x")
    print(f"[{device}] i3d batch-4 / batch-1 ratio:      {out['i3d b4'] / out['i3d b1']:.2f}x")
    return out


def bench_frechet() -> None:
    rng = np.random.default_rng(1)
    for d in (400, 2048):
        a, b = rng.normal(size=(d + 100, d)), rng.normal(size=(d + 100, d)) * 1.1
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        mu = np.zeros(d)
        t = time.perf_counter()
        ours = frechet_distance(mu, s1, mu, s2)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        root = scipy.linalg.sqrtm(s1 @ s2)
        ref = float(np.real(np.trace(s1) + np.trace(s2) - 2 * np.trace(root)))
        t_ref = time.perf_counter() - t
        print(f"frechet D={d}: eigh {t_ours * 1e3:.0f} ms, scipy sqrtm {t_ref * 1e3:.0f} ms "
              f"(ratio {t_ref / t_ours:.2f}x), values {ours:.6f} vs {ref:.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda too when available)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {d: bench_device(d, args.clips) for d in devices}
    if "cpu" in results and "cuda" in results:
        for k in results["cpu"]:
            print(f"GPU/CPU {k}: {results['cuda'][k] / results['cpu'][k]:.1f}x")
    bench_frechet()


if __name__ == "__main__":
    main()
