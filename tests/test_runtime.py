"""Runtime settings of the training loop on CPU: bf16 autocast, channels-last layouts, the fused
optimizer, torch.compile, and the profiling hooks (phase labels, ``on_step``). On CUDA these are
the defaults; here each runs because it is asked for, so the code paths a GPU takes are exercised
in CI (the GPU's own checks live in tests/test_gpu.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kinema.errors import KinemaError
from kinema.train import get_preset, losses, override, train
from kinema.train.config import Runtime, RuntimeConfig, TrainConfig

from conftest import drift, run_weights

pytestmark = pytest.mark.usefixtures("one_thread")

PLAIN = {"precision": "fp32", "channels_last": "off", "fused": "off", "compile": False}


def run(archive, out, model: str, kimg: float = 0.016, **runtime):
    cfg = override(get_preset("tiny"), data={"source": str(archive.path)}, log={"out": str(out)},
                   model={"name": model}, schedule={"kimg": kimg}, runtime={**PLAIN, **runtime})
    return train(cfg, log=lambda *a: None)


def test_runtime_resolves_per_device():
    auto = RuntimeConfig()
    assert Runtime.resolve(auto, "cuda") == Runtime(bf16=True, channels_last=True, fused=True, compile=False)
    assert Runtime.resolve(auto, "cpu") == Runtime(bf16=False, channels_last=False, fused=False, compile=False)
    asked = RuntimeConfig(precision="bf16", channels_last="on", fused="on", compile=True)
    assert Runtime.resolve(asked, "cpu") == Runtime(bf16=True, channels_last=True, fused=True, compile=True)
    off = RuntimeConfig(precision="fp32", channels_last="off", fused="off")
    assert Runtime.resolve(off, "cuda") == Runtime(bf16=False, channels_last=False, fused=False, compile=False)
    with pytest.raises(KinemaError, match="precision: unknown precision 'fp16'"):
        TrainConfig(runtime=RuntimeConfig(precision="fp16")).validate()
    with pytest.raises(KinemaError, match="channels_last: must be auto, on or off"):
        TrainConfig(runtime=RuntimeConfig(channels_last="yes")).validate()


def test_cli_sets_runtime(capsys):
    from kinema.cli import main

    assert main(["train", "--preset", "tiny", "--precision", "bf16", "--channels-last", "on", "--fused", "off",
                 "--dry-run"]) == 0
    runtime = json.loads(capsys.readouterr().out)["runtime"]
    assert (runtime["precision"], runtime["channels_last"], runtime["fused"]) == ("bf16", "on", "off")


@pytest.mark.parametrize("model", ["videogan", "dcgan"])   # 3-D and 2-D convolutions
def test_layout_and_fused_optimizer_keep_the_math(tmp_path, bars_archive, model):
    # fp32 with channels-last weights and batches and the fused AdamW kernel computes the same
    # thing as the plain loop; only the summation order differs.
    start = run_weights(run(bars_archive, tmp_path / "start", model, kimg=0.004))   # after 1 step
    plain = run_weights(run(bars_archive, tmp_path / "plain", model))
    fast = run_weights(run(bars_archive, tmp_path / "fast", model, channels_last="on", fused="on"))
    assert 0 < drift(plain, fast, start) < 1e-3    # the settings took effect, and changed only rounding


def test_resume_under_another_layout(tmp_path, bars_archive):
    # A state saved with plain layouts, resumed with channels-last weights and the fused optimizer,
    # continues like a plain resume (Adam's moments follow their weights' new layout).
    import shutil

    start = run_weights(run(bars_archive, tmp_path / "start", "videogan", kimg=0.004))
    run(bars_archive, tmp_path / "a", "videogan", kimg=0.008)
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    def resume(out, **runtime):
        cfg = override(get_preset("tiny"), data={"source": str(bars_archive.path)}, log={"out": str(out)},
                       model={"name": "videogan"}, schedule={"kimg": 0.016}, runtime={**PLAIN, **runtime})
        steps = []
        weights = run_weights(train(cfg, resume="latest", log=lambda *a: None, on_step=steps.append))
        assert steps == [3, 4]              # resumed after the 2 saved steps, not started over
        return weights

    plain, fast = resume(tmp_path / "a"), resume(tmp_path / "b", channels_last="on", fused="on")
    assert drift(plain, fast, start) < 1e-3


def test_optimizer_state_follows_its_weights_layout():
    # On CUDA the fused AdamW kernel refuses moments whose strides differ from the weight's.
    from kinema.train.checkpoint import match_optimizer_layout

    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d))
    opt = torch.optim.AdamW([w], lr=0.1)
    saved = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 3, 3, 3, 3),
                           "exp_avg_sq": torch.rand(4, 3, 3, 3, 3)}},
             "param_groups": [{**opt.state_dict()["param_groups"][0]}]}
    opt.load_state_dict(saved)
    assert opt.state[w]["exp_avg"].stride() != w.stride()          # what load_state_dict gives
    match_optimizer_layout(opt)
    for key in ("exp_avg", "exp_avg_sq"):
        assert opt.state[w][key].stride() == w.stride()
        assert torch.equal(opt.state[w][key], saved["state"][0][key])


def test_bf16_autocast_runs_on_cpu_and_follows_fp32(tmp_path, bars_archive, monkeypatch):
    dtypes = []
    real_loss = losses.d_loss_real

    def spy(logits, kind="ns"):
        dtypes.extend(h.dtype for h in (logits if isinstance(logits, (list, tuple)) else [logits]))
        return real_loss(logits, kind)

    monkeypatch.setattr(losses, "d_loss_real", spy)
    start = run_weights(run(bars_archive, tmp_path / "start", "videogan", kimg=0.004))
    fp32 = run_weights(run(bars_archive, tmp_path / "fp32", "videogan"))
    dtypes.clear()
    result = run(bars_archive, tmp_path / "bf16", "videogan", precision="bf16", channels_last="on")
    assert dtypes and set(dtypes) == {torch.bfloat16}            # D really ran under autocast
    records = [json.loads(line) for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    bf16 = run_weights(result)
    assert all(v.dtype == torch.float32 for v in bf16.values())  # master weights stay fp32
    # bf16 rounding moves the result, but it is the same training: far closer to fp32's end point
    # than fp32 moved in those steps.
    assert drift(fp32, bf16, start) < 0.2


def test_compile_trains_like_eager(tmp_path, bars_archive):
    from torch._dynamo.utils import counters

    start = run_weights(run(bars_archive, tmp_path / "start", "dcgan", kimg=0.004))
    torch._dynamo.reset()
    counters.clear()
    eager = run_weights(run(bars_archive, tmp_path / "eager", "dcgan"))
    assert not counters["stats"]["unique_graphs"]                        # eager: nothing compiled
    compiled = run_weights(run(bars_archive, tmp_path / "compiled", "dcgan", compile=True))
    # Dynamo captured graphs (G's forward, D's for its main and frozen uses) and compiled them.
    assert counters["stats"]["unique_graphs"] >= 2, dict(counters["stats"])
    assert counters["frames"]["ok"] >= 2 and not counters["graph_break"], dict(counters["graph_break"])
    assert drift(eager, compiled, start) < 1e-2


def test_profiler_sees_every_phase_and_on_step_every_step(tmp_path, bars_archive):
    from torch.profiler import ProfilerActivity, profile

    steps = []
    cfg = override(get_preset("tiny"), data={"source": str(bars_archive.path)}, log={"out": str(tmp_path / "r")},
                   model={"name": "mocogan"})
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train(cfg, log=lambda *a: None, on_step=steps.append)
    assert steps == list(range(1, result.steps + 1))
    counts = {e.key: e.count for e in prof.key_averages()}
    # tiny: 4 steps, R1 every 2nd step
    assert {p: counts.get(f"kinema/{p}") for p in ("data", "D_main", "D_reg", "G_main", "ema")} == \
        {"data": 4, "D_main": 4, "D_reg": 2, "G_main": 4, "ema": 4}
