"""Documented contracts, pinned literally: durable atomic writes (fsync of the file, then of its folder
after the rename) and the loader's order and augmentation rule (the formula in kinema/data/loader.py's
docstring, recomputed here from numpy, not taken from the loader)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from kinema.data import AugmentConfig, ClipLoader, prepare
from kinema.data.augment import apply, sample_params
from kinema.fsutil import atomic_dir, atomic_path, atomic_write_bytes


# --- fsync ---------------------------------------------------------------------------------------

@pytest.fixture
def fsyncs(monkeypatch):
    """Every os.fsync call: is it a folder, its inode, and the file's size and bytes at that moment."""
    calls = []
    real = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        folder = stat.S_ISDIR(st.st_mode)
        try:
            data = None if folder else os.pread(fd, st.st_size + 1, 0)
        except OSError:  # opened write-only
            data = None
        calls.append({"dir": folder, "ino": st.st_ino, "size": st.st_size, "data": data})
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_file_write_fsyncs_the_file_then_the_folder(tmp_path, fsyncs, existing):
    target = tmp_path / "sub" / "out.bin"
    if existing:
        target.parent.mkdir()
        target.write_bytes(b"old contents")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    # Two calls, in this order: the file (complete, not yet under its final name), then the folder
    # (after the rename, so the rename itself is durable).
    assert [c["dir"] for c in fsyncs] == [False, True], fsyncs
    file_call, dir_call = fsyncs
    assert file_call["data"] == b"new contents"
    assert file_call["ino"] == target.stat().st_ino          # the inode now under the final name
    assert dir_call["ino"] == target.parent.stat().st_ino


def test_fsync_happens_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target = tmp_path / "state.pt"
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(("replace", None)), real_replace(a, b))[1])
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"x" * 100)
    assert order == [("fsync", False), ("replace", None), ("fsync", True)]


def test_atomic_dir_fsyncs_the_parent_after_the_rename(tmp_path, fsyncs):
    out = tmp_path / "folder"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("a")
    assert out.is_dir() and (out / "a.txt").read_text() == "a"
    assert fsyncs[-1]["dir"] and fsyncs[-1]["ino"] == tmp_path.stat().st_ino
    n = len(fsyncs)
    with atomic_dir(out, force=True) as d:                 # replacing: still durable
        (d / "b.txt").write_text("b")
    assert not (out / "a.txt").exists() and (out / "b.txt").read_text() == "b"
    assert len(fsyncs) > n and fsyncs[-1]["dir"] and fsyncs[-1]["ino"] == tmp_path.stat().st_ino


def test_training_state_and_archive_files_are_fsynced(tmp_path, fsyncs):
    from kinema.train import checkpoint

    path = checkpoint.save_state(tmp_path / "run", 1000, {"x": torch.arange(5)}, keep=2)
    files = {c["ino"] for c in fsyncs if not c["dir"]}
    folders = {c["ino"] for c in fsyncs if c["dir"]}
    assert path.stat().st_ino in files and path.parent.stat().st_ino in folders
    fsyncs.clear()
    arch = prepare("builtin:bouncing_shapes", tmp_path / "arch", resolution=16, frames=4, num_videos=3, workers=1,
                   verbose=False)
    files = {c["ino"] for c in fsyncs if not c["dir"]}
    on_disk = {p.name: p.stat().st_ino for p in arch.path.iterdir()}
    assert set(on_disk) >= {"frames.u8", "clips.npy", "labels.npy", "index.json", "report.json"}
    assert all(on_disk[name] in files for name in ("frames.u8", "clips.npy", "labels.npy", "index.json",
                                                   "report.json")), (on_disk, files)
    assert fsyncs[-1]["dir"] and fsyncs[-1]["ino"] == arch.path.parent.stat().st_ino


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors through /proc")
def test_atomic_writes_make_missing_folders_and_leak_no_descriptors(tmp_path):
    before = _open_fds()
    for i in range(20):
        atomic_write_bytes(tmp_path / "a" / "b" / f"{i}.bin", b"x")           # parents created
        with atomic_dir(tmp_path / "c" / "d" / f"dir{i}") as d:
            (d / "f").write_text("y")
    assert _open_fds() == before
    assert len(list((tmp_path / "a" / "b").iterdir())) == 20 and (tmp_path / "c" / "d" / "dir19" / "f").is_file()
    # The temporary keeps the destination's last extension (PyAV and Pillow pick formats by it).
    with atomic_path(tmp_path / "clip.v2.mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-clip.v2-")
        assert tmp.suffix == ".mp4" and not tmp.name.endswith(".v2.mp4")
        tmp.write_bytes(b"z")


