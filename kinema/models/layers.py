"""Building blocks shared by every kinema model.

Layout conventions (stated again at each block):
  * images  ``[N, C, H, W]`` (video frames folded into the batch: N = B * T),
  * videos  ``[B, C, T, H, W]``,
  * latents ``[B, Z]`` unless a model says otherwise.

Choices made once here so that all models behave alike:
  * Generators use BatchNorm + ReLU (DCGAN's recipe for small images; cheap on CPU); with
    classes a per-class code is appended to the latent and the BatchNorm gain and bias come from
    per-class embeddings (conditional BN).
  * Discriminators use no normalisation and LeakyReLU(0.2), so the R1 penalty of the training
    loop acts on a plain function of one clip; spectral norm is an option, off by default (it
    costs a power iteration per layer and step, and R1 already regularises D).
  * Upsampling defaults to a transposed convolution (k4, s2). On a 2-core CPU (forward+backward,
    batch 16) ConvTranspose3d 64->32 from [8,16,16] took 235 ms against nearest upsample +
    Conv3d(k3) 638 ms; 2-D likewise 2.5-3x (docs/results.md, "Models"). On GPUs the two should be
    about even (a transposed 3-D conv may run at a lower FLOP rate but needs 27/8 fewer FLOPs),
    so ``upsample="nearest"`` is kept as an option, not the default.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.models.options import Choice, Int, check

RESOLUTIONS = (32, 64, 128, 256)
MIN_FRAMES, MAX_FRAMES = 4, 32
UPSAMPLE_MODES = ("transpose", "nearest")
MAX_WIDTH, MAX_CLASSES, MAX_LATENT = 1024, 10000, 4096

# Bounds of the options every model shares (kinema.models.options); each model adds its own.
COMMON_OPTIONS = dict(resolution=Choice(*RESOLUTIONS), frames=Int(MIN_FRAMES, MAX_FRAMES), channels=Choice(1, 3),
                      num_classes=Int(0, MAX_CLASSES), width=Int(1, MAX_WIDTH), upsample=Choice(*UPSAMPLE_MODES))


def check_common(model: str, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 upsample: str = "transpose") -> None:
    """Raise a one-line KinemaError for shared options outside ``COMMON_OPTIONS``."""
    check(model, COMMON_OPTIONS, dict(resolution=resolution, frames=frames, channels=channels,
                                      num_classes=num_classes, width=width, upsample=upsample))


def check_length(model: str, frames: int, asked: int | None) -> None:
    """A generator that bakes its clip length into its layers (``can_extend`` False) refuses any
    other length, with a one-line KinemaError."""
    if asked not in (None, frames):
        raise KinemaError(f"{model} generates exactly {frames} frames (can_extend is False), asked for {asked}")


def levels(resolution: int, start: int = 4) -> int:
    """Number of x2 steps between ``start`` and ``resolution`` (both powers of two)."""
    return int(round(math.log2(resolution // start)))


def temporal_schedule(frames: int, steps: int) -> list[int]:
    """Clip length at each of ``steps + 1`` stages, ending at exactly ``frames``.

    Stage i holds ceil(frames / 2**(steps - i)) frames: every stage at most doubles the previous
    one, so a generator can double-then-crop and an encoder's ceil-halving strided convolutions
    land on the same sizes (ceil(ceil(x/2)/2) == ceil(x/4)). Works for any length, e.g. 12 ->
    [2, 3, 6, 12] with three steps.
    """
    return [math.ceil(frames / 2 ** (steps - i)) for i in range(steps + 1)]


def stage_channels(width: int, steps: int, cap: int = 8) -> list[int]:
    """Channels at ``steps + 1`` stages, coarse to fine: the finest has ``width``, each coarser
    stage doubles it, capped at ``cap * width`` (DCGAN-like 8w, 4w, 2w, w)."""
    return [width * min(2 ** (steps - i), cap) for i in range(steps + 1)]


# ----------------------------------------------------------------------------------------------
# Initialisation and spectral norm.

def init_generator(module: nn.Module) -> None:
    """DCGAN init, N(0, 0.02), for every conv/linear; BatchNorm affine starts at identity.

    Every generator conv is followed by BatchNorm, so the scale only sets the effective step
    size of Adam; 0.02 is the value DCGAN found fast and stable.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Conv1d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_discriminator(module: nn.Module) -> None:
    """Variance-preserving (He, LeakyReLU 0.2) init: a deep normalisation-free discriminator at
    256x256 keeps a usable signal, which N(0, 0.02) would shrink ~2x per layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> None:
    """Wrap every conv/linear weight of ``module`` in spectral norm (call after init)."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Conv3d, nn.Conv1d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)


# ----------------------------------------------------------------------------------------------
# Conditioning.

class CondBatchNorm(nn.Module):
    """BatchNorm over [N, C, ...]; with classes, gain and bias are looked up per label.

    ``dims`` is 1, 2 or 3 (the number of axes after C). Without classes it is plain affine BN.
    """

    def __init__(self, channels: int, num_classes: int, dims: int):
        super().__init__()
        bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        self.num_classes, self.dims = num_classes, dims
        self.bn = bn(channels, affine=num_classes == 0)
        if num_classes:
            self.gain = nn.Embedding(num_classes, channels)
            self.bias = nn.Embedding(num_classes, channels)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.bn(x)
        if self.num_classes:
            shape = (-1, x.shape[1]) + (1,) * self.dims  # [N, C, 1, ...] broadcasts over space (N free in ONNX)
            x = x * self.gain(labels).view(shape).to(x.dtype) + self.bias(labels).view(shape).to(x.dtype)
        return x


