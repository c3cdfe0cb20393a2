"""Built-in procedural datasets: offline, deterministic from a seed, any resolution and length.

Each generator draws one video from a numpy ``Generator`` and returns uint8 ``[T, H, W, C]``
plus an integer label. Video ``i`` of a dataset depends only on ``(seed, i)``, so a dataset can
be generated in any order, in parallel, or extended without changing its first videos.

- ``moving_digits``: handwritten 8x8 digits from scikit-learn (``load_digits``), smoothly
  upscaled to ~48% of the canvas side, moving at constant velocity and bouncing off the walls of
  a black canvas, as in Moving MNIST. One digit per video (label = the digit), 1 channel.
- ``bouncing_shapes``: one anti-aliased coloured shape (circle, square, triangle, ring,
  cross) bouncing and slowly turning on a black canvas; label = shape type; 3 channels.
- ``photo_pans``: slow camera pans and zooms over the two photographs that ship with
  scikit-learn (``load_sample_images``), with sub-pixel, antialiased crops; label = photo.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from kinema.errors import KinemaError

DIGIT_CLASSES = [str(d) for d in range(10)]
SHAPE_CLASSES = ["circle", "square", "triangle", "ring", "cross"]
PHOTO_CLASSES = ["china", "flower"]


def _size(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if h < 8 or w < 8:
        raise KinemaError(f"built-in datasets need frames of at least 8x8 pixels, got {h}x{w}")
    return int(h), int(w)


def _bounce(start: np.ndarray, velocity: np.ndarray, span: np.ndarray, frames: int) -> np.ndarray:
    """Positions ``[T, 2]`` moving at constant velocity inside ``[0, span]`` with mirror bounces.

    Unfolding the reflections turns the path into a straight line on a circle of length
    ``2 * span``; folding it back (a triangle wave) gives the bounced position in closed form.
    """
    t = np.arange(frames, dtype=np.float64)[:, None]
    free = start[None] + velocity[None] * t
    period = 2 * np.maximum(span, 1e-9)
    m = np.mod(free, period)
    return np.where(m <= span, m, period - m)


def _place(canvas: np.ndarray, patch: np.ndarray, y: float, x: float) -> None:
    """Add ``patch [h, w]`` to ``canvas [H, W]`` at sub-pixel position ``(y, x)`` (top-left).

    Bilinear splatting: the patch is spread over the four integer offsets with weights from the
    fractional part, so motion stays smooth even at 1 pixel per frame.
    """
    iy, ix = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - iy, x - ix
    h, w = patch.shape
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if wy * wx == 0:
                continue
            y0, x0 = iy + dy, ix + dx
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + h, canvas.shape[0]), min(x0 + w, canvas.shape[1])
            if ye > ys and xe > xs:
                canvas[ys:ye, xs:xe] += wy * wx * patch[ys - y0:ye - y0, xs - x0:xe - x0]


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@functools.lru_cache(maxsize=64)
def _digit_patch(index: int, side: int) -> np.ndarray:
    """Digit ``index`` upscaled to ``[side, side]`` float in [0, 1] with smooth, fairly crisp edges."""
    img = Image.fromarray(_digits()[0][index], mode="F").resize((side, side), Image.Resampling.BICUBIC)
    x = np.asarray(img, np.float32)
    # Bicubic upscaling of an 8x8 bitmap is blurry; a soft threshold makes solid strokes with a
    # one-or-two pixel anti-aliased rim, which is what makes the digits easy to learn.
    return np.clip((x - 0.2) / 0.5, 0.0, 1.0)


def moving_digits(rng: np.random.Generator, frames: int, size, digits_per_video: int = 1):
    """One Moving-MNIST-style video: uint8 ``[T, H, W, 1]`` and label (the digit; -1 if several)."""
    h, w = _size(size)
    images, targets = _digits()
    side = max(4, int(round(0.48 * min(h, w))))
    span = np.array([h - side, w - side], np.float64)
    canvas = np.zeros((frames, h, w), np.float32)
    label = -1
    for _ in range(digits_per_video):
        idx = int(rng.integers(len(images)))
        label = int(targets[idx]) if digits_per_video == 1 else -1
        patch = _digit_patch(idx, side)
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.04, 0.08) * min(h, w)  # pixels per frame: ~1-2.5 px at 32x32
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])
        pos = _bounce(rng.uniform(0, 1, 2) * span, velocity, span, frames)
        for t in range(frames):
            _place(canvas[t], patch, pos[t, 0], pos[t, 1])
    out = np.rint(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    return out[..., None], label


def _shape_coverage(kind: int, yy: np.ndarray, xx: np.ndarray, radius: float, theta: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape centred at 0 (coordinates in pixels).

    Uses a signed distance (negative inside); ``clip(0.5 - d)`` is the area of a pixel covered
    by the edge, which gives smooth edges at any sub-pixel position.
    """
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy  # rotate the frame, not the shape
    if kind == 0:  # circle
        d = np.sqrt(u * u + v * v) - radius
    elif kind == 1:  # square (half side = 0.8 r so its area matches the circle's roughly)
        q = np.maximum(np.abs(u), np.abs(v)) - 0.8 * radius
        d = q
    elif kind == 2:  # equilateral triangle: max of three half-plane distances
        normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]
        d = np.max([nx * u + ny * v for nx, ny in normals], axis=0) - 0.5 * radius
    elif kind == 3:  # ring: annulus from 0.4 r to r
        d = np.abs(np.sqrt(u * u + v * v) - 0.7 * radius) - 0.3 * radius
    else:  # cross: union of two bars
        bar1 = np.maximum(np.abs(u) - radius, np.abs(v) - 0.35 * radius)
        bar2 = np.maximum(np.abs(v) - radius, np.abs(u) - 0.35 * radius)
        d = np.minimum(bar1, bar2)
    return np.clip(0.5 - d, 0.0, 1.0)


