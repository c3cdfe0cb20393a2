"""Encode and decode speed of kinema.io per codec, as ratios against plain PyAV libx264 ultrafast.

    python bench/bench_io.py [--frames 240] [--sizes 64 256] [--repeat 3]

Baseline, measured in the same run on the same frames: a bare PyAV loop encoding with libx264
(preset ultrafast, crf 23, yuv420p) and a bare PyAV loop decoding that file to rgb24 arrays.
For each codec kinema's ``write_video`` (default settings, plus h264 at ultrafast to show
kinema's own overhead) and ``read_video`` are timed; every number is the best of ``--repeat``
runs, in frames per second, with its ratio to the baseline. Content: smooth moving gradients
(like generated samples). The machine may be shared: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from kinema.io import CODECS, read_video, write_video


def content(frames: int, size: int) -> np.ndarray:
    """Smooth moving gradients plus a soft blob: uint8 [T, size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        p = t / frames
        blob = np.exp(-((x - 0.5 - 0.3 * np.cos(6.28 * p)) ** 2 + (y - 0.5 - 0.3 * np.sin(6.28 * p)) ** 2) / 0.02)
        out[t, ..., 0] = np.clip(30 + 150 * ((x + p) % 1) + 60 * blob, 0, 255)
        out[t, ..., 1] = np.clip(30 + 150 * y + 60 * blob, 0, 255)
        out[t, ..., 2] = np.clip(190 - 60 * (x + y) + 60 * blob, 0, 255)
    return out


def baseline_encode(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """The reference: the shortest PyAV loop that makes an H.264 file."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps), options={"preset": "ultrafast", "crf": "23"})
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        for img in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)


def baseline_decode(path: Path) -> int:
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        return sum(1 for f in c.decode(video=0) if f.to_ndarray(format="rgb24") is not None)


def best_fps(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"PyAV {av.__version__}, {os.cpu_count()} CPUs, {args.frames} frames, best of {args.repeat}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_io-"))
    variants = [("h264", {"preset": "ultrafast"}), ("h264", {}), ("hevc", {}), ("vp9", {}), ("av1", {}),
                ("gif", {}), ("lossless", {}), ("png", {})]
    for size in args.sizes:
        frames = content(args.frames, size)
        n = len(frames)
        base = tmp / f"base{size}.mp4"
        enc0 = best_fps(lambda: baseline_encode(base, frames), n, args.repeat)
        dec0 = best_fps(lambda: baseline_decode(base), n, args.repeat)
        print(f"\n{size}x{size}: baseline PyAV libx264 ultrafast  encode {enc0:8.0f} frames/s   decode {dec0:8.0f} frames/s")
        print(f"{'codec':<22}{'encode f/s':>12}{'vs base':>9}{'decode f/s':>12}{'vs base':>9}{'bytes/frame':>13}")
        for codec, kw in variants:
            label = codec + (f" {kw['preset']}" if kw else " (default)")
            out = tmp / f"{codec}{'_'.join(kw.values())}{size}{CODECS[codec].ext}"
            enc = best_fps(lambda: write_video(out, frames, 25, codec=codec, overwrite=True, **kw), n, args.repeat)
            dec = best_fps(lambda: read_video(out), n, args.repeat)
            nbytes = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.iterdir())
            print(f"{label:<22}{enc:12.0f}{enc / enc0:9.2f}{dec:12.0f}{dec / dec0:9.2f}{nbytes / n:13.0f}")


if __name__ == "__main__":
    main()
