"""Checkpoints: exact resume, keep-last-K, tampering, SIGKILL during a write, SIGTERM saves and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.train import checkpoint, get_preset, list_states, load_state, override, train


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def archive(bars_archive):
    return bars_archive


def quiet(*args):
    pass


def tiny(archive, out, **sections):
    base = override(get_preset("tiny"), data={"source": str(archive.path)}, log={"out": str(out)})
    return override(base, **sections)


def train_steps(cfg, resume=None):
    """Train; -> (result, the global step numbers this call ran). A resume that loaded nothing
    would run every step from 1 again, which a fresh deterministic run reproduces exactly."""
    steps = []
    return train(cfg, resume=resume, log=quiet, on_step=steps.append), steps


@pytest.fixture
def loaded(monkeypatch):
    """What ``checkpoint.resume_into`` left in the loop's objects, captured right after it returned."""
    seen = {}
    real = checkpoint.resume_into

    def spy(spec, out, model_spec, nets, optimizers, loader, generators, *rest):
        nimg, step = real(spec, out, model_spec, nets, optimizers, loader, generators, *rest)
        seen.update(nimg=nimg, step=step, loader=loader.state_dict(), rng=checkpoint.capture_rng(),
                    nets={k: {n: t.clone() for n, t in net.state_dict().items()} for k, net in nets.items() if net is not None},
                    opt={k: _clone(o.state_dict()) for k, o in optimizers.items()},
                    latent=generators[0].get_state().clone(), aug=generators[1].get_state().clone())
        return nimg, step

    monkeypatch.setattr(checkpoint, "resume_into", spy)
    return seen


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


@pytest.fixture
def batches(monkeypatch):
    """Every batch the training loop takes from its ClipLoader: [(loader step, video)]."""
    from kinema.data import ClipLoader

    taken = []
    real = ClipLoader.__next__

    def spy(self):
        step = self.step
        video, labels = real(self)
        taken.append((step, video.clone()))
        return video, labels

    monkeypatch.setattr(ClipLoader, "__next__", spy)
    return taken


def assert_same(a, b, where=""):
    """Bitwise equality of nested training-state containers."""
    if isinstance(a, torch.Tensor):
        # Compare bytes, not values: torch.equal would let -0.0 pass for 0.0.
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where} differs"
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where} keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("model", ["mocogan", "videovae", "ctgan"])
def test_resume_is_bit_exact(tmp_path, archive, model, loaded, batches):
    # 7 steps of 4 clips: R1 every 2 steps, augmentation and EMA on; the split (3 + 4) is odd, so
    # the lazy-R1 phase and the loader position both cross the break.
    cfg = tiny(archive, tmp_path / "a", model={"name": model}, schedule={"kimg": 0.028})
    straight, _ = train_steps(cfg)
    straight_batches = dict(batches)
    part, _ = train_steps(override(cfg, log={"out": str(tmp_path / "b")}, schedule={"kimg": 0.012}))
    saved = load_state(part.state)
    del batches[:]
    resumed, steps = train_steps(override(cfg, log={"out": str(tmp_path / "b")}), resume="latest")
    # The resumed run ran only steps 4..7, starting from exactly what was saved after step 3:
    # weights, optimizer moments, loader position, every random stream; its first batch is the
    # straight run's 4th.
    assert steps == [4, 5, 6, 7] and (loaded["nimg"], loaded["step"]) == (12, 3)
    for name in ("G", "D", "E", "G_ema"):
        if saved[name] is not None:
            assert_same(loaded["nets"][name], saved[name], f"loaded {name}")
    assert_same(loaded["opt"], saved["opt"], "loaded optimizers")
    assert loaded["loader"]["step"] == saved["loader"]["step"] == 3
    assert_same(loaded["latent"], saved["ranks"][0]["latent"], "latent stream")
    assert_same(loaded["aug"], saved["ranks"][0]["aug"], "augmentation stream")
    assert_same(loaded["rng"], saved["ranks"][0]["rng"], "global RNG")
    assert [s for s, _ in batches] == [3, 4, 5, 6]
    assert_same(batches[0][1], straight_batches[3], "first resumed batch")
    assert straight.steps == resumed.steps == 7
    a, b = load_state(straight.state), load_state(resumed.state)
    for key in ("G", "D", "E", "G_ema", "opt", "counters", "loader", "ranks"):
        assert_same(a[key], b[key], key)
    # The export (G_ema) holds the same bits too (its header's key order may vary, so load it).
    from safetensors.torch import load_file
    assert_same(load_file(straight.export), load_file(resumed.export), "export")