def bouncing_shapes(rng: np.random.Generator, frames: int, size):
    """One coloured shape bouncing on black: uint8 ``[T, H, W, 3]`` and label (shape index)."""
    h, w = _size(size)
    kind = int(rng.integers(len(SHAPE_CLASSES)))
    radius = rng.uniform(0.15, 0.22) * min(h, w)
    # A saturated colour: random hue, high value, so shapes stand out from the black background.
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs(np.mod(hue * 6 + np.array([0, 4, 2]), 6) - 3) - 1, 0, 1)
    color = (0.35 + 0.65 * rgb).astype(np.float32)
    span = np.array([h - 2 * radius, w - 2 * radius])
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0.04, 0.08) * min(h, w) * np.array([np.sin(angle), np.cos(angle)])
    pos = _bounce(rng.uniform(0, 1, 2) * span, velocity, span, frames) + radius
    theta0, spin = rng.uniform(0, 2 * np.pi), rng.uniform(-0.15, 0.15)  # radians per frame
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        cov = _shape_coverage(kind, yy - pos[t, 0], xx - pos[t, 1], radius, theta0 + spin * t)
        out[t] = np.rint(cov[..., None] * color * 255)
    return out, kind


@functools.lru_cache(maxsize=1)
def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


@functools.lru_cache(maxsize=8)
def _photo_image(index: int, scale: float) -> Image.Image:
    """Photo ``index`` pre-shrunk by ``scale`` (antialiased), so each frame's crop is near output size."""
    img = Image.fromarray(_photos()[index])
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    return img


def photo_pans(rng: np.random.Generator, frames: int, size):
    """A slow pan/zoom over one sample photograph: uint8 ``[T, H, W, 3]`` and label (photo index)."""
    h, w = _size(size)
    label = int(rng.integers(len(_photos())))
    ph, pw = _photos()[label].shape[:2]
    aspect = w / h
    # Crop height at the start (a fraction of the largest crop the photo allows), then a slow
    # zoom (up to 1% of the crop per frame) and pan (1-3% of the crop per frame, any direction).
    hmax = min(ph, pw / aspect)
    ch0 = rng.uniform(0.45, 0.75) * hmax
    ch1 = float(np.clip(ch0 * (1 + rng.uniform(-0.01, 0.01) * (frames - 1)), 0.3 * hmax, 0.9 * hmax))
    angle = rng.uniform(0, 2 * np.pi)
    travel = rng.uniform(0.01, 0.03) * ch0 * (frames - 1) * np.array([np.sin(angle), np.cos(angle)])
    u = rng.uniform(0, 1, 2)
    for shrink in (1.0, 0.5, 0.25, 0.1, 0.0):  # long videos: slow the pan until it fits the photo
        d = travel * shrink
        # Start centres keeping both the first and the last crop inside the photo (motion is
        # linear, so every crop in between is inside too).
        lo = [max(ch0 / 2, ch1 / 2 - d[0]), max(ch0 * aspect / 2, ch1 * aspect / 2 - d[1])]
        hi = [min(ph - ch0 / 2, ph - ch1 / 2 - d[0]), min(pw - ch0 * aspect / 2, pw - ch1 * aspect / 2 - d[1])]
        if lo[0] <= hi[0] and lo[1] <= hi[1]:
            break
    start = np.array([lo[0] + u[0] * (hi[0] - lo[0]), lo[1] + u[1] * (hi[1] - lo[1])])
    zoom = np.array([ch0, ch1])
    centres = [start, start + d]
    # Pre-shrink so that the smallest crop maps to about the output size; with the remaining
    # downscale below 2x PIL's box-aware resize stays antialiased and cheap.
    scale = min(1.0, 1.25 * h / zoom.min())
    scale = float(np.exp2(np.floor(np.log2(scale) * 4) / 4))  # quantised, so the cache hits
    img = _photo_image(label, scale)
    sx, sy = img.width / pw, img.height / ph  # exact per-axis factors after rounding the size
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        a = t / max(frames - 1, 1)  # constant-velocity pan/zoom from start to end
        ch = (1 - a) * zoom[0] + a * zoom[1]
        cy = (1 - a) * centres[0][0] + a * centres[1][0]
        cx = (1 - a) * centres[0][1] + a * centres[1][1]
        x0, x1 = (cx - ch * aspect / 2) * sx, (cx + ch * aspect / 2) * sx
        y0, y1 = (cy - ch / 2) * sy, (cy + ch / 2) * sy
        box = (max(0.0, x0), max(0.0, y0), min(float(img.width), x1), min(float(img.height), y1))
        out[t] = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC, box=box))
    return out, label