def test_atomic_dir_force_over_a_symlink_replaces_the_link_not_its_target(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    with atomic_dir(link, force=True) as d:
        (d / "new.txt").write_text("new")
    assert not link.is_symlink() and (link / "new.txt").read_text() == "new"
    assert (target / "keep.txt").read_text() == "keep"                        # the target is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]  # no .old-* left behind


def test_atomic_file_write_onto_a_folder_or_a_link(tmp_path):
    from kinema.errors import KinemaError

    folder = tmp_path / "taken"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(KinemaError, match="is a folder; kinema replaces files only"):
        atomic_write_bytes(folder, b"x")
    assert (folder / "inside").is_dir() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)                        # a link is replaced, not followed
    atomic_write_bytes(link, b"y")
    assert not link.is_symlink() and link.read_bytes() == b"y" and (folder / "inside").is_dir()


# --- loader order -------------------------------------------------------------------------------

ALL = AugmentConfig(flip=True, crop=True, rotate=True, color=True)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """40 clips of 4 frames at 16x16, 3 channels, with labels."""
    return prepare("builtin:bouncing_shapes", tmp_path_factory.mktemp("c") / "shapes", resolution=16, frames=4,
                   num_videos=40, workers=1, verbose=False)


def documented_batch(archive, seed, step, batch, world, rank, augment, drop_last=True):
    """The batch the module docstring of kinema.data.loader promises, computed from its formulas."""
    n, g = archive.num_clips, batch * world
    per_epoch = n // g if drop_last else -(-n // g)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)        # P_e
    idx = order[k * g:(k + 1) * g][rank * batch:(rank + 1) * batch]   # rank r's slice of step k
    clips = torch.from_numpy(archive.clips(idx))                        # uint8 [B, T, H, W, C]
    video = clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1            # [B, C, T, H, W] in [-1, 1]
    if augment.enabled:
        params = sample_params(augment, g, np.random.default_rng([seed, epoch, k, 1]))
        mine = {name: v[rank * batch:rank * batch + len(idx)] for name, v in params.items()}
        video = apply(video, augment, mine)
    return video, torch.from_numpy(archive.labels[idx])


@pytest.mark.parametrize("world", [1, 2])
def test_loader_order_and_augmentation_follow_the_documented_rule(shapes, world):
    batch, seed = 8 // world, 11
    loaders = [ClipLoader(shapes, batch, seed=seed, augment=ALL, rank=r, world_size=world) for r in range(world)]
    # 5 steps an epoch: 11 steps cover two whole epochs and the first step of a third.
    for step in range(11):
        for rank, loader in enumerate(loaders):
            video, labels = next(loader)
            want, want_labels = documented_batch(shapes, seed, step, batch, world, rank, ALL)
            assert torch.equal(labels, want_labels), (step, rank)
            assert torch.allclose(video, want, atol=1e-5), (step, rank, (video - want).abs().max())


@pytest.mark.parametrize("drop_last", [True, False])
def test_epoch_length_with_and_without_drop_last(shapes, drop_last):
    loader = ClipLoader(shapes, 16, seed=4, drop_last=drop_last)
    assert loader.steps_per_epoch == (2 if drop_last else 3)               # 40 // 16, ceil(40 / 16)
    assert iter(loader) is loader
    sizes = []
    for step in range(4):
        assert loader.epoch == step // loader.steps_per_epoch
        video, labels = next(loader)
        want, want_labels = documented_batch(shapes, 4, step, 16, 1, 0, AugmentConfig(), drop_last=drop_last)
        assert torch.equal(video, want) and torch.equal(labels, want_labels)
        sizes.append(len(labels))
    assert sizes == ([16, 16, 16, 16] if drop_last else [16, 16, 8, 16])


def test_defaults_and_argument_checks(shapes):
    from kinema.errors import KinemaError

    plain, seeded = ClipLoader(shapes, 8), ClipLoader(shapes, 8, seed=0)
    assert plain.num_workers == 0 and plain.step == 0
    assert all(torch.equal(a, b) for a, b in zip(next(plain), next(seeded)))   # the default seed is 0
    ClipLoader(shapes, 1)
    ClipLoader(shapes, 4, rank=1, world_size=2)
    for bad in (dict(batch_size=0), dict(batch_size=4, world_size=0), dict(batch_size=4, rank=-1),
                dict(batch_size=4, rank=2, world_size=2)):
        with pytest.raises(KinemaError, match="ClipLoader: bad"):
            ClipLoader(shapes, **bad)


