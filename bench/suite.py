"""The benchmark suite: one command, every figure beside a baseline from the same run.

    python bench/suite.py --quick                 # CPU, ~1.5 minutes on 2 cores (1 thread)
    python bench/suite.py --gpu                   # the GPU set in one script; a 450 s budget keeps it
                                                  # under 8 minutes (estimate: not yet run on a GPU)
    python bench/suite.py --gpu --models videogan --sizes 64 --compile    # a subset, plus torch.compile

Writes ``OUT/suite.json`` (every row, the machine, the definitions) and ``OUT/suite.md`` (a table)
and prints the table. Rows:

* train    clips/s of kinema's own training loop (``kinema.train.train``: loader, D main, lazy R1,
           G main, EMA) per model at 64x64x16 and 128x128x16 (CPU: 32x32x16, --quick; 32 and 64
           otherwise), measured between log records after a warm-up. The baseline is the same loop
           in eager fp32 (``precision=fp32``, ``channels_last=off``, ``fused=off``, no compile;
           TF32 convolutions as PyTorch's cuDNN default has them). The headline model (videogan at
           the first size) is measured with each setting added in turn (bf16, + channels-last,
           + fused AdamW [= kinema's CUDA default], + torch.compile with --compile); the others
           with the baseline and all settings. Peak memory.
           MFU = model FLOP/s / the card's dense bf16 peak, with model FLOPs per training clip
           defined as (forward FLOPs from ``kinema.models.flops_per_clip``; backward = 2 x forward):
             GAN: D phase  G forward without grad (1 G) + D fwd+bwd on the fake and the real (3 D + 3 D)
                  G phase  G fwd+bwd (3 G) + D fwd+bwd (3 D)                  -> 4 G + 9 D per clip
             VAE: E fwd+bwd + G fwd+bwd                                       -> 3 E + 3 G per clip
           not counted: lazy R1, augmentation, EMA, optimizer steps (so MFU is a lower bound).
* generate frames/s of generation alone (the baseline: ``kinema.sample.stream``'s chunks, converted
           to uint8 on the CPU, dropped), H.264 encoding alone, and generation + encoding two ways:
           one long stream with the encoder on a background thread (``kinema stream``), and one
           file per seed with an encoder process per core (``kinema generate --jobs N``); ratio
           1.00 = encoding is free. ultrafast and medium (kinema's default) x264 presets.
* loader   ClipLoader clips/s at 64x64x16, batch 64: workers (and, on a GPU, pinned uint8 copies
           finished on the device) against 0 workers on the CPU.
* features feature-extraction clips/s (16x64x64 clips): batched against batch 1.
* profile  where a training step of the headline model goes (kinema's default settings for the
           device), from ``torch.profiler`` over a window of steps after a warm-up: wall ms per
           step; the share in data loading (``kinema/data``) and in each phase (``kinema/D_main``,
           ...); on a GPU the share of the step the GPU spends in kernels (the rest is launch
           overhead and host work the GPU waits for) and kernels launched per step.

Peak: ``--peak-tflops`` or, from the card's name, the dense bf16 spec (H100/H200 SXM: 989 TFLOP/s;
a large bf16 matmul reaches less than the spec, so MFU against the spec is a conservative figure). On
CPU there is no meaningful peak: n/a. Numbers depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts

from bench_generate import bench_size  # noqa: E402
from bench_metrics import throughput  # noqa: E402

from kinema.data import ClipLoader, prepare  # noqa: E402
from kinema.models import build, flops_per_clip  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' spec sheets, TFLOP/s (SXM parts).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


class Table:
    """Rows of (section, name, value, unit, baseline, limit) -> ratio and fraction of the limit."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, section: str, name: str, value: float, unit: str, baseline: float | None = None,
            baseline_name: str = "", limit: float | None = None, limit_name: str = "", **extra) -> dict:
        row = {"section": section, "name": name, "value": value, "unit": unit, "baseline": baseline,
               "baseline_name": baseline_name, "ratio": (value / baseline) if baseline else None,
               "limit": limit, "limit_name": limit_name, "of_limit": (value / limit) if limit else None, **extra}
        self.rows.append(row)
        print(f"  {section:8s} {name:66s} {value:10.1f} {unit:9s}"
              + (f"  {row['ratio']:5.2f}x {baseline_name}" if row["ratio"] else "")
              + (f"  {100 * row['of_limit']:5.1f}% of {limit_name}" if row["of_limit"] else ""), flush=True)
        return row

    def markdown(self) -> str:
        lines = ["| section | measurement | value | unit | baseline (same run) | ratio | limit | % of limit |",
                 "|---|---|---:|---|---|---:|---|---:|"]
        for r in self.rows:
            base = f"{r['baseline']:.1f} ({r['baseline_name']})" if r["baseline"] else "-"
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
            limit = f"{r['limit']:.0f} {r['limit_name']}" if r["limit"] else "n/a"
            frac = f"{100 * r['of_limit']:.1f}%" if r["of_limit"] else "n/a"
            lines.append(f"| {r['section']} | {r['name']} | {r['value']:.1f} | {r['unit']} | {base} | {ratio} | "
                         f"{limit} | {frac} |")
        return "\n".join(lines)


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    """(dense bf16 peak FLOP/s or None, its description)."""
    if override_tflops:
        return override_tflops * 1e12, f"{override_tflops:.0f} TFLOP/s (given)"
    if device.type != "cuda":
        return None, "n/a (CPU)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12, f"{tflops:.0f} TFLOP/s dense bf16 ({name} spec)"
    return None, f"n/a (unknown card {name}; pass --peak-tflops)"


