"""Differentiable augmentation of the discriminator's inputs (DiffAugment-style), for videos.

Both real and generated clips pass through the same random transformations before D sees
them, so D cannot memorise a small dataset while G still receives gradients through the
transformation. Every parameter is drawn once per clip and applied to all of its frames:
a translation that jittered from frame to frame would look like motion, and D would learn to
tell augmented clips apart by their temporal statistics.

All functions take float ``[B, C, T, H, W]`` in about [-1, 1] and a ``torch.Generator`` (CPU)
so that training is reproducible and resumable bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kinema.devices import to_device


@dataclass(frozen=True)
class GlobalDraws:
    """A generator shared by all ranks: every draw is made for the whole global batch of
    ``world * b`` clips and rank ``rank`` keeps rows ``rank * b : (rank + 1) * b``, so clip ``i`` of
    the global batch gets the same parameters whatever the number of ranks."""
    gen: torch.Generator
    rank: int
    world: int


def _rand(gen: torch.Generator | GlobalDraws, *shape, device) -> torch.Tensor:
    # Draw on the CPU generator, then move: the same numbers on every device.
    if isinstance(gen, GlobalDraws):
        b = shape[0]
        every = torch.rand(b * gen.world, *shape[1:], generator=gen.gen)   # [world * b, ...]
        return to_device(every[gen.rank * b:(gen.rank + 1) * b], device)
    return to_device(torch.rand(*shape, generator=gen), device)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness (+-0.5), saturation (x0..2, colour clips only) and contrast (x0.5..1.5), per clip."""
    b = x.shape[0]
    x = x + (_rand(gen, b, 1, 1, 1, 1, device=x.device) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)                       # [B, 1, T, H, W] grey level
        x = (x - mean) * (_rand(gen, b, 1, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)                # one mean per clip
    x = (x - mean) * (_rand(gen, b, 1, 1, 1, 1, device=x.device) + 0.5) + mean
    return x


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each clip by whole pixels, up to ``ratio`` of the side, zero (mid-grey) padded."""
    b, c, t, h, w = x.shape
    ry, rx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = (_rand(gen, b, device="cpu") * (2 * ry + 1)).long() - ry   # [B] in [-ry, ry]
    dx = (_rand(gen, b, device="cpu") * (2 * rx + 1)).long() - rx
    padded = F.pad(x, (rx, rx, ry, ry))                              # [B, C, T, H+2ry, W+2rx]
    # Row/column indices into the padded clip: output pixel (i, j) reads (i + ry - dy, j + rx - dx).
    rows = to_device(torch.arange(h)[None, :] + ry - dy[:, None], x.device)   # [B, H]
    cols = to_device(torch.arange(w)[None, :] + rx - dx[:, None], x.device)   # [B, W]
    rows = rows[:, None, None, :, None].expand(b, c, t, h, w + 2 * rx)
    out = padded.gather(3, rows)                                     # [B, C, T, H, W+2rx]
    cols = cols[:, None, None, None, :].expand(b, c, t, h, w)
    return out.gather(4, cols)                                       # [B, C, T, H, W]


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Blank one square of side ``ratio`` x side per clip (to zero, i.e. mid-grey), same in every frame."""
    b, _, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    # Centre of the square, anywhere in the frame (the square may hang over the edge).
    cy = (_rand(gen, b, device="cpu") * (h + 1 - sh % 2)).long()
    cx = (_rand(gen, b, device="cpu") * (w + 1 - sw % 2)).long()
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    inside_y = (ys >= (cy - sh // 2)[:, None]) & (ys < (cy - sh // 2 + sh)[:, None])   # [B, H]
    inside_x = (xs >= (cx - sw // 2)[:, None]) & (xs < (cx - sw // 2 + sw)[:, None])   # [B, W]
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])                             # [B, H, W]
    return x * to_device(keep[:, None, None], x.device).to(x.dtype)


def augment(x: torch.Tensor, gen: torch.Generator, *, translation_ratio: float = 0.0,
            cutout_ratio: float = 0.0, use_color: bool = False) -> torch.Tensor:
    """Apply the enabled transformations in DiffAugment's order: colour, translation, cutout."""
    if use_color:
        x = color(x, gen)
    if translation_ratio > 0:
        x = translation(x, gen, translation_ratio)
    if cutout_ratio > 0:
        x = cutout(x, gen, cutout_ratio)
    return x


def from_config(cfg):
    """A ``fn(x, gen) -> x`` for a ``DiffAugConfig`` (identity when everything is off)."""
    if not (cfg.color or cfg.translation > 0 or cfg.cutout > 0):
        return lambda x, gen: x
    return lambda x, gen: augment(x, gen, translation_ratio=cfg.translation,
                                  cutout_ratio=cfg.cutout, use_color=cfg.color)