class ClassCode(nn.Module):
    """Latent [N, Z] + labels [N] -> [N, Z + dim]: a learned code per class appended to the latent.

    Conditional BN can only rescale features, and starts as a no-op; the appended code (N(0, 1)
    at init, like the latent) makes each class produce different images from the first step, so
    the projection discriminator has something to pull on. Identity (dim 0) without classes.
    """

    def __init__(self, num_classes: int, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None
        self.dim = dim if num_classes else 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        return torch.cat([z, self.embed(labels).to(z.dtype)], 1)


class ProjectionHead(nn.Module):
    """Final logit of a discriminator: linear(h) + <embed(y), h> (projection discriminator).

    ``h`` is [B, F]; returns [B]. Without classes only the linear part exists.
    """

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(features))

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.linear(h).squeeze(1)  # [B]
        if self.embed is not None:
            out = out + (self.embed(labels).to(h.dtype) * h).sum(1)
        return out


def need_labels(num_classes: int, labels: torch.Tensor | None, what: str) -> None:
    """A conditional model called without labels (or the reverse) is a caller bug; say so."""
    if num_classes and labels is None:
        raise KinemaError(f"{what}: model has {num_classes} classes, pass labels [B] (int64)")


# ----------------------------------------------------------------------------------------------
# Attention.

class SelfAttention(nn.Module):
    """Self-attention over all positions of [B, C, *S] (S = (H, W) or (T, H, W)), SAGAN style.

    Queries/keys have C/8 channels, values C/2; the output is added back scaled by ``gamma``,
    which starts at 0 so the block begins as the identity and the network learns how much
    global context to use. Uses scaled_dot_product_attention (fused kernels on GPU).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.qk = max(channels // 8, 1)
        self.v = max(channels // 2, 1)
        self.proj_in = nn.Conv1d(channels, 2 * self.qk + self.v, 1)
        self.proj_out = nn.Conv1d(self.v, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2)  # [B, C, N], N = T*H*W
        q, k, v = self.proj_in(tokens).split([self.qk, self.qk, self.v], dim=1)
        # SDPA wants [B, heads, N, d]; one head.
        att = F.scaled_dot_product_attention(q.transpose(1, 2).unsqueeze(1), k.transpose(1, 2).unsqueeze(1),
                                             v.transpose(1, 2).unsqueeze(1))  # [B, 1, N, v]
        out = self.proj_out(att.squeeze(1).transpose(1, 2))  # [B, C, N]
        return x + self.gamma.to(x.dtype) * out.reshape_as(x)  # reshape_as: the batch stays free in ONNX


# ----------------------------------------------------------------------------------------------
# Up and down blocks.

class UpBlock(nn.Module):
    """x2 upsampling + conditional BN + ReLU, for images (dims=2) or videos (dims=3).

    2-D: [N, Cin, H, W] -> [N, Cout, 2H, 2W].
    3-D: [B, Cin, t_in, H, W] -> [B, Cout, t_out, 2H, 2W] with t_in <= t_out <= 2 t_in (see
    ``temporal_schedule``): time is doubled then cropped, or kept when t_out == t_in.
    ``final=True``: the output layer (to pixels): a biased conv, no normalisation, no activation.
    """

    def __init__(self, cin: int, cout: int, num_classes: int, dims: int, mode: str = "transpose",
                 t_in: int = 1, t_out: int = 1, final: bool = False):
        super().__init__()
        self.dims, self.mode, self.t_out = dims, mode, t_out
        double_t = dims == 3 and t_out > t_in
        bias = final  # BatchNorm follows every other layer and would cancel a bias
        if mode == "transpose":
            if dims == 2:
                self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
            elif double_t:
                self.conv = nn.ConvTranspose3d(cin, cout, 4, 2, 1, bias=bias)
            else:  # space only: (3, 4, 4) kernel, stride (1, 2, 2)
                self.conv = nn.ConvTranspose3d(cin, cout, (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=bias)
        else:
            conv = nn.Conv2d if dims == 2 else nn.Conv3d
            self.conv = conv(cin, cout, 3, 1, 1, bias=bias)
        self.norm = None if final else CondBatchNorm(cout, num_classes, dims)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "transpose":
            x = self.conv(x)
            if self.dims == 3 and x.shape[2] != self.t_out:
                x = x[:, :, : self.t_out]  # doubled past the target length (odd lengths): crop
        else:
            size = (2 * x.shape[-2], 2 * x.shape[-1])
            if self.dims == 3:
                size = (self.t_out,) + size
            x = self.conv(F.interpolate(x, size=size, mode="nearest"))
        return x if self.norm is None else F.relu(self.norm(x, labels))


def down_conv(cin: int, cout: int, dims: int) -> nn.Module:
    """Strided conv halving every axis (time by ceil): [N, Cin, (T,) H, W] -> [N, Cout, (ceil(T/2),) H/2, W/2].

    Time uses kernel 3, stride 2, pad 1, which never reaches zero length (1 -> 1) and matches
    ``temporal_schedule``; space uses the DCGAN kernel 4, stride 2, pad 1.
    """
    if dims == 2:
        return nn.Conv2d(cin, cout, 4, 2, 1)
    return nn.Conv3d(cin, cout, (3, 4, 4), 2, (1, 1, 1))


def fold_time(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] (frames into the batch; frame-major within a clip)."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def unfold_time(frames: torch.Tensor, b: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W].

    A channels_last frame batch becomes a channels_last_3d video without a copy; otherwise the
    result is made contiguous so callers may ``.view`` it.
    """
    n, c, h, w = frames.shape
    video = frames.reshape(b, -1, c, h, w).transpose(1, 2)  # -1, not n // b: stays a free axis in ONNX
    if frames.is_contiguous(memory_format=torch.channels_last) and c > 1:
        return video
    return video.contiguous()