def training_flops(name: str, resolution: int, frames: int, width: int, device: torch.device) -> tuple[float, dict]:
    """Model FLOPs per training clip (see the module docstring) and the forward counts."""
    ms = build(name, resolution=resolution, frames=frames, channels=3, width=width)
    for net in (ms.G, ms.D, ms.E):
        if net is not None:
            net.to(device)   # the count runs one real forward: on the GPU when there is one
    f = flops_per_clip(ms)
    per_clip = 3 * f["E"] + 3 * f["G"] if ms.kind == "vae" else 4 * f["G"] + 9 * f["D"]
    return float(per_clip), f


# Training settings measured, each adding one to the previous; the first is the baseline.
BASELINE = {"precision": "fp32", "channels_last": "off", "fused": "off", "compile": False}
ABLATION = [("eager fp32", BASELINE),
            ("bf16", {**BASELINE, "precision": "bf16"}),
            ("bf16 + channels-last", {**BASELINE, "precision": "bf16", "channels_last": "on"}),
            ("bf16 + channels-last + fused AdamW", {**BASELINE, "precision": "bf16", "channels_last": "on",
                                                   "fused": "on"})]
COMPILED = ("all + compile", {"precision": "bf16", "channels_last": "on", "fused": "on", "compile": True})


def bench_config(archive: Path, out: Path, model: str, width: int, batch: int, device: str, runtime: dict,
                 log_every: int = 1000, **schedule):
    """The default preset on ``archive`` with benchmark logging (no samples, snapshots, TensorBoard)."""
    from kinema.train import get_preset, override

    return override(get_preset("default"),
                    data={"source": str(archive), "num_workers": 2 if device == "cuda" else 0},
                    model={"name": model, "width": width}, schedule={"kimg": 1e6, "batch": batch, **schedule},
                    log={"out": str(out), "log_kimg": log_every * batch / 1000, "snapshot_kimg": 1e9,
                         "sample_kimg": 1e9, "num_samples": 1, "tensorboard": False, "progress": False, "keep": 1},
                    runtime={"device": device, **runtime})


