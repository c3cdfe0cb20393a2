"""Motion-compensated frame interpolation: in-between frames that move instead of dissolving.

For a new frame at time ``t`` between frames ``a`` (time 0) and ``b`` (time 1), the motion is
estimated directly on the new frame's pixel grid (bilateral block matching): for every pixel
``p`` find the displacement ``v`` that makes ``a(p - t v)`` and ``b(p + (1 - t) v)`` look alike.
Looking from the middle outwards gives every output pixel exactly one vector, so there are no
holes or overlaps to fill, as there are when a forward flow is splatted.

* **Several scales.** A 2x2-average pyramid down to about 8 pixels per side: a full search of
  +-``radius`` pixels on the coarsest level (which covers ``radius * 2**levels`` pixels at full
  size), then +-1 pixel around the doubled vector on each finer level, and a last half-pixel
  step. Matching cost: the absolute difference summed over channels, averaged over a
  ``window`` x ``window`` block around each pixel, plus a small charge per pixel of motion so
  flat regions, where every vector matches, keep still. A 3x3 median of the vectors after each
  level removes isolated outliers.
* **Warp and blend by confidence.** Both neighbours are sampled (bilinearly) along the vector
  field and mixed with weights ``1 - t`` and ``t``; that result and the plain cross-fade are then
  mixed per pixel by how well each explains the pair (``exp(-error / softness)``, errors
  averaged over the block), so where motion estimation fails (occlusions, a scene cut, noise)
  the output falls back to the blend rather than inventing structure.

Frames are uint8 ``[T, H, W, C]`` in and out, as everywhere in :mod:`kinema.edit`.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, uniform_filter

from kinema.edit.ops import check_frames
from kinema.errors import KinemaError

WINDOW = 7          # matching block side (pixels, every level)
RADIUS = 3          # full search radius on the coarsest level (pixels of that level)
MOTION_COST = 0.5   # grey levels charged per pixel of motion (of the level searched)
SOFTNESS = 6.0      # grey levels: confidence = exp(-block error / SOFTNESS)
MIN_SIDE = 8        # the coarsest level keeps at least this many pixels per side


def _levels(h: int, w: int, max_levels: int = 5) -> int:
    n = 0
    while n < max_levels and min(h, w) >> (n + 1) >= MIN_SIDE:
        n += 1
    return n


def _down(img: np.ndarray) -> np.ndarray:
    """2x2 average ``[H, W, C] -> [ceil(H/2), ceil(W/2), C]`` (odd sides repeat their edge)."""
    h, w = img.shape[:2]
    img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return 0.25 * (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2])


def _up_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A vector field on the next finer level: each vector doubled and repeated 2x2, cropped."""
    up = 2.0 * np.repeat(np.repeat(flow, 2, axis=0), 2, axis=1)
    return up[: shape[0], : shape[1]]