def test_keep_last_k_and_latest(tmp_path):
    for kimg in (1, 2, 3, 4):
        checkpoint.save_state(tmp_path, kimg * 1000, {"x": torch.full((3,), float(kimg))}, keep=2)
    (tmp_path / ".tmp-training-state-000009k-abc.pt").write_bytes(b"half a file")
    assert [k for k, _ in list_states(tmp_path)] == [3000, 4000]
    path, state = checkpoint.find_resume("latest", tmp_path, log=None)
    assert path.name == "training-state-0000004000.pt" and state["x"][0] == 4
    with pytest.raises(KinemaError, match="no training-state"):
        checkpoint.find_resume("latest", tmp_path / "empty", log=None)
    with pytest.raises(KinemaError, match="no export"):
        checkpoint.latest_export(tmp_path)


def test_tampered_and_truncated_states_give_one_line_errors(tmp_path, archive):
    result = train(tiny(archive, tmp_path / "run"), log=quiet)
    data = result.state.read_bytes()
    # Flip one byte inside the largest stored tensor (G's weights live in the zip's data records).
    blob = torch.load(result.state, weights_only=True)
    biggest = max((t for t in blob["payload"]["G"].values()), key=lambda t: t.numel())
    needle = biggest.reshape(-1)[:8].numpy().tobytes()
    at = data.index(needle)
    bad = tmp_path / "tampered.pt"
    bad.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    with pytest.raises(KinemaError, match="checksum") as err:
        load_state(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(KinemaError, match="unreadable training state") as err:
        load_state(cut)
    assert "\n" not in str(err.value)
    # Through the CLI: one line on stderr, exit status 2.
    proc = subprocess.run([sys.executable, "-m", "kinema", "train", str(archive.path), "--preset", "tiny",
                           "--out", str(tmp_path / "run"), "--resume", str(cut), "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("kinema: error:") and len(proc.stderr.strip().splitlines()) == 1


def _run_cli(archive, out, *extra, env=None):
    cmd = [sys.executable, "-m", "kinema", "train", str(archive.path), "--preset", "tiny", "--out", str(out),
           "--threads", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def _wait_for(predicate, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.05)
    return False


def test_sigkill_during_a_write_keeps_the_previous_state(tmp_path, archive):
    out = tmp_path / "run"
    first = train(tiny(archive, out), log=quiet)
    good = first.state.read_bytes()
    # Resume in a subprocess whose next write sleeps halfway through; SIGKILL it right there.
    proc = _run_cli(archive, out, "--resume", "latest", "--kimg", "0.032",
                    env={checkpoint.SLOW_WRITE_ENV: "60"})
    try:
        assert _wait_for(lambda: any(p.name.startswith(".tmp-training-state-") and p.stat().st_size > 0
                                     for p in out.iterdir()), proc), proc.communicate()[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".tmp-training-state-") for p in out.iterdir())  # the torn write
    assert first.state.read_bytes() == good  # the previous state is untouched and still loads
    load_state(first.state)
    resumed, steps = train_steps(override(tiny(archive, out), schedule={"kimg": 0.032}), resume="latest")
    assert resumed.nimg == 32 and steps == [5, 6, 7, 8]  # continued after the 4 saved steps
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())  # temporaries cleaned up


def test_sigterm_finishes_the_step_saves_and_exits(tmp_path, archive):
    out = tmp_path / "run"
    proc = _run_cli(archive, out, "--kimg", "1000")
    try:
        assert _wait_for(lambda: (out / "log.jsonl").is_file() and (out / "log.jsonl").stat().st_size > 0, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout
    assert "stopped (signal)" in stdout
    ((kimg, path),) = list_states(out)
    state = load_state(path)
    assert 0 < state["counters"]["nimg"] < 1_000_000
    # And the run continues from there.
    again, steps = train_steps(override(tiny(archive, out), schedule={"kimg": (state["counters"]["nimg"] + 4) / 1000}),
                               resume="latest")
    assert again.steps == state["counters"]["step"] + 1 and steps == [again.steps]  # one more step, not all again


def _flip_a_tensor_byte(path):
    """Flip one bit inside the largest tensor of a training state (a checksum mismatch on load)."""
    data = path.read_bytes()
    blob = torch.load(path, weights_only=True)
    tensors = [t for t in _leaves(blob["payload"]) if t.numel() >= 8]
    needle = max(tensors, key=lambda t: t.numel()).reshape(-1)[:8].numpy().tobytes()
    at = data.index(needle)
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])


def _leaves(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _leaves(v)


def test_latest_skips_damaged_newer_states(tmp_path):
    for kimg in (1, 2, 3, 4):
        checkpoint.save_state(tmp_path, kimg * 1000, {"x": torch.full((64,), float(kimg))}, keep=10)
    (newest, _), (second, _) = [(p, k) for k, p in reversed(list_states(tmp_path))][:2]
    _flip_a_tensor_byte(newest)                                      # tampered
    warnings = []
    path, state = checkpoint.find_resume("latest", tmp_path, log=warnings.append)
    assert path == checkpoint.state_path(tmp_path, 3000) and state["x"][0] == 3     # the newest readable one
    assert len(warnings) == 1 and str(newest) in warnings[0] and "checksum" in warnings[0]
    second.write_bytes(second.read_bytes()[:200])                    # torn as well
    warnings.clear()
    path, state = checkpoint.find_resume("latest", tmp_path, log=warnings.append)
    assert state["x"][0] == 2 and len(warnings) == 2
    for _, p in list_states(tmp_path)[:2]:
        p.write_bytes(b"")
    with pytest.raises(KinemaError, match="no readable training state") as err:
        checkpoint.find_resume("latest", tmp_path, log=None)
    assert "\n" not in str(err.value)
    # An explicit path is never replaced by another state.
    with pytest.raises(KinemaError, match="checksum"):
        checkpoint.find_resume(str(newest), tmp_path, log=None)


def test_resume_latest_continues_from_the_last_good_state(tmp_path, archive, loaded):
    out = tmp_path / "run"
    cfg = tiny(archive, out, schedule={"kimg": 0.016})
    straight, _ = train_steps(override(cfg, log={"out": str(tmp_path / "straight")}))
    good, _ = train_steps(override(cfg, schedule={"kimg": 0.008}))                    # 2 steps saved
    saved = load_state(good.state)
    # A newer state (as a later snapshot would be), damaged on disk after it was written.
    newer = checkpoint.save_state(out, 999_000, saved, keep=10)
    _flip_a_tensor_byte(newer)
    messages = []
    resumed_steps = []
    resumed = train(cfg, resume="latest", log=messages.append, on_step=resumed_steps.append)
    assert any("skipping" in m and str(newer) in m for m in messages)
    assert any(f"resumed from {good.state}" in m for m in messages)
    assert resumed_steps == [3, 4] and loaded["step"] == 2
    assert_same(loaded["nets"]["G"], saved["G"], "loaded G")
    a, b = load_state(straight.state), load_state(resumed.state)
    for key in ("G", "D", "G_ema", "opt", "counters", "loader"):
        assert_same(a[key], b[key], key)