def train_rate(archive: Path, out: Path, model: str, width: int, batch: int, device: str, runtime: dict,
               seconds: float) -> tuple[float, float | None]:
    """(clips/s after warm-up, peak GPU memory in GiB or None) of ``kinema.train.train``."""
    from kinema.train import train

    # Log every few steps (each record syncs the host once), stop on the wall clock; the rate is
    # taken between the first record after the warm-up and the last one.
    cfg = bench_config(archive, out, model, width, batch, device, runtime, log_every=4 if device == "cuda" else 2,
                       minutes=seconds / 60)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    train(cfg, log=lambda *a: None)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # Skip the first third (allocation, cuDNN autotune, compile), but keep at least two records.
    warm = min(len(records) // 3, len(records) - 2)
    if warm < 0:
        raise RuntimeError(f"{model}: too few steps in {seconds} s to measure; give more --train-seconds")
    first, last = records[warm], records[-1]
    if last["time"] <= first["time"]:
        raise RuntimeError(f"{model}: too few steps in {seconds} s to measure; give more --train-seconds")
    return (last["kimg"] - first["kimg"]) * 1000 / (last["time"] - first["time"]), memory


def shapes_archive(tmp: Path, size: int, clips: int) -> Path:
    """Bouncing shapes at ``size``x``size``x16, prepared once per suite run."""
    path = tmp / f"shapes{size}"
    if not path.exists():
        prepare("builtin:bouncing_shapes", path, resolution=size, frames=16, num_videos=clips, workers=2,
                verbose=False)
    return path


def bench_train(table: Table, tmp: Path, args, device: torch.device, peak: float | None, peak_name: str) -> None:
    dev = device.type
    for size in args.sizes:
        archive = shapes_archive(tmp, size, args.clips)
        batch = args.batch if size <= 64 else max(1, args.batch // 2)
        for model in args.models:
            # Keep the whole suite inside its budget: later sections need ~1/4 of it.
            if time.perf_counter() - args.t0 > 0.75 * args.budget:
                args.skipped.append(f"train {model} {size}")
                print(f"  train    {model} {size}: skipped (time budget {args.budget:.0f} s)", flush=True)
                continue
            per_clip, fwd = training_flops(model, size, 16, args.width, device)
            label = f"{model} {size}x{size}x16 w{args.width} b{batch}"
            headline = model == args.models[0] and size == args.sizes[0]
            variants = ABLATION if headline else [ABLATION[0], ABLATION[-1]]
            variants = variants + ([COMPILED] if headline and args.compile else [])
            base_row = base_mem = None
            for i, (what, runtime) in enumerate(variants):
                seconds = args.train_seconds + (60 if runtime["compile"] else 0)
                rate, mem = train_rate(archive, tmp / f"run-{model}-{size}-{i}", model, args.width, batch, dev,
                                       runtime, seconds)
                row = table.add("train", f"{label} {what}", rate, "clips/s", base_row and base_row["value"],
                                "eager fp32", limit=peak and peak / per_clip, limit_name="clips/s at peak",
                                peak_gib=mem, flops_per_clip=per_clip, forward_flops=fwd, runtime=runtime,
                                mfu=peak and rate * per_clip / peak, model_tflops=rate * per_clip / 1e12)
                if dev == "cuda":
                    table.add("memory", f"{label} {what} peak GPU memory", mem, "GiB", base_mem, "eager fp32",
                              limit=torch.cuda.get_device_properties(device).total_memory / 2**30, limit_name="GiB")
                base_row, base_mem = base_row or row, base_mem or mem


PHASES = ("data", "D_main", "D_reg", "G_main", "VAE_main", "ema")


def step_profile(cfg, steps: int, warmup: int) -> dict:
    """Profile ``steps`` training steps of ``cfg`` after ``warmup``; per step, in ms:
    ``host_ms`` (the host's side of a step), ``phase_ms`` {phase: ms}, and on CUDA ``gpu_step_ms``
    (the step's span on the GPU), ``kernel_ms`` (time the GPU computed) and ``kernels``."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, schedule

    from kinema.train import override, train

    cuda = torch.device(cfg.runtime.device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    cfg = override(cfg, schedule={"kimg": (warmup + steps + 1) * cfg.schedule.batch / 1000, "minutes": 0.0})
    with profile(activities=activities, schedule=schedule(wait=1, warmup=warmup - 1, active=steps, repeat=1)) as prof:
        train(cfg, log=lambda *a: None, on_step=lambda step: prof.step())
    events = prof.key_averages()

    def per_step(us: float) -> float:
        return us / steps / 1e3

    # A record_function range shows up twice on CUDA: on the host (its CPU time) and as a GPU-side
    # annotation of the same name spanning its kernels; never mix the two.
    host = {e.key: e.cpu_time_total for e in events if e.device_type == DeviceType.CPU}
    out = {"host_ms": per_step(sum(t for k, t in host.items() if k.startswith("ProfilerStep"))),
           "phase_ms": {ph: per_step(host.get(f"kinema/{ph}", 0.0)) for ph in PHASES}}
    if cuda:
        gpu = [e for e in events if e.device_type == DeviceType.CUDA]
        notes = {e.key: e.device_time_total for e in gpu if getattr(e, "is_user_annotation", False)}
        kernels = [e for e in gpu if not getattr(e, "is_user_annotation", False)]   # kernels, copies, memsets
        out["gpu_step_ms"] = per_step(sum(t for k, t in notes.items() if k.startswith("ProfilerStep")))
        if any(k.startswith("kinema/") for k in notes):   # phases as the GPU ran them
            out["phase_ms"] = {ph: per_step(notes.get(f"kinema/{ph}", 0.0)) for ph in PHASES}
        out["kernel_ms"] = per_step(sum(e.self_device_time_total for e in kernels))
        out["kernels"] = sum(e.count for e in kernels) / steps
    return out


def bench_profile(table: Table, tmp: Path, args, device: torch.device) -> None:
    model, size = args.models[0], args.sizes[0]
    batch = args.batch if size <= 64 else max(1, args.batch // 2)
    archive = shapes_archive(tmp, size, args.clips)
    cfg = bench_config(archive, tmp / "run-profile", model, args.width, batch, device.type, {})  # device defaults
    prof = step_profile(cfg, steps=args.profile_steps, warmup=5)
    label = f"{model} {size}x{size}x16 b{batch}"
    # The host runs ahead of the GPU until the queue fills, so a step lasts the longer of its two sides.
    step = max(prof["host_ms"], prof.get("gpu_step_ms", 0.0))
    table.add("profile", f"{label} training step, host side", prof["host_ms"], "ms/step")
    if "gpu_step_ms" in prof:
        table.add("profile", f"{label} training step, GPU side", prof["gpu_step_ms"], "ms/step")
    if step <= 0:
        raise RuntimeError(f"profile: no ProfilerStep events recorded for {label}")
    for ph, ms in prof["phase_ms"].items():
        if ms > 0:
            table.add("profile", f"{label} in {ph}", 100 * ms / step, "% of step", phase_ms=ms)
    if "kernel_ms" in prof:
        table.add("profile", f"{label} GPU busy (kernels, copies)", 100 * prof["kernel_ms"] / step, "% of step",
                  kernel_ms=prof["kernel_ms"])
        table.add("profile", f"{label} GPU idle (launch/host bound)", 100 * max(0.0, step - prof["kernel_ms"]) / step,
                  "% of step")
        table.add("profile", f"{label} kernels and copies launched", prof["kernels"], "per step")


def bench_generate(table: Table, tmp: Path, args, device: torch.device) -> None:
    jobs = os.cpu_count() or 1
    for size in args.gen_sizes:
        label = f"{args.gen_model} {size}x{size}"
        for preset in ("ultrafast", "medium"):
            # Best of 2 rounds, measurements interleaved (load from other processes only ever slows).
            r = bench_size(args.gen_model, size, args.gen_frames, args.gen_chunk, device, preset, tmp, repeat=2)
            if preset == "ultrafast":
                table.add("generate", f"{label} generate only (chunks of {args.gen_chunk})", r["gen"], "frames/s")
            table.add("generate", f"{label} H.264 {preset} encode only", r["encode"], "frames/s")
            table.add("generate", f"{label} generate + H.264 {preset}, 1 stream", r["threaded"], "frames/s",
                      r["gen"], "generate only")
            table.add("generate", f"{label} generate + H.264 {preset}, a file per seed, {jobs} encoders",
                      r[f"files j{jobs}"], "frames/s", r["gen"], "generate only")


def bench_loader(table: Table, tmp: Path, args, device: torch.device) -> None:
    archive = shapes_archive(tmp, 64, args.clips)   # the 64^2 training archive when there is one

    def rate(workers: int, dev) -> float:
        loader = ClipLoader(archive, batch_size=64, seed=0, num_workers=workers, device=dev)
        next(loader)  # start the workers
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.loader_seconds:
            video, _ = next(loader)
            n += video.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        loader.close()
        return n / seconds

    base = rate(0, "cpu")
    table.add("loader", "ClipLoader 0 workers -> cpu float", base, "clips/s")
    table.add("loader", "ClipLoader 2 workers -> cpu float", rate(2, "cpu"), "clips/s", base, "0 workers")
    if device.type == "cuda":
        w = min(8, os.cpu_count() or 2)
        table.add("loader", f"ClipLoader {w} workers -> {device} (pinned uint8)", rate(w, device), "clips/s", base,
                  "0 workers")


def bench_features(table: Table, args, device: torch.device) -> None:
    from kinema.metrics.builtin import BuiltinExtractor
    from kinema.metrics.i3d import I3DStateDictExtractor, InceptionI3d

    rng = np.random.default_rng(0)
    n = args.feature_clips
    clips = rng.integers(0, 256, (n, 16, 64, 64, 3), dtype=np.uint8)
    dev = str(device)
    builtin = BuiltinExtractor().to(device)
    b1 = throughput(builtin, clips[:max(4, n // 4)], 1, dev)
    table.add("features", "builtin extractor batch 16", throughput(builtin, clips, 16, dev), "clips/s", b1, "batch 1")
    if args.i3d:
        i3d = I3DStateDictExtractor(InceptionI3d().eval()).to(device)
        k = n if device.type == "cuda" else max(4, n // 8)
        i1 = throughput(i3d, clips[:max(2, k // 2)], 1, dev, repeats=1)
        table.add("features", "I3D (random weights) batch 8", throughput(i3d, clips[:k], 8, dev, repeats=1),
                  "clips/s", i1, "batch 1")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="the GPU set (needs CUDA)")
    p.add_argument("--quick", action="store_true", help="CPU: smaller sizes and shorter timings (~2-3 minutes)")
    p.add_argument("--out", default="bench/results", help="folder for suite.json and suite.md")
    p.add_argument("--models", nargs="+", default=None, help="training models (default: all four)")
    p.add_argument("--sizes", nargs="+", type=int, default=None,
                   help="training resolutions (GPU: 64 128; CPU: 32 64, --quick 32)")
    p.add_argument("--width", type=int, default=None, help="model width (GPU 64, CPU 16)")
    p.add_argument("--batch", type=int, default=None, help="global batch up to 64^2, half above (GPU 64, CPU 8)")
    p.add_argument("--train-seconds", type=float, default=None, help="wall clock per training measurement")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (adds ~1 min per model)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card, TFLOP/s")
    p.add_argument("--sections", default="train,profile,generate,loader,features")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole suite; training configurations that would overrun are skipped "
                        "(default: 450 with --gpu, none on CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (CPU default 1: when other programs hold the cores, OpenMP threads "
                        "stall each other; the loader ran 20x slower with 2)")
    args = p.parse_args()
    if args.threads or not args.gpu:
        torch.set_num_threads(args.threads or 1)

    device = torch.device("cuda" if args.gpu else "cpu")
    if args.gpu and not torch.cuda.is_available():
        print("suite: --gpu needs CUDA, and torch sees no GPU", file=sys.stderr)
        return 2
    gpu = device.type == "cuda"
    args.models = args.models or ["videogan", "dcgan", "mocogan", "videovae"]   # the first is the headline
    # CPU: 64^2 x 16 trains at ~1-5 clips/s on 2 cores, so --quick measures at 32^2 x 16.
    args.sizes = args.sizes or ([64, 128] if gpu else ([32] if args.quick else [32, 64]))
    args.width = args.width or (64 if gpu else 16)
    args.batch = args.batch or (64 if gpu else 8)
    args.train_seconds = args.train_seconds or (8.0 if gpu else (20.0 if args.quick else 40.0))
    args.clips = 256 if gpu else 64
    args.gen_model, args.gen_sizes = "videogan", ([64, 256] if gpu else [64])
    args.gen_frames = 2048 if gpu else (128 if args.quick else 512)
    args.gen_chunk = 256 if gpu else 32   # frames per generator call: a GPU needs big batches
    args.profile_steps = 12 if gpu else 6   # GPU: steps 6-17, clear of the every-20-steps NaN check
    args.loader_seconds = 3.0 if gpu or not args.quick else 1.5
    args.feature_clips = 128 if gpu else (16 if args.quick else 64)
    args.i3d = gpu or not args.quick
    sections = set(args.sections.split(","))
    args.budget = args.budget or (450.0 if gpu else float("inf"))
    args.t0, args.skipped = time.perf_counter(), []

    peak, peak_name = peak_flops(device, args.peak_tflops)
    machine = {"device": torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu",
               "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
               "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "peak": peak_name,
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}
    print(f"suite on {machine['device']}, torch {torch.__version__}, {machine['threads']} threads, "
          f"load average {machine['load_average']:.1f}; peak {peak_name}", flush=True)
    table, failed = Table(), []
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write(final: bool) -> None:
        # Written after every section, so a run killed by its time limit keeps what it measured.
        from kinema.fsutil import atomic_write_text

        machine["seconds"] = round(time.perf_counter() - t0, 1)
        machine["skipped"], machine["failed"], machine["complete"] = args.skipped, failed, final
        atomic_write_text(out / "suite.json", json.dumps({"machine": machine, "rows": table.rows}, indent=1) + "\n")
        md = (f"kinema bench suite on **{machine['device']}** (torch {machine['torch']}, {machine['threads']} threads, "
              f"load average {machine['load_average']:.1f} at the start), {machine['time']}, {machine['seconds']} s"
              f"{'' if final else ' (INCOMPLETE: stopped before the end)'}. Peak: {peak_name}.\n\n"
              + table.markdown() + "\n")
        if args.skipped:
            md += f"\nSkipped to stay within the {args.budget:.0f} s budget: {', '.join(args.skipped)}.\n"
        if failed:
            md += "\nFailed sections (traceback in the output): " + "; ".join(failed) + "\n"
        atomic_write_text(out / "suite.md", md)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {"train": lambda: bench_train(table, tmp, args, device, peak, peak_name),
                "profile": lambda: bench_profile(table, tmp, args, device),
                "generate": lambda: bench_generate(table, tmp, args, device),
                "loader": lambda: bench_loader(table, tmp, args, device),
                "features": lambda: bench_features(table, args, device)}
        for name, section in runs.items():
            if name not in sections:
                continue
            if name != "train" and time.perf_counter() - args.t0 > args.budget:
                args.skipped.append(name)
                print(f"  {name}: skipped (time budget {args.budget:.0f} s)", flush=True)
                continue
            # One failing section must not cost the others.
            try:
                section()
            except Exception as err:  # noqa: BLE001 - reported in the output and the JSON
                traceback.print_exc()
                failed.append(f"{name}: {type(err).__name__}: {err}")
            write(final=False)
    machine["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    table.add("memory", "peak RSS of the suite process", machine["peak_rss_gib"], "GiB")
    write(final=True)
    print(f"\nwrote {out / 'suite.json'} and {out / 'suite.md'} ({machine['seconds']} s)")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
