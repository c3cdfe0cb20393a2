"""Ingest speed: ``kinema prepare --workers 1`` against a plain OpenCV decode-crop-resize loop.

Both read the same clips in the same run (720p and QCIF H.264, made here with PyAV in a temporary
folder) and produce 64x64 centre-cropped frames; the number is source frames per CPU-second
(``time.process_time``: all threads of this process, so decoder threads count too). Prints each
side's rate and the ratio kinema / OpenCV (>= 1 means kinema ingests at least as fast).

    pip install -e ".[bench]"        # opencv-python-headless, for the baseline only
    python bench/bench_ingest.py [--clips 3] [--frames 48] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np

SIZES = {"720p": (1280, 720), "qcif": (176, 144)}


def make_clips(folder: Path, clips: int, frames: int) -> list[Path]:
    """Smooth moving content (a codec-friendly gradient and a blob), H.264 yuv420p at 25 fps."""
    paths = []
    rng = np.random.default_rng(0)
    for name, (w, h) in SIZES.items():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for c in range(clips):
            path = folder / f"{name}_{c}.mp4"
            with av.open(str(path), "w") as out:
                stream = out.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "20"})
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                phase = rng.uniform(0, 6.28)
                for t in range(frames):
                    cx, cy = w * (0.5 + 0.3 * np.sin(phase + t / 9)), h * (0.5 + 0.3 * np.cos(phase + t / 7))
                    blob = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.1 * h) ** 2))
                    img = np.stack([xx / w * 255, yy / h * 255, blob], -1).clip(0, 255).astype(np.uint8)
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
                out.mux(stream.encode(None))
            paths.append(path)
    return paths


def opencv_loop(paths: list[Path], size: int) -> int:
    """Decode every frame, centre-crop the largest square, resize (INTER_AREA) to size x size."""
    import cv2

    n = 0
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            s = min(h, w)
            y0, x0 = (h - s) // 2, (w - s) // 2
            small = cv2.resize(frame[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
            n += rgb.shape[0] > 0
        cap.release()
    return n


def kinema_prepare(src: Path, out: Path, size: int) -> int:
    from kinema.data.prepare import prepare

    archive = prepare(src, out, resolution=size, frames=16, workers=1, force=True, verbose=False)
    return sum(v["source_frames"] for v in archive.videos)


def cpu_rate(fn, *args) -> tuple[float, int]:
    t0 = time.process_time()
    n = fn(*args)
    return n / (time.process_time() - t0), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3, help="clips per size")
    ap.add_argument("--frames", type=int, default=48, help="frames per clip")
    ap.add_argument("--size", type=int, default=64, help="output side")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs per side; the best is kept")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kinema-bench-ingest-"))
    try:
        src = tmp / "src"
        src.mkdir()
        paths = make_clips(src, args.clips, args.frames)
        best_k = best_o = 0.0
        for _ in range(args.repeat):  # alternate, so a burst of load elsewhere hits both sides
            rate_o, n_o = cpu_rate(opencv_loop, paths, args.size)
            rate_k, n_k = cpu_rate(kinema_prepare, src, tmp / "archive", args.size)
            best_o, best_k = max(best_o, rate_o), max(best_k, rate_k)
        print(f"clips: {len(paths)} ({args.clips} x 1280x720 + {args.clips} x 176x144 H.264, {args.frames} frames each) "
              f"-> {args.size}x{args.size}")
        print(f"opencv decode+crop+resize   {best_o:8.1f} frames per CPU-second ({n_o} frames)")
        print(f"kinema prepare --workers 1  {best_k:8.1f} frames per CPU-second ({n_k} frames)")
        print(f"ratio kinema / opencv: {best_k / best_o:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
