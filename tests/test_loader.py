"""ClipLoader: seeded, resumable, sharded; augmentation identical across the frames of a clip."""

import numpy as np
import pytest
import torch

from kinema.data import AugmentConfig, ClipLoader, open_archive, prepare
from kinema.data.archive import ArchiveWriter
from kinema.data.augment import apply, sample_params
from kinema.errors import KinemaError
from kinema.fsutil import atomic_dir

ALL = AugmentConfig(flip=True, crop=True, rotate=True, color=True)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """40 clips of 4 frames at 16x16, 3 channels, with labels."""
    return prepare("builtin:bouncing_shapes", tmp_path_factory.mktemp("a") / "shapes", resolution=16, frames=4,
                   num_videos=40, workers=1)


def _take(loader, n):
    return [next(loader) for _ in range(n)]


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_batches_shape_range_and_labels(shapes):
    video, labels = next(ClipLoader(shapes, batch_size=8, seed=0))
    assert video.shape == (8, 3, 4, 16, 16) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1 and labels.dtype == torch.int64
    # Batches are archive clips: find each one by its pixels and check its label.
    all_clips = torch.from_numpy(shapes.clips(range(shapes.num_clips))).float() / 127.5 - 1  # [N, T, H, W, C]
    for v, y in zip(video, labels):
        match = (all_clips - v.permute(1, 2, 3, 0)).abs().flatten(1).amax(1).argmin()
        assert (all_clips[match] - v.permute(1, 2, 3, 0)).abs().max() < 1e-6 and shapes.labels[match] == y


def test_same_seed_same_batches_other_seed_differs(shapes):
    a = _take(ClipLoader(shapes, 8, seed=1, augment=ALL), 6)  # 6 steps > 1 epoch (5 steps)
    b = _take(ClipLoader(shapes, 8, seed=1, augment=ALL), 6)
    c = _take(ClipLoader(shapes, 8, seed=2, augment=ALL), 6)
    assert _same(a, b) and not _same(a, c)
    # Each epoch visits every clip once, in a new order.
    loader = ClipLoader(shapes, 8, seed=1)
    epochs = [[loader._data.indices(s)[0] for s in range(e * 5, e * 5 + 5)] for e in range(2)]
    assert sorted(np.concatenate(epochs[0]).tolist()) == list(range(40))
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))


def test_state_dict_resume_is_exact(shapes):
    ref = ClipLoader(shapes, 8, seed=3, augment=ALL)
    _take(ref, 3)
    state = ref.state_dict()
    expected = _take(ref, 4)
    resumed = ClipLoader(shapes, 8, seed=3, augment=ALL)
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 4), expected)
    with pytest.raises(KinemaError, match="seed"):
        ClipLoader(shapes, 8, seed=4).load_state_dict(state)


def test_workers_give_the_same_batches(shapes):
    plain = _take(ClipLoader(shapes, 8, seed=5, augment=ALL), 4)
    loader = ClipLoader(shapes, 8, seed=5, augment=ALL, num_workers=2, prefetch_factor=2)
    first = _take(loader, 2)
    state = loader.state_dict()  # prefetched batches are not counted as consumed
    loader.close()
    resumed = ClipLoader(shapes, 8, seed=5, augment=ALL, num_workers=1)
    resumed.load_state_dict(state)
    assert _same(first + _take(resumed, 2), plain)


def test_rank_sharding_is_disjoint_and_forms_the_global_batch(shapes):
    whole = ClipLoader(shapes, 8, seed=6, augment=ALL)
    ranks = [ClipLoader(shapes, 4, seed=6, augment=ALL, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        step = whole.step
        parts = [r._data.indices(step)[0] for r in ranks]
        assert not set(parts[0]) & set(parts[1])
        video, labels = next(whole)
        got = [next(r) for r in ranks]
        # Same clips, same augmentation, whatever the world size.
        assert torch.equal(torch.cat([g[0] for g in got]), video) and torch.equal(torch.cat([g[1] for g in got]), labels)
    with pytest.raises(KinemaError, match="fewer than one global batch"):
        ClipLoader(shapes, 32, seed=0, world_size=2)


def _constant_clip_archive(folder):
    """An archive of 6 clips whose frames are all identical (a gradient with a bright corner)."""
    with atomic_dir(folder) as tmp:
        writer = ArchiveWriter(tmp, (16, 24), 5, 3, 10.0)
        y, x = np.mgrid[0:16, 0:24]
        for i in range(6):
            img = np.stack([x * 10 + i, y * 15, 255 - x * 10], -1).clip(0, 255).astype(np.uint8)
            img[:4, :4] = 250
            writer.add(np.repeat(img[None], 5, 0), [0], i % 2, {"path": f"c{i}"})
        writer.finish(["even", "odd"], {"quarantined": []}, {})
    return open_archive(folder)


@pytest.mark.parametrize("cfg", [AugmentConfig(flip=True), AugmentConfig(crop=True), AugmentConfig(rotate=True),
                                 AugmentConfig(color=True), ALL])
def test_augmentation_is_identical_across_frames(tmp_path, cfg):
    arch = _constant_clip_archive(tmp_path / "c")
    plain = next(ClipLoader(arch, 6, seed=7))[0]
    video = next(ClipLoader(arch, 6, seed=7, augment=cfg))[0]  # [B, C, T, H, W]
    assert torch.equal(video, video[:, :, :1].expand_as(video))  # every frame equals the first
    assert not torch.allclose(video, plain)  # and something did change
    assert video.min() >= -1 and video.max() <= 1


def test_flip_is_exact_and_switches_are_independent():
    x = torch.rand(6, 3, 4, 8, 8) * 2 - 1
    params = sample_params(AugmentConfig(flip=True), 6, np.random.default_rng(0))
    out = apply(x.clone(), AugmentConfig(flip=True), params)  # apply may work in place
    for i, f in enumerate(params["flip"]):
        assert torch.equal(out[i], x[i].flip(-1) if f else x[i])
    # Turning colour on does not change which clips get flipped.
    both = sample_params(AugmentConfig(flip=True, color=True), 6, np.random.default_rng(0))
    assert np.array_equal(both["flip"], params["flip"])
    assert apply(x, AugmentConfig(), params) is x  # all off: untouched


def test_accelerator_path_matches_cpu_path(shapes):
    # For CUDA the workers ship uint8 + parameters and the device finishes the batch; exercise
    # that path on the CPU and check it gives exactly the CPU batches.
    cpu = _take(ClipLoader(shapes, 8, seed=8, augment=ALL), 3)
    loader = ClipLoader(shapes, 8, seed=8, augment=ALL)
    loader._data.finish = False
    assert _same(_take(loader, 3), cpu)


def test_crop_zooms_into_the_chosen_window():
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 1, 32).expand(1, 1, 2, 16, 32).clone()  # x-ramp
    p = {"flip": np.array([False]), "scale": np.array([0.5]), "shift_x": np.array([0.0]), "shift_y": np.array([0.0]),
         "angle": np.array([0.0]), "brightness": np.zeros(1), "contrast": np.ones(1), "saturation": np.ones(1)}
    centre = apply(ramp.clone(), AugmentConfig(crop=True), p)[0, 0, 0, 0]
    assert torch.allclose(centre[[0, -1]], torch.tensor([-0.5, 0.5]))  # the middle half, stretched
    p["shift_x"] = np.array([1.0])
    right = apply(ramp.clone(), AugmentConfig(crop=True), p)[0, 0, 0, 0]
    assert right[-1] == 1 and abs(right[0]) < 0.05  # the right half
