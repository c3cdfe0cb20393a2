"""The shared ground: atomic writes, tensor <-> uint8 conversion, the CLI shell."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.fsutil import atomic_dir, atomic_path, atomic_write_text, refuse_existing
from kinema.io.convert import from_uint8, to_uint8


def _litter(folder):
    return [p for p in os.listdir(folder) if p.startswith((".tmp-", ".old-"))]


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".bin" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert _litter(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _litter(tmp_path) == []


def test_atomic_dir_refuses_then_replaces(tmp_path):
    out = tmp_path / "archive"
    with atomic_dir(out) as d:
        (d / "x").write_text("1")
    with pytest.raises(KinemaError, match="already exists"):
        with atomic_dir(out):
            pass
    # A failure with force leaves the old folder intact.
    with pytest.raises(ValueError):
        with atomic_dir(out, force=True) as d:
            (d / "x").write_text("2")
            raise ValueError
    assert (out / "x").read_text() == "1"
    with atomic_dir(out, force=True) as d:
        (d / "y").write_text("3")
    assert sorted(os.listdir(out)) == ["y"]
    assert _litter(tmp_path) == []


def test_refuse_existing_names_the_file(tmp_path):
    f = tmp_path / "clip one.mp4"
    f.write_bytes(b"")
    with pytest.raises(KinemaError) as err:
        refuse_existing(f, force=False)
    assert str(f) in str(err.value) and "\n" not in str(err.value)
    refuse_existing(f, force=True)


def test_uint8_round_trip_and_layout():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 5, 6, 7, 3), dtype=np.uint8)  # [B,T,H,W,C]
    video = from_uint8(frames)
    assert video.shape == (2, 3, 5, 6, 7) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert torch.equal(video[1, 2, 3, 4, 5], torch.tensor(frames[1, 3, 4, 5, 2] / 127.5 - 1, dtype=torch.float32))
    np.testing.assert_array_equal(to_uint8(video), frames)
    np.testing.assert_array_equal(to_uint8(from_uint8(frames[0])), frames[0])  # unbatched
    # Out-of-range values are clamped, the extremes map to 0 and 255.
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 1, 5, 1, 1)
    assert to_uint8(x).ravel().tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError):
        from_uint8(frames.astype(np.float32))


def test_cli_help_lists_only_working_commands():
    out = subprocess.run([sys.executable, "-m", "kinema", "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: kinema" in out
    from kinema.cli import _commands
    for mod in _commands():
        assert mod.NAME in out
        assert callable(mod.run) and callable(mod.add_arguments)


def test_atomic_results_get_ordinary_permissions(tmp_path):
    # mkstemp/mkdtemp temporaries are private; the finished file and folder must not be.
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