def sample(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img [H, W, C]`` at float positions ``y, x [H', W']`` (edges clamped)."""
    h, w = img.shape[:2]
    y = np.clip(y, 0, h - 1)
    x = np.clip(x, 0, w - 1)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2) if h > 1 else np.zeros(y.shape, np.intp)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 2) if w > 1 else np.zeros(x.shape, np.intp)
    fy = (y - y0)[..., None].astype(np.float32)
    fx = (x - x0)[..., None].astype(np.float32)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _block_error(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Mean absolute difference per channel, averaged over a ``window`` block: ``[H, W]``."""
    return uniform_filter(np.abs(a - b).mean(-1), size=window, mode="nearest")


def _warp_pair(a, b, flow, t, grid):
    yy, xx = grid
    wa = sample(a, yy - t * flow[..., 0], xx - t * flow[..., 1])
    wb = sample(b, yy + (1 - t) * flow[..., 0], xx + (1 - t) * flow[..., 1])
    return wa, wb


def _search(a, b, flow, t, offsets, window, grid):
    """Per pixel, the best of ``flow + d`` over the offsets ``d`` (cost: block error + motion charge)."""
    best_cost = np.full(flow.shape[:2], np.inf, np.float32)
    best = flow.copy()
    for dy, dx in offsets:
        cand = flow + np.array([dy, dx], np.float32)
        wa, wb = _warp_pair(a, b, cand, t, grid)
        cost = _block_error(wa, wb, window) + MOTION_COST * np.hypot(cand[..., 0], cand[..., 1])
        better = cost < best_cost
        best_cost = np.where(better, cost, best_cost)
        best[better] = cand[better]
    return best


def estimate_motion(a: np.ndarray, b: np.ndarray, t: float = 0.5, radius: int = RADIUS,
                    window: int = WINDOW) -> np.ndarray:
    """Vector field ``[H, W, 2]`` (dy, dx in pixels from ``a`` to ``b``) on the grid of the frame
    at time ``t``: pixel ``p`` of that frame shows ``a(p - t v)`` and ``b(p + (1 - t) v)``.
    ``t = 1`` is plain backward matching on ``b``'s grid (where in ``a`` each pixel of ``b`` was).

    ``a, b``: ``[H, W, C]`` (any numeric dtype, same shape).
    """
    if a.shape != b.shape or a.ndim != 3:
        raise KinemaError(f"estimate_motion: frames must be two [H, W, C] arrays of one shape, got {a.shape}, {b.shape}")
    if not 0 < t <= 1:
        raise KinemaError(f"estimate_motion: t must be in (0, 1], got {t}")
    pa, pb = [a.astype(np.float32)], [b.astype(np.float32)]
    for _ in range(_levels(*a.shape[:2])):
        pa.append(_down(pa[-1]))
        pb.append(_down(pb[-1]))
    flow = None
    full = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    step = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for la, lb in zip(reversed(pa), reversed(pb)):
        h, w = la.shape[:2]
        grid = np.mgrid[0:h, 0:w].astype(np.float32)
        if flow is None:
            flow = _search(la, lb, np.zeros((h, w, 2), np.float32), t, full, window, grid)
        else:
            flow = _search(la, lb, _up_flow(flow, (h, w)), t, step, window, grid)
        flow = np.stack([median_filter(flow[..., k], size=3, mode="nearest") for k in (0, 1)], -1)
    half = [(dy, dx) for dy in (-0.5, 0, 0.5) for dx in (-0.5, 0, 0.5)]
    grid = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
    return _search(pa[0], pb[0], flow, t, half, window, grid)


def motion_frame(a: np.ndarray, b: np.ndarray, t: float = 0.5, flow: np.ndarray | None = None,
                 window: int = WINDOW) -> np.ndarray:
    """The frame at time ``t`` between ``a`` and ``b`` (``[H, W, C]`` uint8 in and out)."""
    if flow is None:
        flow = estimate_motion(a, b, t, window=window)
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    grid = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
    wa, wb = _warp_pair(fa, fb, flow, t, grid)
    moved = (1 - t) * wa + t * wb
    blend = (1 - t) * fa + t * fb
    # Confidence of each candidate: how well its two sources agree around the pixel.
    e_moved, e_blend = _block_error(wa, wb, window), _block_error(fa, fb, window)
    # exp(-e/s) for both, shifted by the smaller error so neither weight underflows to 0.
    low = np.minimum(e_moved, e_blend)
    c_moved = np.exp(-(e_moved - low) / SOFTNESS)[..., None]
    c_blend = np.exp(-(e_blend - low) / SOFTNESS)[..., None]
    out = (c_moved * moved + c_blend * blend) / (c_moved + c_blend)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def interpolate_motion(frames: np.ndarray, factor: int) -> np.ndarray:
    """Raise the frame rate ``factor`` times with motion-compensated in-between frames:
    ``(T - 1) * factor + 1`` frames, the originals kept exactly at every ``factor``-th place."""
    check_frames(frames)
    if int(factor) != factor or factor < 1:
        raise KinemaError(f"interpolate: factor must be a whole number >= 1, got {factor}")
    factor = int(factor)
    out = [frames[0]]
    for a, b in zip(frames[:-1], frames[1:]):
        for k in range(1, factor):
            out.append(motion_frame(a, b, k / factor))
        out.append(b)
    return np.stack(out)
