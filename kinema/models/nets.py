"""Network trunks reused by several models: image G/D (2-D) and video G/D (3-D).

``ImageGenerator`` serves dcgan and mocogan (one frame per latent), ``ImageDiscriminator``
dcgan and mocogan's image head, ``VideoGenerator`` videogan and the videovae decoder,
``VideoDiscriminator`` videogan and mocogan's video head. The model files add latents,
frame handling and the public interface on top.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.models.layers import (ClassCode, CondBatchNorm, ProjectionHead, SelfAttention, UpBlock, down_conv,
                                  init_discriminator, init_generator, levels, stage_channels,
                                  temporal_schedule, apply_spectral_norm)


class ImageGenerator(nn.Module):
    """Latent [N, Z] (+ labels [N]) -> image [N, C, H, W] in [-1, 1].

    DCGAN: a 4x4 map, x2 stages with BN + ReLU up to H/2 (``width`` channels there, doubling per
    coarser stage), then one transposed conv straight to pixels. No hidden layer runs at full
    resolution: that is where most FLOPs would go (6x fewer per image than a full-resolution
    hidden stage plus a 3x3 output conv, at the same width).
    """

    def __init__(self, latent_dim: int, resolution: int, channels: int, width: int, num_classes: int,
                 upsample: str = "transpose"):
        super().__init__()
        steps = levels(resolution)
        ch = stage_channels(width, steps - 1)  # sides 4, 8, ..., H/2
        # A linear layer to a 4x4 map is DCGAN's first 4x4 transposed conv on a 1x1 input.
        self.class_code = ClassCode(num_classes)
        self.fc = nn.Linear(latent_dim + self.class_code.dim, ch[0] * 16, bias=False)
        self.fc_norm = CondBatchNorm(ch[0], num_classes, 2)
        self.blocks = nn.ModuleList(UpBlock(ch[i], ch[i + 1], num_classes, 2, upsample) for i in range(steps - 1))
        self.to_rgb = UpBlock(ch[-1], channels, num_classes, 2, upsample, final=True)
        init_generator(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.trunk(z, labels))  # [N, C, H, W]

    def trunk(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Everything but the final tanh: [N, Z] -> [N, C, H, W] (ctgan paints feature canvases with it)."""
        z = self.class_code(z.to(self.fc.weight.dtype), labels)  # [N, Z (+ class code)]
        x = self.fc(z).unflatten(1, (-1, 4, 4))  # [N, C0, 4, 4]
        x = F.relu(self.fc_norm(x, labels))
        for block in self.blocks:
            x = block(x, labels)  # [N, Ci, 2H, 2W]
        return self.to_rgb(x, labels)


class ImageDiscriminator(nn.Module):
    """Images [N, C, H, W] (+ labels [N]) -> logits [N].

    DCGAN-style strided convs from H down to 4x4 (first conv straight from pixels, so the costly
    full-resolution layer has only ``channels`` inputs), then the 4x4 map flattened into a
    projection head (flattening keeps *where* things are, which matters for moving objects).
    """

    def __init__(self, resolution: int, channels: int, width: int, num_classes: int, spectral_norm: bool = False):
        super().__init__()
        steps = levels(resolution)
        ch = stage_channels(width, steps - 1)[::-1]  # fine to coarse: w, 2w, ... (capped at 8w)
        convs = [down_conv(channels, ch[0], 2)] + [down_conv(ch[i], ch[i + 1], 2) for i in range(steps - 1)]
        self.convs = nn.ModuleList(convs)
        self.head = ProjectionHead(ch[-1] * 16, num_classes)
        init_discriminator(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)  # [N, Ci, H/2, W/2]
        return self.head(x.flatten(1), labels)  # [N, Cmax*16] -> [N]


class VideoGenerator(nn.Module):
    """Feature volume [B, C0, t0, s, s] (+ labels [B]) -> video [B, C, T, H, W] in [-1, 1].

    ``start`` is the spatial side s of the input (4 for a vector latent, larger for a VAE grid
    latent); t0 = ``t_sched[0]``. Each stage doubles space and (up to) time, BN + ReLU, until
    H/2; a last transposed conv goes straight to pixels at exactly ``frames`` x ``resolution``
    (as in ImageGenerator, no hidden layer at full resolution). An optional self-attention block
    follows the hidden stage whose spatial side equals ``attention_res``.
    """

    def __init__(self, resolution: int, frames: int, channels: int, width: int, num_classes: int,
                 start: int = 4, upsample: str = "transpose", attention_res: int = 0):
        super().__init__()
        steps = levels(resolution, start)
        self.t_sched = temporal_schedule(frames, steps)  # frames at sides start, 2 start, ..., H
        self.ch = stage_channels(width, steps - 1)  # channels at sides start, ..., H/2
        t = self.t_sched
        self.blocks = nn.ModuleList(UpBlock(self.ch[i], self.ch[i + 1], num_classes, 3, upsample, t[i], t[i + 1])
                                    for i in range(steps - 1))
        sides = [start * 2 ** (i + 1) for i in range(steps - 1)]
        self.attn_after = sides.index(attention_res) if attention_res in sides else -1
        self.attn = SelfAttention(self.ch[self.attn_after + 1]) if self.attn_after >= 0 else None
        self.to_rgb = UpBlock(self.ch[-1], channels, num_classes, 3, upsample, t[-2], t[-1], final=True)
        init_generator(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, labels)  # [B, Ci+1, t_{i+1}, 2s, 2s]
            if i == self.attn_after:
                x = self.attn(x)
        return torch.tanh(self.to_rgb(x, labels))  # [B, C, T, H, W]


class VideoDiscriminator(nn.Module):
    """Video [B, C, T, H, W] (+ labels [B]) -> logits [B], from 3-D strided convolutions.

    Every step halves space and ceil-halves time (T=12: 12 -> 6 -> 3 -> 2 at 32x32), down to a
    4x4 map of ceil(T / 2**steps) frames, flattened into a projection head. Optional
    self-attention after the step that reaches spatial side ``attention_res``.
    """

    def __init__(self, resolution: int, frames: int, channels: int, width: int, num_classes: int,
                 spectral_norm: bool = False, attention_res: int = 0):
        super().__init__()
        steps = levels(resolution)
        ch = stage_channels(width, steps - 1)[::-1]
        self.convs = nn.ModuleList([down_conv(channels, ch[0], 3)] +
                                   [down_conv(ch[i], ch[i + 1], 3) for i in range(steps - 1)])
        sides = [resolution // 2 ** (i + 1) for i in range(steps)]
        self.attn_after = sides.index(attention_res) if attention_res in sides else -1
        self.attn = SelfAttention(ch[self.attn_after]) if self.attn_after >= 0 else None
        t_end = temporal_schedule(frames, steps)[0]
        self.head = ProjectionHead(ch[-1] * t_end * 16, num_classes)
        init_discriminator(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)  # [B, Ci, ceil(t/2), s/2, s/2]
            if i == self.attn_after:
                x = self.attn(x)
        return self.head(x.flatten(1), labels)  # [B, Cmax * t_end * 16] -> [B]