def test_resume_positions_across_world_sizes_and_epochs(shapes):
    from kinema.errors import KinemaError

    two = ClipLoader(shapes, 4, seed=5, rank=0, world_size=2)
    for _ in range(6):                                      # into epoch 1 (5 global steps an epoch)
        next(two)
    one = ClipLoader(shapes, 8, seed=5)                     # the same global batch of 8: allowed
    one.load_state_dict(two.state_dict())
    assert one.epoch == 1
    video, _ = next(one)
    assert torch.allclose(video, documented_batch(shapes, 5, 6, 8, 1, 0, AugmentConfig())[0])
    back = ClipLoader(shapes, 4, seed=5, rank=1, world_size=2)
    back.load_state_dict(one.state_dict())
    assert torch.allclose(next(back)[0], documented_batch(shapes, 5, 7, 4, 2, 1, AugmentConfig())[0])
    with pytest.raises(KinemaError, match="global batch of 8, now 4"):
        ClipLoader(shapes, 4, seed=5).load_state_dict(one.state_dict())


def test_batches_in_shared_memory_only_when_built_by_workers(shapes, monkeypatch):
    import kinema.data.loader as loader_module

    main = ClipLoader(shapes, 8, seed=1)
    assert not next(main)[0].is_shared()                    # built here: ordinary memory
    raw = ClipLoader(shapes, 8, seed=1)
    raw._data.finish = False                                # the accelerator path, built here
    assert not raw._data[0][0].is_shared()
    # CPU batches are finished inside the worker: the training process converts nothing itself.
    calls = []
    real = loader_module.finish
    monkeypatch.setattr(loader_module, "finish", lambda *a: (calls.append(1), real(*a))[1])
    workers = ClipLoader(shapes, 8, seed=1, num_workers=1, prefetch_factor=1)
    first = next(workers)
    assert first[0].is_shared() and calls == []
    # load_state_dict while workers run: they restart at the restored position.
    workers.load_state_dict(ClipLoader(shapes, 8, seed=1).state_dict())
    again = next(workers)
    workers.close()
    assert torch.equal(again[0], first[0])


# --- damaged archives ---------------------------------------------------------------------------

def _copy(archive, folder):
    import shutil

    from kinema.data import open_archive

    shutil.copytree(archive.path, folder)
    return open_archive(folder)


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_detects_damage_in_every_file_it_covers(shapes, tmp_path):
    from kinema.data import open_archive

    assert shapes.verify()
    a = _copy(shapes, tmp_path / "frames")
    _flip(a.path / "frames.u8", a.path.joinpath("frames.u8").stat().st_size // 2)   # one bit of one pixel
    assert not a.verify()
    b = _copy(shapes, tmp_path / "clips")
    _flip(b.path / "clips.npy", b.path.joinpath("clips.npy").stat().st_size - 16)   # the last clip's video: 39 -> 38
    assert not open_archive(b.path).verify()
    c = _copy(shapes, tmp_path / "labels")
    _flip(c.path / "labels.npy", c.path.joinpath("labels.npy").stat().st_size - 8)  # a label
    assert not open_archive(c.path).verify()
    d = _copy(shapes, tmp_path / "index")
    index = (d.path / "index.json").read_text()
    (d.path / "index.json").write_text(index.replace('"fps": ', '"fps": 1', 1))     # another frame rate
    assert not open_archive(d.path).verify()
    assert _copy(shapes, tmp_path / "intact").verify()


@pytest.mark.parametrize("change", [-1, -4096, 1])
def test_truncated_or_grown_frames_file_is_refused_on_open(shapes, tmp_path, change):
    from kinema.data import open_archive
    from kinema.errors import KinemaError

    a = _copy(shapes, tmp_path / "a")
    frames = a.path / "frames.u8"
    data = frames.read_bytes()
    frames.write_bytes(data[:change] if change < 0 else data + bytes(change))
    with pytest.raises(KinemaError, match="truncated or replaced archive") as err:
        open_archive(a.path)
    msg = str(err.value)
    assert "\n" not in msg and str(frames) in msg and f"{len(data) + change} bytes" in msg
    with pytest.raises(KinemaError, match="frames.u8"):
        ClipLoader(a.path, 4)
