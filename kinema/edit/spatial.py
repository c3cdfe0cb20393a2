"""Space operations on decoded videos: resize with good filters, crop, pad, fit-inside.

Frames are uint8 ``[T, H, W, C]`` (C in {1, 3}) in and out. Resizing goes through Pillow one
frame at a time, whose filters are proper antialiased ones (Lanczos-3, box = area average), so
downscaling does not alias and memory stays one frame above input + output.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kinema.edit.ops import check_frames
from kinema.errors import KinemaError

FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,       # mean of the covered source pixels: best for shrinking
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def _frame_image(frame: np.ndarray) -> Image.Image:
    # [H, W, 1] -> mode "L", [H, W, 3] -> mode "RGB".
    return Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)


def _image_frame(img: Image.Image, channels: int) -> np.ndarray:
    a = np.asarray(img)
    return a[..., None] if channels == 1 else a


def target_size(height: int, width: int, new_width: int | None, new_height: int | None,
                scale: float | None = None) -> tuple[int, int]:
    """Resolve ``(new_h, new_w)``: give width and/or height (a missing or -1 side keeps the
    aspect ratio), or a ``scale`` factor. Raises for zero or negative sizes."""
    if scale is not None:
        if not scale > 0:
            raise KinemaError(f"resize: scale must be positive, got {scale}")
        new_w, new_h = round(width * scale), round(height * scale)
    else:
        new_w = None if new_width in (None, -1) else int(new_width)
        new_h = None if new_height in (None, -1) else int(new_height)
        if new_w is None and new_h is None:
            raise KinemaError("resize: give a width, a height or a scale")
        if new_w is None:
            new_w = round(width * new_h / height)
        if new_h is None:
            new_h = round(height * new_w / width)
    if new_w < 1 or new_h < 1:
        raise KinemaError(f"resize: target size {new_w}x{new_h} is empty")
    return new_h, new_w


def resize(frames: np.ndarray, width: int | None = None, height: int | None = None,
           scale: float | None = None, filter: str = "lanczos") -> np.ndarray:
    """Resize every frame to ``width x height`` (see :func:`target_size`) with ``filter``
    (lanczos, area, bicubic, bilinear, nearest). Returns uint8 ``[T, new_h, new_w, C]``."""
    check_frames(frames)
    if filter not in FILTERS:
        raise KinemaError(f"resize: unknown filter {filter!r} (choose {', '.join(FILTERS)})")
    t, h, w, c = frames.shape
    new_h, new_w = target_size(h, w, width, height, scale)
    if (new_h, new_w) == (h, w):
        return frames.copy()
    out = np.empty((t, new_h, new_w, c), dtype=np.uint8)
    for i in range(t):
        out[i] = _image_frame(_frame_image(frames[i]).resize((new_w, new_h), FILTERS[filter]), c)
    return out


def crop(frames: np.ndarray, width: int, height: int, x: int | None = None,
         y: int | None = None) -> np.ndarray:
    """Cut a ``width x height`` window whose top-left corner is ``(x, y)`` (centred when omitted)."""
    check_frames(frames)
    h, w = frames.shape[1:3]
    if width < 1 or height < 1:
        raise KinemaError(f"crop: size {width}x{height} is empty")
    if width > w or height > h:
        raise KinemaError(f"crop: {width}x{height} is larger than the {w}x{h} frame")
    x = (w - width) // 2 if x is None else int(x)
    y = (h - height) // 2 if y is None else int(y)
    if x < 0 or y < 0 or x + width > w or y + height > h:
        raise KinemaError(f"crop: window {width}x{height} at ({x}, {y}) leaves the {w}x{h} frame")
    return frames[:, y:y + height, x:x + width].copy()


def pad(frames: np.ndarray, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0,
        color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Add borders of ``color`` (pixels on each side, none negative)."""
    check_frames(frames)
    if min(left, top, right, bottom) < 0:
        raise KinemaError(f"pad: negative border ({left}, {top}, {right}, {bottom})")
    t, h, w, c = frames.shape
    out = np.empty((t, h + top + bottom, w + left + right, c), dtype=np.uint8)
    out[...] = np.asarray(color, dtype=np.uint8)[:c]
    out[:, top:top + h, left:left + w] = frames
    return out


def pad_to(frames: np.ndarray, width: int, height: int, color=(0, 0, 0)) -> np.ndarray:
    """Centre the frames on a ``width x height`` canvas (which must not be smaller)."""
    h, w = frames.shape[1:3]
    if width < w or height < h:
        raise KinemaError(f"pad: target {width}x{height} is smaller than the {w}x{h} frame")
    left, top = (width - w) // 2, (height - h) // 2
    return pad(frames, left, top, width - w - left, height - h - top, color)


def fit(frames: np.ndarray, width: int, height: int, filter: str = "lanczos") -> np.ndarray:
    """Scale to fit inside ``width x height`` keeping the aspect ratio, then pad with black bars."""
    check_frames(frames)
    h, w = frames.shape[1:3]
    s = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * s))), max(1, min(height, round(h * s)))
    return pad_to(resize(frames, new_w, new_h, filter=filter), width, height)
