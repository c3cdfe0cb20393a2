"""Data benchmarks: prepare's decode rate and the loader's throughput, each against a baseline.

    python bench/bench_data.py [--quick]

1. prepare: source H.264 videos at 256x256 (made here with PyAV), prepared to 64x64x16 clips.
   Baseline: a plain PyAV decode loop (decode + RGB conversion, nothing else) in one process.
   Reported per core: source frames decoded per second divided by the workers used.
   Target: >= 500 frames/s per core.
2. loader: an archive of 64x64x16 clips (3 channels), batches of 64 through ClipLoader.
   Baseline: a naive loader that decodes each clip from its own video file (read_video with a
   start frame) and converts it. Target: >= 2,000 clips/s with 2 workers.

Numbers depend on the machine and on what else runs on it. Each line gives the wall-clock rate
and the rate per CPU-second (items / CPU time of this process and its finished worker processes),
which stays meaningful when other programs share the cores: it is what one fully available core does.
The ratio to the baseline measured in the same run is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from kinema.data import AugmentConfig, ClipLoader, prepare
from kinema.devices import usable_cores
from kinema.io import from_uint8, read_video


class Clock:
    """Wall time and CPU time (this process + joined children) between start and stop."""

    def __enter__(self):
        t = os.times()
        self.wall, self.cpu = time.perf_counter(), t.user + t.system + t.children_user + t.children_system
        return self

    def __exit__(self, *exc):
        t = os.times()
        self.wall = time.perf_counter() - self.wall
        self.cpu = t.user + t.system + t.children_user + t.children_system - self.cpu

    def rates(self, n: int) -> tuple[float, float]:
        return n / self.wall, n / max(self.cpu, 1e-9)


def make_videos(folder: Path, count: int, frames: int, size: int, seed: int = 0) -> list[Path]:
    """H.264 (crf 18, preset veryfast) videos of smooth moving content, ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for i in range(count):
        path = folder / f"v{i:03d}.mp4"
        fx, fy, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6)
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=30)
            s.width = s.height = size
            s.pix_fmt = "yuv420p"
            s.options = {"crf": "18", "preset": "veryfast"}
            for t in range(frames):
                r = 127 + 120 * np.sin(2 * np.pi * (fx * x + 0.02 * t) + phase)
                g = 127 + 120 * np.sin(2 * np.pi * (fy * y - 0.03 * t))
                b = 127 + 100 * np.sin(2 * np.pi * (x + y + 0.01 * t))
                img = np.stack([r, g, b], -1).astype(np.uint8)
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        paths.append(path)
    return paths


def bench_prepare(tmp: Path, count: int, frames: int) -> None:
    src = tmp / "src256"
    src.mkdir()
    paths = make_videos(src, count, frames, 256)
    total = count * frames
    # Baseline: the plainest PyAV loop, one process, one decoder thread (as prepare's workers use).
    with Clock() as c:
        for p in paths:
            with av.open(str(p)) as f:
                f.streams.video[0].thread_count = 1
                for frame in f.decode(video=0):
                    frame.to_ndarray(format="rgb24")
    base_wall, base_cpu = c.rates(total)
    print(f"prepare  baseline PyAV decode loop, 1 thread: {base_wall:6.0f} frames/s wall, {base_cpu:6.0f} per CPU-s")
    cores = usable_cores()
    for workers in sorted({1, cores}):
        with Clock() as c:
            arch = prepare(src, tmp / f"arch-{workers}", resolution=64, frames=16, workers=workers, verbose=False)
        assert arch.report["videos_used"] == count
        wall, cpu = c.rates(total)
        print(f"prepare  256->64, {workers} worker(s): {wall:6.0f} frames/s wall ({wall / workers:4.0f} per worker), "
              f"{cpu:6.0f} per CPU-s = {cpu / base_cpu:.2f}x baseline (target 500 per core)")


def bench_loader(tmp: Path, clips: int, seconds: float) -> None:
    arch = prepare("builtin:bouncing_shapes", tmp / "shapes64", resolution=64, frames=16, num_videos=clips,
                   workers=usable_cores(), verbose=False)
    # Baseline: decode every clip from its own file (what a loader without an archive does).
    src = tmp / "src64"
    src.mkdir()
    paths = make_videos(src, 8, 96, 64, seed=1)
    rng = np.random.default_rng(0)
    n = 0
    with Clock() as c:
        while time.perf_counter() - c.wall < seconds:
            batch = [read_video(paths[rng.integers(len(paths))], start=int(rng.integers(0, 80)), num_frames=16,
                                threads=1).frames for _ in range(16)]
            from_uint8(np.stack(batch))
            n += 16
    base_wall, base_cpu = c.rates(n)
    print(f"loader   baseline decode-per-clip from mp4 (64x64x16): {base_wall:6.0f} clips/s wall, "
          f"{base_cpu:6.0f} per CPU-s")
    for workers, aug in ((0, False), (2, False), (0, True), (2, True)):
        loader = ClipLoader(arch, batch_size=64, seed=0, num_workers=workers,
                            augment=AugmentConfig(flip=True, crop=True, color=True) if aug else AugmentConfig())
        n = 0
        with Clock() as c:
            while time.perf_counter() - c.wall < seconds:
                video, _ = next(loader)
                n += video.shape[0]
            loader.close()
            gc.collect()  # joins the worker processes, so their CPU time is counted
        wall, cpu = c.rates(n)
        print(f"loader   ClipLoader {workers} worker(s), augment={'flip+crop+color' if aug else 'off':15s}: "
              f"{wall:6.0f} clips/s wall, {cpu:6.0f} per CPU-s ({wall / base_wall:.0f}x baseline wall"
              f"{'; target 2000 wall' if workers == 2 else ''})")
    # The host side of the accelerator path: workers ship uint8 clips + augmentation parameters,
    # and conversion/augmentation then run on the GPU (measured only with a GPU).
    loader = ClipLoader(arch, batch_size=64, seed=0, num_workers=2, augment=AugmentConfig(flip=True, crop=True))
    loader._data.finish = False
    n = 0
    with Clock() as c:
        while time.perf_counter() - c.wall < seconds:
            frames, _, _ = loader._next_raw()
            n += frames.shape[0]
        loader.close()
        gc.collect()
    wall, cpu = c.rates(n)
    print(f"loader   ClipLoader 2 worker(s), uint8 for the GPU path (host side): {wall:6.0f} clips/s wall, "
          f"{cpu:6.0f} per CPU-s ({wall / base_wall:.0f}x baseline wall; target 2000 wall)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs, shorter timings")
    args = ap.parse_args()
    # One thread per process, like the loader's and prepare's workers: "per core" numbers then
    # compare, and idle intra-op threads do not spin against the other jobs on a shared machine.
    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, PyAV {av.__version__}, "
          f"usable cores {usable_cores()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench_prepare(tmp, count=4 if args.quick else 12, frames=120 if args.quick else 240)
        bench_loader(tmp, clips=256 if args.quick else 1024, seconds=2 if args.quick else 5)


if __name__ == "__main__":
    main()
