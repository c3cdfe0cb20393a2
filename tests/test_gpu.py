"""Checks that need a CUDA device (skipped where torch sees none; ``bench/gpu_session.sh`` runs them
together with the benchmark suite on a GPU machine).

* the hot loop never waits for the GPU outside log/save steps (``torch.cuda.set_sync_debug_mode``)
* kinema's CUDA defaults (bf16 autocast, channels-last, fused AdamW, cuDNN benchmark) train the
  same thing as fp32 on the CPU, with fp32 master weights
* the pinned-memory loader delivers on the device exactly the batches the CPU loader delivers
* a generated video is the same on the GPU as on the CPU up to a grey level
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from kinema.train import get_preset, override, train

from conftest import drift, run_weights

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def gpu_config(archive, out, model: str, steps: int, **runtime):
    # tiny preset, batch 4: log/sample/snapshot only at the end
    return override(get_preset("tiny"), data={"source": str(archive.path)}, log={"out": str(out), "log_kimg": 1e9},
                    model={"name": model}, schedule={"kimg": steps * 4 / 1000},
                    runtime={"device": "cuda", **runtime})


@pytest.mark.parametrize("model", ["videogan", "mocogan", "dcgan", "videovae"])
def test_hot_loop_never_syncs(tmp_path, bars_archive, model):
    steps = 12   # R1 every 2nd step; the NaN check every 20th (not reached)
    cfg = override(gpu_config(bars_archive, tmp_path / "run", model, steps), data={"flip": True})  # loader aug too

    def on_step(step: int) -> None:
        # From the end of step 2 to the start of the last (which logs and saves): any host sync raises.
        torch.cuda.set_sync_debug_mode("error" if 2 <= step < steps - 1 else "default")

    try:
        result = train(cfg, log=lambda *a: None, on_step=on_step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert result.steps == steps


def test_cuda_defaults_follow_fp32_on_cpu(tmp_path, bars_archive):
    start = run_weights(train(override(gpu_config(bars_archive, tmp_path / "s", "videogan", 1), runtime={"device": "cpu"}),
                          log=lambda *a: None))
    cpu = run_weights(train(override(gpu_config(bars_archive, tmp_path / "c", "videogan", 8), runtime={"device": "cpu"}),
                        log=lambda *a: None))
    result = train(gpu_config(bars_archive, tmp_path / "g", "videogan", 8), log=lambda *a: None)  # auto: all on
    gpu = run_weights(result)
    record = json.loads((tmp_path / "g" / "log.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    assert all(v.dtype == torch.float32 for v in gpu.values())   # bf16 autocast, fp32 master weights
    assert drift(cpu, gpu, start) < 0.3


def test_pinned_loader_matches_cpu(bars_archive):
    from kinema.data import AugmentConfig, ClipLoader

    def batches(device, workers):
        loader = ClipLoader(bars_archive, 4, seed=3, augment=AugmentConfig(flip=True), num_workers=workers,
                            device=device)
        out = [next(loader) for _ in range(5)]
        loader.close()
        return out

    for (a, la), (b, lb) in zip(batches("cpu", 0), batches("cuda", 2)):
        assert b.device.type == "cuda" and b.dtype == torch.float32
        assert torch.allclose(a, b.cpu(), atol=1e-6) and torch.equal(la, lb.cpu())


def test_generation_matches_cpu():
    from kinema.models import build
    from kinema.sample.generate import generate
    from kinema.io import to_uint8

    torch.manual_seed(0)
    G = build("videogan", resolution=32, frames=8, channels=3, width=16).G.eval()
    cpu = to_uint8(generate(G, [0, 1, 2], device="cpu")).astype(int)
    gpu = to_uint8(generate(G.cuda(), [0, 1, 2], device="cuda")).astype(int)
    assert abs(cpu - gpu).max() <= 1
