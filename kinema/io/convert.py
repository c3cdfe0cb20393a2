"""The one place where model tensors and video frames meet.

Model side: float ``[B, C, T, H, W]`` in ``[-1, 1]`` (any float dtype, any device).
Video side: uint8 numpy ``[B, T, H, W, C]`` (a batch) or ``[T, H, W, C]`` (one video).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[B, C, T, H, W]`` (or ``[C, T, H, W]``) float in [-1, 1] -> uint8 ``[B, T, H, W, C]`` (or ``[T, H, W, C]``).

    Values are clamped, then mapped by ``round((x + 1) * 127.5)`` so that -1 -> 0 and 1 -> 255;
    ``from_uint8(to_uint8(x))`` is within half a grey level of ``x``.
    """
    if video.dim() not in (4, 5):
        raise ValueError(f"to_uint8 expects [B, C, T, H, W] or [C, T, H, W], got shape {tuple(video.shape)}")
    x = video.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    x = x.movedim(-4, -1)  # C to the end: [..., T, H, W, C]
    return x.contiguous().cpu().numpy()


def from_uint8(frames: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[B, T, H, W, C]`` (or ``[T, H, W, C]``) -> float ``[B, C, T, H, W]`` (or ``[C, T, H, W]``) in [-1, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise ValueError(f"from_uint8 expects uint8 frames, got {x.dtype}")
    if x.dim() not in (4, 5):
        raise ValueError(f"from_uint8 expects [B, T, H, W, C] or [T, H, W, C], got shape {tuple(x.shape)}")
    x = x.movedim(-1, -4)  # C in front of T
    # In place after the one dtype copy: a 64-clip 64x64x16 batch is ~50 MB, and two more
    # temporaries of that size cost more than the arithmetic.
    return x.to(dtype).div_(127.5).sub_(1)
