"""Latent-space geometry shared by the models and the samplers.

* :func:`slerp` - spherical interpolation, used by dcgan's per-frame walk, by interpolation
  between seeds and by endless streams: one implementation, so a stream, a generated video and
  an interpolation of the same latents agree to the bit.
* :func:`next_anchor` - the random-walk step ``a_k = cos(angle) a_{k-1} + sin(angle) e_k`` whose
  every anchor is again exactly N(0, I) when ``a_0`` and ``e_k`` are.
"""

from __future__ import annotations

import math

import torch

from kinema.errors import KinemaError


def slerp(a: torch.Tensor, b: torch.Tensor, t, start_dim: int = 1) -> torch.Tensor:
    """Spherical interpolation between ``a`` and ``b`` (same shape), the vectors being the dims
    from ``start_dim`` on (``1``, the default: whole samples of ``[n, ...]``; ``-1``: rows of
    ``[..., Z]``).

    ``t``: a float, or a tensor of the leading shape (one fraction per vector). Computed in
    float64, returned in ``a``'s dtype; exactly ``a`` at t=0 and ``b`` at t=1; a straight line
    for (anti)parallel vectors, where the great circle is undefined.
    """
    lead = a.shape[:start_dim % a.dim()]
    fa, fb = a.reshape(*lead, -1).double(), b.reshape(*lead, -1).double()     # [..., V]
    t = torch.as_tensor(t, dtype=torch.float64).expand(lead).unsqueeze(-1)     # [..., 1]
    norms = fa.norm(dim=-1, keepdim=True) * fb.norm(dim=-1, keepdim=True)
    theta = torch.acos(((fa * fb).sum(-1, keepdim=True) / norms.clamp_min(1e-12)).clamp(-1, 1))
    sin = torch.sin(theta)
    small = sin.abs() < 1e-6
    safe = sin.where(~small, torch.ones_like(sin))
    wa = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / safe)          # 1 at t=0, exactly
    wb = torch.where(small, t, torch.sin(t * theta) / safe)                    # 0 at t=0, exactly
    return (wa * fa + wb * fb).to(a.dtype).reshape(a.shape)


def next_anchor(prev: torch.Tensor, noise: torch.Tensor, angle: float) -> torch.Tensor:
    """One step of the anchor walk: ``cos(angle) * prev + sin(angle) * noise``."""
    return math.cos(angle) * prev + math.sin(angle) * noise


# Sparse-frame training (continuous-time models): which frames of a clip a training step sees.

def draw_times(n: int, frames: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[n, k] sorted distinct frame indices in [0, frames), uniform over the k-subsets; int64, CPU."""
    if not 2 <= k <= frames:
        raise KinemaError(f"sparse frames: need 2 <= k <= frames ({frames}), got {k}")
    return torch.rand(n, frames, generator=generator).argsort(1)[:, :k].sort(1).values


def take_frames(video: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
    """The frames of clips [B, C, T, H, W] at ``times`` [B, k] -> [B, C, k, H, W] (None: all)."""
    if times is None:
        return video
    idx = times.view(times.shape[0], 1, -1, 1, 1).expand(-1, video.shape[1], -1, *video.shape[3:])
    return torch.gather(video, 2, idx.to(video.device))
