"""Clip augmentations on batched tensors, identical for every frame of a clip.

Parameters are drawn once per clip (from a numpy Generator the loader derives from
``(seed, epoch, step)``), then applied to the whole clip at once:

- geometry (flip, crop/scale, rotation) is one affine map per clip; the clip's frames are
  stacked along the channel axis ``[B, C*T, H, W]`` so ``grid_sample`` moves them together;
- colour (brightness, contrast, saturation) uses per-clip scalars, with contrast around the
  clip's mean over all frames, so identical frames stay identical.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kinema.devices import to_device


@dataclass(frozen=True)
class AugmentConfig:
    """Switches and ranges; every augmentation is off by default."""

    flip: bool = False             # horizontal flip with probability 1/2
    crop: bool = False             # random crop then scale back up (zoom in)
    crop_scale_min: float = 0.8    # smallest crop side as a fraction of the frame side
    rotate: bool = False           # small rotation
    rotate_degrees: float = 8.0    # uniform in [-d, d]
    color: bool = False            # brightness, contrast, saturation jitter
    brightness: float = 0.1        # add uniform [-b, b] (in [0, 1] pixel units)
    contrast: float = 0.2          # scale by uniform [1 - c, 1 + c] around the clip mean
    saturation: float = 0.2        # scale chroma by uniform [1 - s, 1 + s] (3-channel clips)

    @property
    def enabled(self) -> bool:
        return self.flip or self.crop or self.rotate or self.color

    def to_dict(self) -> dict:
        return asdict(self)


def sample_params(cfg: AugmentConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw parameters for ``n`` clips; each entry is float64 ``[n]``.

    Every draw happens whether or not its switch is on, so switching one augmentation on or off
    does not change the values the others get (reproducible ablations).
    """
    u = rng.random((7, n))
    return {
        "flip": (u[0] < 0.5) & cfg.flip,
        "scale": 1 - (1 - cfg.crop_scale_min) * u[1] if cfg.crop else np.ones(n),
        "shift_x": 2 * u[2] - 1, "shift_y": 2 * u[3] - 1,  # where the crop sits, in [-1, 1] of the slack
        "angle": (2 * u[4] - 1) * math.radians(cfg.rotate_degrees) if cfg.rotate else np.zeros(n),
        "brightness": (2 * u[5] - 1) * cfg.brightness if cfg.color else np.zeros(n),
        "contrast": 1 + (2 * rng.random(n) - 1) * cfg.contrast if cfg.color else np.ones(n),
        "saturation": 1 + (2 * u[6] - 1) * cfg.saturation if cfg.color else np.ones(n),
    }


def apply(video: torch.Tensor, cfg: AugmentConfig, params: dict[str, np.ndarray]) -> torch.Tensor:
    """Augment float ``video [B, C, T, H, W]`` in [-1, 1] with per-clip ``params``; same shape out.

    May modify ``video`` in place (the loader owns its batches); returns the augmented tensor.
    """
    if not cfg.enabled:
        return video
    if cfg.crop or cfg.rotate:
        video = _affine(video, params)
    elif cfg.flip and params["flip"].any():
        idx = to_device(np.flatnonzero(params["flip"]), video.device)
        video[idx] = video[idx].flip(-1)  # exact: no resampling when flipping alone
    if cfg.color:
        video = _color(video, params)
    return video


def _affine(video: torch.Tensor, p: dict[str, np.ndarray]) -> torch.Tensor:
    """Flip, zoom into a crop and rotate each clip with one bilinear resampling."""
    b, c, t, h, w = video.shape
    s = p["scale"]
    # The sampled window is s times the frame (normalised coordinates) and may move by the
    # slack (1 - s) either way; rotation turns the window about its centre.
    cos, sin = np.cos(p["angle"]) * s, np.sin(p["angle"]) * s
    sign = np.where(p["flip"], -1.0, 1.0)
    theta = np.zeros((b, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * sign * w / h, cos
    theta[:, 0, 2] = (1 - s) * p["shift_x"]
    theta[:, 1, 2] = (1 - s) * p["shift_y"]
    theta = to_device(theta, video.device, video.dtype)   # parameters: host -> GPU without a stall
    grid = F.affine_grid(theta, [b, c * t, h, w], align_corners=False)
    # Frames as channels: [B, C*T, H, W], so all frames of a clip share the grid exactly.
    out = F.grid_sample(video.reshape(b, c * t, h, w), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    return out.view(b, c, t, h, w)


def _color(video: torch.Tensor, p: dict[str, np.ndarray]) -> torch.Tensor:
    """Saturation, contrast and brightness as one per-clip affine colour map (one pass).

    In [0, 1] units, with gray = w . x (BT.601 weights w) and m the clip's mean after saturation:
    out = c * (S x - m) + m + b, where S = s I + (1 - s) 1 w^T. Since S keeps gray levels, in
    [-1, 1] units this is out = c S x + (2 b + (1 - c) mean(S x)): a 3x3 matrix and an offset per
    clip, applied with one batched matmul instead of a dozen full-size passes.
    """
    b, c = video.shape[:2]
    dev, dt = video.device, video.dtype
    flat = video.reshape(b, c, -1)  # [B, C, N]
    s = to_device(p["saturation"], dev, dt).view(b, 1, 1)
    if c == 3:
        w = to_device(torch.tensor([0.299, 0.587, 0.114]), dev, dt)
        sat = s * torch.eye(3, dtype=dt, device=dev) + (1 - s) * w.view(1, 1, 3)  # [B, 3, 3], rows sum to 1
    else:
        sat = torch.ones(b, 1, 1, dtype=dt, device=dev)
    mean = (sat @ flat.mean(-1, keepdim=True)).mean(1, keepdim=True)  # [B, 1, 1], clip mean after S
    con = to_device(p["contrast"], dev, dt).view(b, 1, 1)
    bri = to_device(p["brightness"], dev, dt).view(b, 1, 1)
    offset = (2 * bri + (1 - con) * mean).expand(b, c, 1)
    out = torch.baddbmm(offset, con * sat, flat)  # [B, C, N]
    return out.clamp_(-1, 1).view_as(video)
