"""``dcgan``: an image GAN on frames; a video is a smooth walk through its latent space.

The generator is the textbook DCGAN image generator applied to one latent per frame. A clip's
latents ``z`` [n, T, Z] follow a smooth random walk on the Gaussian shell: anchor points every
``anchor_every`` frames, each anchor a rotation by ``walk_angle`` radians of the previous one
towards fresh noise (a_k = cos(a) a_{k-1} + sin(a) e_k keeps every anchor exactly N(0, I)),
and spherical interpolation between anchors for the frames in between.

Training uses the same walks (not independent frames): the frames of a generated clip are
then correlated like the frames of a real clip, so the BatchNorm statistics G sees in training
match those of generated videos, and the walk's speed is what the samples will show. The
discriminator judges every frame on its own (T folded into the batch); there is no temporal
judge, which is what makes this the baseline. Longer clips are just longer walks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from kinema.errors import KinemaError
from kinema.models.latents import next_anchor, slerp
from kinema.models.layers import COMMON_OPTIONS, MAX_LATENT, MAX_WIDTH, fold_time, need_labels, unfold_time
from kinema.models.nets import ImageDiscriminator, ImageGenerator
from kinema.models.options import Bool, Float, Int, bounded


def latent_walk(n: int, frames: int, dim: int, anchor_every: int, walk_angle: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth random walks [n, frames, dim], each frame marginally close to N(0, I); on CPU."""
    k = (frames - 1) // anchor_every + 2  # anchors needed so every frame has a right neighbour
    noise = torch.randn(n, k, dim, generator=generator)
    anchors = [noise[:, 0]]
    for j in range(1, k):
        anchors.append(next_anchor(anchors[-1], noise[:, j], walk_angle))
    anchors = torch.stack(anchors, 1)  # [n, k, Z]
    pos = torch.arange(frames, dtype=torch.float32) / anchor_every  # [T] position in anchor units
    left = pos.floor().long()
    frac = (pos - left).expand(n, frames)  # [n, T]
    return slerp(anchors[:, left], anchors[:, left + 1], frac, start_dim=-1)  # [n, T, Z], one fraction per row


class DCGANGenerator(nn.Module):
    """latents {"z": [n, T, Z]} (+ labels [n]) -> video [n, C, T, H, W] in [-1, 1]."""

    can_extend = True
    streaming = "walk"          # kinema.sample.stream: one endless latent walk

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 z_dim: int, upsample: str, anchor_every: int, walk_angle: float):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.z_dim, self.anchor_every, self.walk_angle = z_dim, anchor_every, walk_angle
        self.net = ImageGenerator(z_dim, resolution, channels, width, num_classes, upsample)

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """{"z": [n, T, Z]}: one smooth walk per video, drawn on CPU from ``generator``."""
        z = latent_walk(n, frames or self.frames, self.z_dim, self.anchor_every, self.walk_angle, generator)
        return {"z": z.to(device)}

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        need_labels(self.num_classes, labels, "dcgan generator")
        z = latents["z"]  # [n, T, Z]
        n, t = z.shape[:2]
        frame_labels = labels[:, None].expand(n, t).reshape(-1) if self.num_classes else None  # [n*T], frame-major
        frames = self.net(z.reshape(n * t, -1), frame_labels)  # [n*T, C, H, W]
        return unfold_time(frames, n)  # [n, C, T, H, W]

    def onnx_graph(self):
        """ONNX export (kinema.models.onnx): z [batch, frames, Z] (+ labels) -> video."""
        from kinema.models.onnx import OnnxGraph

        return OnnxGraph(lambda z, labels=None: self({"z": z}, labels), {"z": torch.zeros(1, 2, self.z_dim)},
                         {"z": {0: "batch", 1: "frames"}})


class DCGANDiscriminator(nn.Module):
    """video [B, C, T, H, W] (+ labels [B]) -> [logits [B, T]]: one image logit per frame."""

    def __init__(self, resolution: int, channels: int, num_classes: int, width: int, spectral_norm: bool):
        super().__init__()
        self.num_classes = num_classes
        self.net = ImageDiscriminator(resolution, channels, width, num_classes, spectral_norm)

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        need_labels(self.num_classes, labels, "dcgan discriminator")
        b, t = video.shape[0], video.shape[2]
        frame_labels = labels.repeat_interleave(t) if self.num_classes else None
        return [self.net(fold_time(video), frame_labels).view(b, t)]


@bounded("dcgan", **COMMON_OPTIONS, d_width=Int(1, MAX_WIDTH, optional=True), z_dim=Int(1, MAX_LATENT),
         spectral_norm=Bool(), anchor_every=Int(1, 1024), walk_angle=Float(0.0, math.pi))
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 32,
          d_width: int | None = None, z_dim: int = 64, spectral_norm: bool = False, upsample: str = "transpose",
          anchor_every: int = 4, walk_angle: float = 0.5):
    """DCGAN frame generator + per-frame discriminator. Returns a ModelSet.

    width: G channels at its last hidden stage, half resolution (doubling per coarser stage, cap 8x); d_width: the
    same for D (default = width). anchor_every / walk_angle: the latent walk (see module doc).
    """
    from kinema.models import ModelSet  # the dataclass lives with the registry

    d_width = d_width or width
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  d_width=d_width, z_dim=z_dim, spectral_norm=spectral_norm, upsample=upsample,
                  anchor_every=anchor_every, walk_angle=walk_angle)
    G = DCGANGenerator(resolution, frames, channels, num_classes, width, z_dim, upsample, anchor_every, walk_angle)
    D = DCGANDiscriminator(resolution, channels, num_classes, d_width, spectral_norm)
    return ModelSet(G=G, D=D, E=None, kind="gan", name="dcgan", kwargs=kwargs)
