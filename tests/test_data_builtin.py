"""Built-in procedural datasets: deterministic, any size and length, meaningful labels."""

import numpy as np
import pytest
from PIL import Image

from kinema.data import BUILTINS, generate_builtin, prepare
from kinema.data.builtin import CLASS_NAMES, SHAPE_CLASSES
from kinema.errors import KinemaError


def _all(name, n, frames, size, seed, **kw):
    return list(generate_builtin(name, n, frames, size, seed, **kw))


@pytest.mark.parametrize("name", list(BUILTINS))
def test_same_seed_same_bytes_other_seed_differs(name):
    a = _all(name, 3, 6, 24, seed=5)
    b = _all(name, 3, 6, 24, seed=5)
    c = _all(name, 3, 6, 24, seed=6)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    # Video i depends only on (seed, i): a longer dataset starts with the same videos.
    longer = _all(name, 5, 6, 24, seed=5)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, longer))


@pytest.mark.parametrize("name", list(BUILTINS))
@pytest.mark.parametrize("frames,size", [(1, 16), (5, (24, 40)), (12, (48, 20))])
def test_shapes_any_size_and_length(name, frames, size):
    (video, label, classes), = _all(name, 1, frames, size, seed=0)
    h, w = (size, size) if isinstance(size, int) else size
    channels = 1 if name == "moving_digits" else 3
    assert video.dtype == np.uint8 and video.shape == (frames, h, w, channels)
    assert video.max() > 100  # something visible was drawn
    assert classes == CLASS_NAMES[name] and 0 <= label < len(classes)
    (gray, _, _), = _all(name, 1, frames, size, seed=0, channels=1 if channels == 3 else 3)
    assert gray.shape[-1] == (1 if channels == 3 else 3)


def _norm8(img):
    """Crop to the bright pixels' bounding box and shrink to 8x6: a position/size-free digit signature."""
    ys, xs = np.nonzero(img > 60)
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    v = np.asarray(Image.fromarray(crop, mode="F").resize((6, 8), Image.Resampling.BILINEAR)).ravel()
    v = v - v.mean()
    return v / np.linalg.norm(v)


def test_digit_labels_match_the_drawn_digit():
    from sklearn.datasets import load_digits

    d = load_digits()
    big = [np.asarray(Image.fromarray(im.astype(np.float32) * 16, mode="F").resize((32, 32), Image.Resampling.BICUBIC))
           for im in d.images]
    templates = np.stack([_norm8(b) for b in big])
    videos = _all("moving_digits", 40, 3, 64, seed=11)
    hits = sum(d.target[np.argmax(templates @ _norm8(v[0, ..., 0]))] == label for v, label, _ in videos)
    assert hits >= 36  # nearest-template classification of frame 0 agrees with the label
    assert len({label for _, label, _ in videos}) >= 8


def test_digits_move_smoothly_and_stay_on_canvas():
    (video, _, _), = _all("moving_digits", 1, 24, 32, seed=2)
    mass = video[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:32, 0:32]
    cy = (mass * ys).sum((1, 2)) / mass.sum((1, 2))
    cx = (mass * xs).sum((1, 2)) / mass.sum((1, 2))
    step = np.hypot(np.diff(cy), np.diff(cx))
    assert step.max() < 4 and step.mean() > 0.5  # moves every frame, never jumps
    assert abs(mass.sum((1, 2)) / mass[0].sum() - 1).max() < 0.05  # never leaves the canvas
    two, label, classes = _all("moving_digits", 1, 4, 32, seed=2, digits_per_video=2)[0]
    assert label == -1 and classes == []


def test_shape_labels_match_the_drawn_shape():
    # Compactness = area / (max distance from the centroid)^2 separates the filled shapes
    # (circle pi, square 2, triangle ~1.3); a ring has a dark centre; a cross fills its centre.
    seen = set()
    for video, label, _ in _all("bouncing_shapes", 30, 1, 64, seed=3):
        cov = video[0].max(-1).astype(np.float64) / video[0].max()
        ys, xs = np.mgrid[0:64, 0:64] + 0.5
        inside = cov > 0.5
        cy, cx = ys[inside].mean(), xs[inside].mean()
        compact = cov.sum() / (np.hypot(ys - cy, xs - cx)[inside].max() ** 2)
        kind = SHAPE_CLASSES[label]
        seen.add(kind)
        centre = cov[int(cy), int(cx)]
        expect = {"circle": (2.7, 3.5), "square": (1.6, 2.4), "triangle": (1.0, 1.6), "cross": (1.6, 2.6),
                  "ring": (1.5, 3.0)}[kind]
        assert expect[0] < compact < expect[1], (kind, compact)
        assert (centre < 0.2) if kind == "ring" else (centre > 0.8), kind
    assert seen == set(SHAPE_CLASSES)


def test_photo_pans_move_slowly():
    videos = _all("photo_pans", 4, 8, 32, seed=0)
    for video, label, classes in videos:
        diff = np.abs(np.diff(video.astype(np.int16), axis=0)).mean()
        assert 0.2 < diff < 30 and classes == ["china", "flower"]  # moving, but a slow pan, not a cut
    assert {label for _, label, _ in _all("photo_pans", 12, 1, 16, seed=0)} == {0, 1}


def test_prepare_builtin_archive(tmp_path):
    arch = prepare("builtin:moving_digits", tmp_path / "d", resolution=24, frames=6, num_videos=20, seed=4, workers=2)
    same = prepare("moving_digits", tmp_path / "e", resolution=24, frames=6, num_videos=20, seed=4, workers=1)
    assert arch.content_hash == same.content_hash and arch.channels == 1 and arch.num_clips == 20
    expected = _all("moving_digits", 20, 6, 24, seed=4)
    assert all(np.array_equal(arch.clip(i), v) for i, (v, _, _) in enumerate(expected))
    assert arch.labels.tolist() == [label for _, label, _ in expected]
    with pytest.raises(KinemaError, match="unknown built-in"):
        list(generate_builtin("nope", 1, 1, 16))
