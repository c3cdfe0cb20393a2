"""Generation frames/s on one CPU core: onnxruntime against PyTorch, same model, same run.

    python bench/bench_onnx.py                          # every exportable model, 64x64 RGB, 1 core
    python bench/bench_onnx.py --models dcgan --frames 512 --threads 2

Each model is built at --size with its default width (random weights: speed does not depend on
training), exported with kinema.models.onnx.export_onnx, and both runtimes stream the same
seed through kinema.sample.stream.frame_chunks (the loop `kinema stream` runs: latents in,
uint8 frames out, no encoding). Rounds alternate between the runtimes and the best round of
each counts, so load from other processes affects both alike. Printed: frames/s of each, the
ratio onnxruntime / PyTorch, the largest difference between their frames (uint8 levels), and
the fastest model under PyTorch.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinema.models import build
from kinema.models.onnx import OnnxGenerator, export_onnx, supported
from kinema.sample.stream import frame_chunks


def fps(G, frames: int, chunk: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    parts = list(frame_chunks(G, frames, seed=0, chunk=chunk))
    return frames / (time.perf_counter() - t0), np.concatenate(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="default: every model that exports")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=256, help="frames per round")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="cores for both runtimes")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.size}x{args.size} RGB, {args.frames} frames per round, "
          f"best of {args.rounds}")
    print(f"{'model':9s} {'torch f/s':>10s} {'onnx f/s':>10s} {'onnx/torch':>11s} {'max |diff|':>11s}")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or supported():
            ms = build(name, resolution=args.size, frames=16, channels=3)
            G = ms.G.eval()
            path = export_onnx(G, Path(tmp) / f"{name}.onnx", {"name": name, "kwargs": ms.kwargs, "meta": {}})
            og = OnnxGenerator(path, threads=args.threads)
            fps(G, args.chunk, args.chunk), fps(og, args.chunk, args.chunk)      # warm-up
            t_best = o_best = 0.0
            for _ in range(args.rounds):
                t, a = fps(G, args.frames, args.chunk)
                o, b = fps(og, args.frames, args.chunk)
                t_best, o_best = max(t_best, t), max(o_best, o)
            diff = int(np.abs(a.astype(int) - b).max())
            print(f"{name:9s} {t_best:10.1f} {o_best:10.1f} {o_best / t_best:10.2f}x {diff:11d}")
            if best is None or t_best > best[1]:
                best = (name, t_best, o_best)
    print(f"fastest under PyTorch: {best[0]}: onnxruntime {best[2]:.1f} f/s vs PyTorch {best[1]:.1f} f/s = "
          f"{best[2] / best[1]:.2f}x")


if __name__ == "__main__":
    main()