# name -> (generator(rng, frames, size) -> (uint8 [T, H, W, C], label), natural channels, class names)
BUILTINS: dict[str, Callable] = {
    "moving_digits": moving_digits,
    "bouncing_shapes": bouncing_shapes,
    "photo_pans": photo_pans,
}
CHANNELS = {"moving_digits": 1, "bouncing_shapes": 3, "photo_pans": 3}
CLASS_NAMES = {"moving_digits": DIGIT_CLASSES, "bouncing_shapes": SHAPE_CLASSES, "photo_pans": PHOTO_CLASSES}
DEFAULT_NUM_VIDEOS = {"moving_digits": 2000, "bouncing_shapes": 2000, "photo_pans": 500}


def preload(name: str) -> None:
    """Load the data a generator draws from (slow the first time: load_digits parses a CSV), e.g.
    once in a parent process so forked workers inherit it instead of each loading it again."""
    if name == "moving_digits":
        _digits()
    elif name == "photo_pans":
        _photos()


def builtin_name(spec: str) -> str | None:
    """``"builtin:NAME"`` or ``"NAME"`` -> NAME if it is a built-in dataset, else None."""
    name = spec[len("builtin:"):] if spec.startswith("builtin:") else spec
    if name in BUILTINS:
        return name
    if spec.startswith("builtin:"):
        raise KinemaError(f"{spec}: unknown built-in dataset; known: {', '.join(BUILTINS)}")
    return None


def _to_channels(video: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``[T, H, W, C]`` -> ``[T, H, W, channels]`` (gray copied to RGB, RGB to BT.601 luma)."""
    if video.shape[-1] == channels:
        return video
    if channels == 3:
        return np.repeat(video, 3, axis=-1)
    luma = video.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.rint(luma).clip(0, 255).astype(np.uint8)[..., None]


def make_builtin_video(name: str, index: int, frames: int, size, seed: int, channels: int | None = None,
                       **options) -> tuple[np.ndarray, int]:
    """Video ``index`` of built-in ``name``: uint8 ``[T, H, W, C]`` and its label; depends only on (seed, index)."""
    if name not in BUILTINS:
        raise KinemaError(f"{name}: unknown built-in dataset; known: {', '.join(BUILTINS)}")
    if frames < 1:
        raise KinemaError(f"{name}: frames must be at least 1, got {frames}")
    rng = np.random.default_rng([int(seed), int(index)])
    video, label = BUILTINS[name](rng, frames, size, **options)
    return _to_channels(video, channels or CHANNELS[name]), label


def generate_builtin(name: str, num_videos: int, frames: int, size, seed: int = 0, channels: int | None = None,
                     **options) -> Iterator[tuple[np.ndarray, int, list[str]]]:
    """Yield ``num_videos`` tuples ``(uint8 [T, H, W, C], label, class_names)`` of built-in ``name``.

    ``size`` is an int (square) or ``(H, W)``; ``channels`` defaults to the dataset's own (1 for
    digits, 3 otherwise). ``options`` go to the generator (e.g. ``digits_per_video=2``).
    """
    classes = CLASS_NAMES.get(name, [])
    if name == "moving_digits" and options.get("digits_per_video", 1) != 1:
        classes = []  # several digits per video have no single class
    for i in range(num_videos):
        video, label = make_builtin_video(name, i, frames, size, seed, channels, **options)
        yield video, label, classes
