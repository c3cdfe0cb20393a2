"""``videogan``: a whole clip at once from 3-D (spatio-temporal) convolutions.

G maps one latent [n, Z] to a [C0, t0, 4, 4] volume and doubles space (and time, up to the
exact clip length) at every stage; D mirrors it with strided 3-D convolutions. With
``attention=True`` both get a self-attention block at ``attention_res`` (default 16x16, or a
quarter of the resolution if smaller): every space-time position can then look at every other one,
which helps keep an object's identity across the clip.

The clip length is baked into the volume shapes, so ``can_extend`` is False.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.models.layers import (COMMON_OPTIONS, MAX_LATENT, MAX_WIDTH, ClassCode, CondBatchNorm, check_length,
                                  need_labels)
from kinema.models.nets import VideoDiscriminator, VideoGenerator
from kinema.models.options import Bool, Int, bounded


class VideoGANGenerator(nn.Module):
    """latents {"z": [n, Z]} (+ labels [n]) -> video [n, C, T, H, W] in [-1, 1]."""

    can_extend = False
    streaming = "clips"         # kinema.sample.stream: drifting clips, cross-faded

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int, z_dim: int,
                 upsample: str, attention_res: int):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.z_dim = z_dim
        self.trunk = VideoGenerator(resolution, frames, channels, width, num_classes, 4, upsample, attention_res)
        c0, t0 = self.trunk.ch[0], self.trunk.t_sched[0]
        self.class_code = ClassCode(num_classes)
        self.fc = nn.Linear(z_dim + self.class_code.dim, c0 * t0 * 16, bias=False)  # -> [n, C0, t0, 4, 4]
        self.fc_norm = CondBatchNorm(c0, num_classes, 3)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """{"z": [n, Z]} standard normal, drawn on CPU from ``generator``."""
        check_length("videogan", self.frames, frames)
        return {"z": torch.randn(n, self.z_dim, generator=generator).to(device)}

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        need_labels(self.num_classes, labels, "videogan generator")
        z = self.class_code(latents["z"].to(self.fc.weight.dtype), labels)  # [n, Z (+ class code)]
        x = self.fc(z).unflatten(1, (self.trunk.ch[0], self.trunk.t_sched[0], 4, 4))
        x = F.relu(self.fc_norm(x, labels))  # [n, C0, t0, 4, 4]
        return self.trunk(x, labels)  # [n, C, T, H, W]

    def onnx_graph(self):
        """ONNX export (kinema.models.onnx): z [batch, ...] (+ labels) -> video."""
        from kinema.models.onnx import OnnxGraph

        return OnnxGraph(lambda z, labels=None: self({"z": z}, labels), {"z": torch.zeros(1, self.z_dim)},
                         {"z": {0: "batch"}})


class VideoGANDiscriminator(nn.Module):
    """video [B, C, T, H, W] (+ labels [B]) -> [logits [B]]."""

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 spectral_norm: bool, attention_res: int):
        super().__init__()
        self.num_classes = num_classes
        self.net = VideoDiscriminator(resolution, frames, channels, width, num_classes, spectral_norm, attention_res)

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        need_labels(self.num_classes, labels, "videogan discriminator")
        return [self.net(video, labels)]


@bounded("videogan", **COMMON_OPTIONS, d_width=Int(1, MAX_WIDTH, optional=True), z_dim=Int(1, MAX_LATENT),
         attention=Bool(), attention_res=Int(0, 256, optional=True), spectral_norm=Bool())
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 32,
          d_width: int | None = None, z_dim: int = 128, attention: bool = False, attention_res: int | None = None,
          spectral_norm: bool = False, upsample: str = "transpose"):
    """3-D convolutional G and D. Returns a ModelSet.

    width / d_width: channels of G's last hidden stage (half resolution) / D's first stage,
    doubling per coarser stage (cap 8x).
    attention: add self-attention at ``attention_res`` (default min(16, resolution // 4)). At
    32x32x16, width 32, it adds 0.008 GFLOP per clip to G at 8x8 (256 tokens) but 0.17 at 16x16
    (2048 tokens, G 0.110 -> 0.283), and attention is memory-bound on CPU.
    """
    from kinema.models import ModelSet

    attention_res = (attention_res or min(16, resolution // 4)) if attention else 0
    if attention and attention_res not in [2 ** i for i in range(3, 9) if 2 ** i < resolution]:
        raise KinemaError(f"model videogan: attention_res must be a power of two in 8..{resolution // 2}, "
                          f"got {attention_res}")
    d_width = d_width or width
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  d_width=d_width, z_dim=z_dim, attention=attention, attention_res=attention_res,
                  spectral_norm=spectral_norm, upsample=upsample)
    G = VideoGANGenerator(resolution, frames, channels, num_classes, width, z_dim, upsample, attention_res)
    D = VideoGANDiscriminator(resolution, frames, channels, num_classes, d_width, spectral_norm, attention_res)
    return ModelSet(G=G, D=D, E=None, kind="gan", name="videogan", kwargs=kwargs)
