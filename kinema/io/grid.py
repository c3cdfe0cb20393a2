"""Frame grids: several clips side by side, as a PNG contact sheet or as one tiled video.

Inputs are uint8 ``[B, T, H, W, C]`` (or a list of ``[T, H, W, C]`` of equal shape); a float model
tensor ``[B, C, T, H, W]`` in [-1, 1] is converted with ``to_uint8`` first, so sampling code can pass
generator output straight in.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from kinema.errors import KinemaError
from kinema.fsutil import atomic_path, refuse_existing
from kinema.io.convert import to_uint8
from kinema.io.write import write_video


def _as_batch(videos) -> np.ndarray:
    """Anything grid-like -> uint8 ``[B, T, H, W, C]``."""
    if hasattr(videos, "detach"):  # torch tensor from a model: [B, C, T, H, W] floats
        videos = to_uint8(videos)
    if isinstance(videos, (list, tuple)):
        shapes = {np.shape(v) for v in videos}
        if len(shapes) != 1:
            raise KinemaError(f"grid videos must all have one shape, got {sorted(shapes)}")
        videos = np.stack(videos)
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5:
        raise KinemaError(f"grid expects uint8 [B, T, H, W, C], got {videos.dtype} {tuple(videos.shape)}")
    return videos


def tile(videos, cols: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Arrange ``B`` clips ``[B, T, H, W, C]`` in a grid -> one clip ``[T, H', W', C]``.

    ``cols`` defaults to ceil(sqrt(B)) (square-ish); rows fill left to right, top to bottom; empty
    cells and the ``pad``-pixel borders between and around tiles are ``pad_value``.
    """
    videos = _as_batch(videos)
    b, t, h, w, c = videos.shape
    cols = max(1, min(cols or math.ceil(math.sqrt(b)), b))
    rows = math.ceil(b / cols)
    out = np.full((t, pad + rows * (h + pad), pad + cols * (w + pad), c), pad_value, np.uint8)
    for i in range(b):
        y, x = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        out[:, y:y + h, x:x + w] = videos[i]
    return out


def write_grid_png(path: str | os.PathLike, videos, frame: int | None = None, cols: int | None = None,
                   max_frames: int | None = 16, pad: int = 2, pad_value: int = 0, overwrite: bool = False) -> Path:
    """Write a PNG contact sheet of ``videos [B, T, H, W, C]`` atomically.

    Default: one row per video, one column per frame (the first ``max_frames`` frames, evenly
    spaced if there are more). With ``frame=k`` only frame k of each video is shown, in a grid of
    ``cols`` columns (like an image-model sample grid).
    """
    videos = _as_batch(videos)
    b, t = videos.shape[:2]
    if frame is not None:
        if not -t <= frame < t:
            raise KinemaError(f"{path}: frame {frame} out of range for {t}-frame videos")
        frame %= t
        sheet = tile(videos[:, frame:frame + 1], cols=cols, pad=pad, pad_value=pad_value)[0]
    else:
        keep = np.arange(t) if not max_frames or t <= max_frames else np.linspace(0, t - 1, max_frames).round().astype(int)
        # [B, T', H, W, C] -> B*T' single-frame tiles, T' per row.
        cells = videos[:, keep].reshape(b * len(keep), 1, *videos.shape[2:])
        sheet = tile(cells, cols=len(keep), pad=pad, pad_value=pad_value)[0]
    path = Path(path)
    refuse_existing(path, overwrite)
    img = Image.fromarray(sheet[..., 0] if sheet.shape[-1] == 1 else sheet)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def write_grid_video(path: str | os.PathLike, videos, fps, cols: int | None = None, pad: int = 2,
                     pad_value: int = 0, **kwargs) -> Path | None:
    """Tile ``videos [B, T, H, W, C]`` (``tile``) and encode the result with ``write_video``.

    Extra keyword arguments (codec, crf, preset, odd, overwrite, ...) go to ``write_video``.
    """
    return write_video(path, tile(videos, cols=cols, pad=pad, pad_value=pad_value), fps, **kwargs)
