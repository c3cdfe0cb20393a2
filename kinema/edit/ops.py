"""Time operations on decoded videos: trim, speed, fps conversion, reverse, loop, concat, fades.

Every function takes uint8 frames ``[T, H, W, C]`` (C in {1, 3}) and returns a new uint8 array of
the same layout; functions that need the clock take ``fps`` explicitly. Nothing here touches
files: the CLI (``kinema edit``) decodes with :mod:`kinema.io`, calls these, and encodes.

Resampling in time follows one rule everywhere (sample-and-hold): output frame ``j`` shows the
source frame on screen at its time, i.e. source index ``floor(j * step)``. So speed x2 keeps frames
0, 2, 4, ... exactly, and 30 -> 15 fps keeps every other frame; ``method="blend"`` instead mixes
the two neighbouring source frames linearly (the frame-interpolation used to raise frame rates).
"""

from __future__ import annotations

import math

import numpy as np

from kinema.errors import KinemaError

# Float slack for times that are exact in decimal but not in binary (0.1 * 30 = 3.0000000000000004).
_EPS = 1e-6


def check_frames(frames: np.ndarray, what: str = "video") -> np.ndarray:
    """Return ``frames`` if it is uint8 ``[T, H, W, C]`` with T, H, W >= 1 and C in {1, 3}; else raise."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        shape = getattr(frames, "shape", None)
        raise KinemaError(f"{what}: expected uint8 frames [T, H, W, C], got {type(frames).__name__} {shape}")
    t, h, w, c = frames.shape
    if t < 1 or h < 1 or w < 1:
        raise KinemaError(f"{what}: empty video (shape {frames.shape})")
    if c not in (1, 3):
        raise KinemaError(f"{what}: expected 1 or 3 channels, got {c}")
    return frames


def check_fps(fps: float, what: str = "fps") -> float:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise KinemaError(f"{what}: must be a positive number, got {fps!r}")
    return float(fps)


# ---------------------------------------------------------------------------------------------
# Cutting.

def trim(frames: np.ndarray, fps: float, start: float = 0, end: float | None = None,
         unit: str = "s") -> np.ndarray:
    """Keep the frames in ``[start, end)``; ``unit`` is ``"s"`` (seconds) or ``"frame"`` (indices).

    By time, frame ``i`` starts at ``i / fps`` and is kept when ``start <= i / fps < end``.
    ``end=None`` means to the end; an ``end`` past the end is clipped. Raises for a negative
    start, ``end <= start``, a start past the end, or an empty result.
    """
    check_frames(frames)
    fps = check_fps(fps)
    n = len(frames)
    if unit not in ("s", "frame"):
        raise KinemaError(f"trim: unit must be 's' or 'frame', got {unit!r}")
    if start is None:
        start = 0
    if start < 0 or (end is not None and end < 0):
        raise KinemaError(f"trim: negative time (start={start}, end={end})")
    if end is not None and end <= start:
        raise KinemaError(f"trim: end ({end}) must be after start ({start})")
    if unit == "s":
        i0 = math.ceil(start * fps - _EPS)
        i1 = n if end is None else math.ceil(end * fps - _EPS)
    else:
        if int(start) != start or (end is not None and int(end) != end):
            raise KinemaError(f"trim: frame indices must be whole numbers (start={start}, end={end})")
        i0, i1 = int(start), (n if end is None else int(end))
    if i0 >= n:
        duration = f"{n / fps:.3f} s" if unit == "s" else f"{n} frames"
        raise KinemaError(f"trim: start ({start}{' s' if unit == 's' else ''}) is past the end ({duration})")
    out = frames[i0:min(i1, n)]
    if len(out) == 0:
        raise KinemaError(f"trim: no frame falls in [{start}, {end})")
    return out.copy()


def reverse(frames: np.ndarray) -> np.ndarray:
    """Frames in reverse order."""
    return check_frames(frames)[::-1].copy()


def loop(frames: np.ndarray, times: int = 2, pingpong: bool = False) -> np.ndarray:
    """Repeat the clip ``times`` times. ``pingpong`` plays forward then backward without
    repeating the turning frames (0 1 2 3 2 1 | 0 1 2 3 2 1 ...), so the result loops seamlessly."""
    check_frames(frames)
    if int(times) != times or times < 1:
        raise KinemaError(f"loop: times must be a whole number >= 1, got {times}")
    unit = frames
    if pingpong and len(frames) > 2:
        unit = np.concatenate([frames, frames[-2:0:-1]])
    return np.concatenate([unit] * int(times))


# ---------------------------------------------------------------------------------------------
# Time resampling: speed change, fps conversion, frame interpolation.

def resample_positions(num_frames: int, step: float) -> np.ndarray:
    """Source positions ``j * step`` (float) for every output frame that falls inside the clip."""
    count = max(1, math.ceil(num_frames / step - _EPS))
    return np.arange(count, dtype=np.float64) * step


def sample_at(frames: np.ndarray, positions: np.ndarray, method: str = "nearest") -> np.ndarray:
    """Frames at fractional source ``positions``: ``nearest`` = sample-and-hold (floor),
    ``blend`` = linear mix of the two neighbouring frames (``[T', H, W, C]`` uint8 either way)."""
    n = len(frames)
    if method == "nearest":
        idx = np.clip(np.floor(positions + _EPS).astype(np.int64), 0, n - 1)
        return frames[idx]
    if method != "blend":
        raise KinemaError(f"unknown time-resampling method {method!r} (choose nearest or blend)")
    out = np.empty((len(positions),) + frames.shape[1:], dtype=np.uint8)
    for j, p in enumerate(positions):
        i0 = min(int(math.floor(p + _EPS)), n - 1)
        w = min(max(p - i0, 0.0), 1.0)
        if w < _EPS or i0 + 1 >= n:
            out[j] = frames[i0]
        else:
            mix = frames[i0].astype(np.float32) * (1 - w) + frames[i0 + 1].astype(np.float32) * w
            out[j] = np.clip(np.rint(mix), 0, 255).astype(np.uint8)
    return out


def speed(frames: np.ndarray, factor: float, method: str = "nearest") -> np.ndarray:
    """Play ``factor`` times faster at the same fps: x2 keeps frames 0, 2, 4, ...; x0.5 shows each
    frame twice (``nearest``) or inserts mixed in-between frames (``blend``)."""
    check_frames(frames)
    if not (math.isfinite(factor) and factor > 0):
        raise KinemaError(f"speed: factor must be positive, got {factor}")
    return sample_at(frames, resample_positions(len(frames), factor), method)


def change_fps(frames: np.ndarray, fps: float, new_fps: float, method: str = "nearest") -> np.ndarray:
    """Same duration and speed at a new frame rate. Lowering drops frames; raising repeats them
    (``nearest``) or interpolates them by blending neighbours (``blend``)."""
    check_frames(frames)
    fps, new_fps = check_fps(fps, "fps"), check_fps(new_fps, "new fps")
    return sample_at(frames, resample_positions(len(frames), fps / new_fps), method)


def interpolate_frames(frames: np.ndarray, factor: int, method: str = "blend") -> np.ndarray:
    """Raise the frame rate ``factor`` times: between frames i and i+1 insert ``factor - 1``
    in-between frames, and stop at the last frame (``(T - 1) * factor + 1`` frames).

    ``method="blend"`` mixes the two neighbours (a cross-dissolve: never invents structure, but
    anything that moves shows twice, faded); ``"motion"`` estimates the motion between them and
    warps both to the in-between time (:mod:`kinema.edit.motion`).
    """
    check_frames(frames)
    if int(factor) != factor or factor < 1:
        raise KinemaError(f"interpolate: factor must be a whole number >= 1, got {factor}")
    if method == "motion":
        from kinema.edit.motion import interpolate_motion  # motion imports this module
        return interpolate_motion(frames, int(factor))
    if method != "blend":
        raise KinemaError(f"interpolate: unknown method {method!r} (choose blend or motion)")
    positions = np.arange((len(frames) - 1) * int(factor) + 1, dtype=np.float64) / factor
    return sample_at(frames, positions, "blend")


# ---------------------------------------------------------------------------------------------
# Joining and fading.

def _as_rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def concat(videos: list[tuple[np.ndarray, float]], mismatch: str = "refuse",
           names: list[str] | None = None) -> tuple[np.ndarray, float]:
    """Join ``[(frames, fps), ...]`` end to end; returns ``(frames, fps)`` at the first video's fps.

    Videos that differ in size or fps from the first are refused (``mismatch="refuse"``, a
    one-line error naming the video), or brought to the first one's size and rate
    (``mismatch="fit"``: scaled to fit inside with the aspect kept and black bars; fps resampled
    by sample-and-hold so durations are kept).
    """
    from kinema.edit.spatial import fit  # spatial imports nothing from here; keep the graph simple

    if not videos:
        raise KinemaError("concat: no input videos")
    if mismatch not in ("refuse", "fit"):
        raise KinemaError(f"concat: mismatch must be 'refuse' or 'fit', got {mismatch!r}")
    names = names or [f"video {i}" for i in range(len(videos))]
    first, fps0 = videos[0]
    check_frames(first, names[0])
    fps0 = check_fps(fps0, f"{names[0]}: fps")
    h0, w0 = first.shape[1:3]
    mixed_channels = len({v.shape[-1] for v, _ in videos}) > 1
    parts = []
    for (frames, fps), name in zip(videos, names):
        check_frames(frames, name)
        fps = check_fps(fps, f"{name}: fps")
        if frames.shape[1:3] != (h0, w0) or abs(fps - fps0) > 1e-3:
            if mismatch == "refuse":
                raise KinemaError(
                    f"concat: {name} is {frames.shape[2]}x{frames.shape[1]} at {fps:g} fps but "
                    f"{names[0]} is {w0}x{h0} at {fps0:g} fps (use --fit to resize/resample)")
            if abs(fps - fps0) > 1e-3:
                frames = change_fps(frames, fps, fps0)
            if frames.shape[1:3] != (h0, w0):
                frames = fit(frames, w0, h0)
        parts.append(_as_rgb(frames) if mixed_channels else frames)
    return np.concatenate(parts), fps0


def crossfade(a: np.ndarray, b: np.ndarray, overlap: int) -> np.ndarray:
    """Join ``a`` then ``b`` with the last ``overlap`` frames of ``a`` dissolving into the first
    ``overlap`` frames of ``b``; length ``len(a) + len(b) - overlap``. Sizes must match."""
    check_frames(a, "first video")
    check_frames(b, "second video")
    if a.shape[1:] != b.shape[1:]:
        raise KinemaError(f"crossfade: frame shapes differ ({a.shape[1:]} vs {b.shape[1:]}); resize first")
    if int(overlap) != overlap or overlap < 0 or overlap > min(len(a), len(b)):
        raise KinemaError(f"crossfade: overlap must be 0..{min(len(a), len(b))} frames, got {overlap}")
    overlap = int(overlap)
    if overlap == 0:
        return np.concatenate([a, b])
    # Weight of b rises over the overlap without reaching 0 or 1, so no frame is a plain copy:
    # w_k = (k + 1) / (overlap + 1), k = 0 .. overlap-1.
    w = (np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1))[:, None, None, None]
    mix = a[-overlap:].astype(np.float32) * (1 - w) + b[:overlap].astype(np.float32) * w
    mid = np.clip(np.rint(mix), 0, 255).astype(np.uint8)
    return np.concatenate([a[:-overlap], mid, b[overlap:]])


def fade(frames: np.ndarray, fade_in: int = 0, fade_out: int = 0,
         color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Fade from ``color`` over the first ``fade_in`` frames and to it over the last ``fade_out``.

    The first frame of a fade-in and the last frame of a fade-out are exactly ``color`` (a fade
    to black reaches black); in between the weight is linear.
    """
    check_frames(frames)
    n = len(frames)
    for what, k in (("fade in", fade_in), ("fade out", fade_out)):
        if int(k) != k or k < 0 or k > n:
            raise KinemaError(f"{what}: must be 0..{n} frames, got {k}")
    out = frames.astype(np.float32)
    col = np.asarray(color, dtype=np.float32)[: frames.shape[-1]]
    gain = np.ones(n, dtype=np.float32)
    if fade_in:
        gain[: int(fade_in)] = np.minimum(gain[: int(fade_in)], np.linspace(0, 1, int(fade_in) + 1)[:-1])
    if fade_out:
        ramp = np.linspace(1, 0, int(fade_out) + 1)[1:]
        gain[n - int(fade_out):] = np.minimum(gain[n - int(fade_out):], ramp)
    g = gain[:, None, None, None]
    out = out * g + col * (1 - g)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def seconds_to_frames(seconds: float, fps: float, what: str = "duration") -> int:
    """A duration in seconds as a whole number of frames (rounded), refusing negatives."""
    if seconds < 0:
        raise KinemaError(f"{what}: negative time {seconds}")
    return int(round(seconds * check_fps(fps)))
