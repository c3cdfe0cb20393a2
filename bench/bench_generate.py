"""Generation throughput with and without encoding, and streaming memory against length.

    python bench/bench_generate.py                      # 64^2 and 256^2 on CPU (+ CUDA if present)
    python bench/bench_generate.py --model videogan --sizes 64 --frames 256
    python bench/bench_generate.py --memory             # peak RSS streaming 1,000 vs 10,000 frames

For each size it streams one long video (``kinema.sample.stream``) and reports frames/s for:
  gen        generation + conversion to uint8, frames dropped (the baseline of this run)
  encode     libx264 encoding alone of frames already in memory
  serial     generation then encoding on one thread (each waits for the other)
  threaded   encoding on a background thread (the default of `kinema stream`)
  files jN   `kinema generate` writing one file per seed with N parallel encoders (--jobs N)
and the ratio of each to ``gen`` measured in the same run: 1.0 means encoding costs nothing.
Random weights (the speed of a network does not depend on its training).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinema.io import VideoWriter
from kinema.models import build
from kinema.models.export import save_generator
from kinema.sample.api import Model
from kinema.sample.outputs import write_per_seed
from kinema.sample.stream import frame_chunks, stream


def _gen_fps(G, frames, chunk, device) -> tuple[float, np.ndarray]:
    """Generation-only frames/s; also returns the last chunk for the encoder-only measurement."""
    next(frame_chunks(G, chunk, chunk=chunk, device=device))  # warm-up (allocations, cuDNN choice)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    last = None
    for part in frame_chunks(G, frames, chunk=chunk, device=device):
        last = part  # to_uint8 copies to the CPU, so the GPU work is finished here
    return frames / (time.perf_counter() - t0), last


def _encode_fps(sample: np.ndarray, frames: int, path: Path, preset: str) -> float:
    t0 = time.perf_counter()
    with VideoWriter(path, 25, "h264", preset=preset, overwrite=True) as w:
        for i in range(0, frames, len(sample)):
            w.write(sample[: frames - i])
    return frames / (time.perf_counter() - t0)


def bench_size(model: str, size: int, frames: int, chunk: int, device: torch.device, preset: str, tmp: Path,
               repeat: int) -> dict:
    """Best of ``repeat`` rounds per measurement, rounds interleaved so that load from other
    processes on a shared machine hits every column alike."""
    torch.manual_seed(0)
    G = build(model, resolution=size, channels=3).G.to(device).eval()
    jobs = os.cpu_count() or 1
    model = Model(G, {"name": model}, device)
    n_videos = max(1, frames // G.frames)
    out = {"size": size, "device": str(device), "gen": 0.0, "encode": 0.0, "serial": 0.0, "threaded": 0.0,
           "files j1": 0.0, f"files j{jobs}": 0.0}
    for _ in range(repeat):
        gen, sample = _gen_fps(G, frames, chunk, device)
        out["gen"] = max(out["gen"], gen)
        out["encode"] = max(out["encode"], _encode_fps(sample, frames, tmp / "enc.mp4", preset))
        for mode, threaded in (("serial", False), ("threaded", True)):
            stats = stream(G, tmp / f"{mode}.mp4", frames, chunk=chunk, device=device, fps=25, threaded=threaded,
                           preset=preset, force=True)
            out[mode] = max(out[mode], stats["generated_fps"])
        for j in (1, jobs):
            t0 = time.perf_counter()
            write_per_seed(model, range(n_videos), tmp / "files", 25, preset=preset, jobs=j, force=True,
                           batch=8)
            out[f"files j{j}"] = max(out[f"files j{j}"], n_videos * G.frames / (time.perf_counter() - t0))
    return out


_RSS = """
import sys, torch
torch.set_num_threads(1)
from kinema.sample import load
load(sys.argv[1]).stream(sys.argv[2], int(sys.argv[3]), chunk=8, crf=30, preset="ultrafast", force=True)
print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
"""


def bench_memory(tmp: Path, counts=(1000, 10000)) -> None:
    """Peak RSS of `stream` at 128x128 for each length, in fresh processes."""
    torch.manual_seed(0)
    ms = build("dcgan", resolution=128, frames=8, channels=3, width=4, z_dim=16)
    export = save_generator(tmp / "mem.safetensors", ms.G, "dcgan", ms.kwargs, {"fps": 25})
    peaks = []
    for n in counts:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _RSS, str(export), str(tmp / f"m{n}.mp4"), str(n)],
                             capture_output=True, text=True, check=True)
        peaks.append(int(res.stdout.split()[-1]) / 1024)
        frame_mib = n * 128 * 128 * 3 / 2 ** 20
        print(f"stream {n:6d} frames 128x128: peak RSS {peaks[-1]:7.1f} MiB  ({time.perf_counter() - t0:5.1f} s; "
              f"holding them all would need {frame_mib:.0f} MiB more)")
    print(f"peak RSS ratio {counts[-1]} / {counts[0]} frames: {peaks[-1] / peaks[0]:.3f} "
          f"(+{peaks[-1] - peaks[0]:.1f} MiB)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mocogan")
    p.add_argument("--sizes", default="64,256")
    p.add_argument("--frames", type=int, default=None, help="frames per measurement (default 512 at 64^2, 96 at 256^2 on CPU)")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--preset", default="medium", help="x264 preset (kinema's default: medium)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeat", type=int, default=3, help="rounds per measurement (best kept)")
    p.add_argument("--memory", action="store_true", help="only the streaming-memory measurement")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.memory:
            bench_memory(tmp)
            return 0
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        print(f"model {args.model}, h264 preset {args.preset}, torch threads {torch.get_num_threads()}, "
              f"cpu cores {os.cpu_count()}" + (f", gpu {torch.cuda.get_device_name()}" if len(devices) > 1 else ""))
        jobs = os.cpu_count() or 1
        print(f"{'device':6s} {'size':>5s} {'gen':>8s} {'encode':>8s} {'serial':>8s} {'threaded':>9s} "
              f"{'files j1':>9s} {'files j' + str(jobs):>9s} {'serial/gen':>10s} {'thr/gen':>8s}   (frames/s)")
        for device in devices:
            for size in (int(s) for s in args.sizes.split(",")):
                frames = args.frames or (512 if size <= 64 or device.type == "cuda" else 96)
                if device.type == "cuda":
                    frames *= 8
                r = bench_size(args.model, size, frames, args.chunk, device, args.preset, tmp, args.repeat)
                print(f"{device.type:6s} {size:5d} {r['gen']:8.1f} {r['encode']:8.1f} {r['serial']:8.1f} "
                      f"{r['threaded']:9.1f} {r['files j1']:9.1f} {r['files j' + str(jobs)]:9.1f} "
                      f"{r['serial'] / r['gen']:10.2f} {r['threaded'] / r['gen']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
