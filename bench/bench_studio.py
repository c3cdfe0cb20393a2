"""kinema studio: request latency against calling the same functions directly, and 20 at once.

    python bench/bench_studio.py [--model dcgan] [--resolution 32] [--frames 16] [--requests 20]

Builds an (untrained) export of the given size in a temporary RUNS_DIR, then measures
* baseline: ``model.generate([seed])`` + ``write_video`` (+ GIF + PNG grid, as the studio writes),
  called directly, one seed at a time;
* studio: the same request over HTTP (FastAPI's test client, in process): submit, poll, done;
* concurrency: ``--requests`` requests posted at once from as many threads: time until all are
  done, per-request latency (queue wait + run), and the growth of resident memory (VmRSS).
Prints the studio/baseline ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dcgan")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()

    import torch
    from fastapi.testclient import TestClient

    from kinema.io import write_grid_png, write_video
    from kinema.models import build, save_generator
    from kinema.sample import load
    from kinema.studio.app import Studio, create_app

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="kinema-bench-studio-"))
    ms = build(args.model, resolution=args.resolution, frames=args.frames, channels=3, width=args.width)
    export = save_generator(root / "runs" / "m" / "export-000000k.safetensors", ms.G, ms.name, ms.kwargs, {"fps": 16})
    n = args.requests
    print(f"{args.model} {args.resolution}x{args.resolution}x{args.frames} width {args.width}, torch threads "
          f"{args.threads}, {n} requests of one seed each")

    model = load(export)
    out = root / "direct"

    def direct(seed: int) -> float:
        t0 = time.perf_counter()
        v = model.generate([seed])
        write_video(out / f"{seed}.mp4", v[0], model.fps, codec="h264")
        write_video(out / f"{seed}.gif", v[0], model.fps, codec="gif")
        write_grid_png(out / f"{seed}.png", v)
        return time.perf_counter() - t0

    studio = Studio(root / "runs", log=lambda *a: None)
    client = TestClient(create_app(studio))

    def request(seed: int) -> float:
        t0 = time.perf_counter()
        job = client.post("/api/generate", json={"export": "m", "seeds": str(seed)}).json()
        while job["state"] in ("queued", "running"):
            time.sleep(0.002)
            job = client.get(f"/api/jobs/{job['id']}").json()
        assert job["state"] == "done", job
        return time.perf_counter() - t0

    direct(10 ** 6), request(10 ** 6)   # warm-up (the studio loads the export into its cache)
    base, seq = [], []
    for s in range(n):   # interleaved, so both see the same machine load
        base.append(direct(s))
        seq.append(request(s))
    b, q = statistics.median(base), statistics.median(seq)
    print(f"baseline direct generate+encode : median {b * 1000:7.1f} ms")
    print(f"studio over HTTP, one at a time : median {q * 1000:7.1f} ms  = {q / b:.2f}x baseline "
          f"(+{(q - b) * 1000:.1f} ms for HTTP, queue, polling)")

    before, peak, stop = rss_mb(), [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    lat = [0.0] * n
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        lat[i] = request(1000 + i)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0
    stop.set()
    sampler.join()
    order = studio.queue.started_order[-n:]
    print(f"studio, {n} at once              : all done in {total:.2f} s ({total / n * 1000:.1f} ms per request, "
          f"{total / n / b:.2f}x baseline); latency median {statistics.median(lat):.2f} s, max {max(lat):.2f} s; "
          f"queue order kept: {order == sorted(order)}")
    print(f"resident memory: {before:.0f} MB before, peak {peak[0]:.0f} MB (+{peak[0] - before:.0f} MB)")
    studio.close()


if __name__ == "__main__":
    main()
