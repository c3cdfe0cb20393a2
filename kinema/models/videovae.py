"""``videovae``: a video variational autoencoder from 3-D convolutions.

E (encoder) maps a clip to a Gaussian posterior (mu, logvar); G (decoder) maps a latent back
to a clip. Two latent shapes:
  * ``latent="vector"`` (default): z [n, Z]. Prior samples are coherent clips, so this is the
    setting for *generation* from N(0, I).
  * ``latent="grid"``: z [n, Zc, t', g, g] with g = ``grid_res`` and t' = ceil(T / (res / g)),
    a spatial latent that reconstructs much better (the reconstruction baseline) but whose
    prior samples are less coherent.

Losses (``vae_loss``) live here so the training loop stays generic: it calls
``vae_loss(E, G, video, beta, labels)`` and minimises ``out["total"]``. With classes only the
decoder is conditioned (conditional BN); the encoder ignores labels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.models.layers import (COMMON_OPTIONS, MAX_LATENT, MAX_WIDTH, ClassCode, CondBatchNorm, check_length,
                                  down_conv, init_generator, levels, need_labels, stage_channels,
                                  temporal_schedule)
from kinema.models.nets import VideoGenerator
from kinema.models.options import Choice, Int, bounded


class VideoEncoder(nn.Module):
    """video [B, C, T, H, W] -> (mu, logvar), each shaped like G's latent "z"."""

    def __init__(self, resolution: int, frames: int, channels: int, width: int, latent: str, z_dim: int,
                 grid_res: int):
        super().__init__()
        start = grid_res if latent == "grid" else 4
        steps = levels(resolution, start)
        ch = stage_channels(width, steps - 1)[::-1]  # fine to coarse
        self.convs = nn.ModuleList([down_conv(channels, ch[0], 3)] +
                                   [down_conv(ch[i], ch[i + 1], 3) for i in range(steps - 1)])
        self.norms = nn.ModuleList(nn.BatchNorm3d(c) for c in ch)
        self.latent = latent
        t_end = temporal_schedule(frames, steps)[0]
        if latent == "vector":
            self.head = nn.Linear(ch[-1] * t_end * start * start, 2 * z_dim)  # flattened volume -> mu|logvar
        else:
            self.head = nn.Conv3d(ch[-1], 2 * z_dim, 1)  # per position -> mu|logvar channels
        init_generator(self)

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None):
        x = video
        for conv, norm in zip(self.convs, self.norms):
            x = F.leaky_relu(norm(conv(x)), 0.2)  # [B, Ci, ceil(t/2), s/2, s/2]
        if self.latent == "vector":
            x = x.flatten(1)
        mu, logvar = self.head(x).chunk(2, dim=1)  # [B, Z] or [B, Zc, t', g, g] each
        return mu, logvar


class VideoVAEDecoder(nn.Module):
    """latents {"z": [n, Z] or [n, Zc, t', g, g]} (+ labels [n]) -> video [n, C, T, H, W] in [-1, 1]."""

    can_extend = False
    streaming = "clips"         # kinema.sample.stream: drifting clips, cross-faded

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int, latent: str,
                 z_dim: int, grid_res: int, upsample: str):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.latent, self.z_dim = latent, z_dim
        self.start = grid_res if latent == "grid" else 4
        self.trunk = VideoGenerator(resolution, frames, channels, width, num_classes, self.start, upsample)
        c0, t0 = self.trunk.ch[0], self.trunk.t_sched[0]
        self.latent_shape = (z_dim,) if latent == "vector" else (z_dim, t0, self.start, self.start)
        # Classes: a class code appended to a vector latent, conditional BN in every case.
        self.class_code = ClassCode(num_classes if latent == "vector" else 0)
        if latent == "vector":
            self.fc = nn.Linear(z_dim + self.class_code.dim, c0 * t0 * 16, bias=False)  # -> [n, C0, t0, 4, 4]
        else:
            self.fc = nn.Conv3d(z_dim, c0, 1, bias=False)  # [n, Zc, t0, g, g] -> [n, C0, t0, g, g]
        self.fc_norm = CondBatchNorm(c0, num_classes, 3)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """Prior samples {"z": [n, *latent_shape]} ~ N(0, I), drawn on CPU from ``generator``."""
        check_length("videovae", self.frames, frames)
        return {"z": torch.randn((n,) + self.latent_shape, generator=generator).to(device)}

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        need_labels(self.num_classes, labels, "videovae decoder")
        z = latents["z"].to(self.fc.weight.dtype)
        if self.latent == "vector":
            z = self.class_code(z, labels)  # [n, Z (+ class code)]
        x = self.fc(z)
        if self.latent == "vector":
            x = x.unflatten(1, (self.trunk.ch[0], self.trunk.t_sched[0], 4, 4))  # [n, C0, t0, 4, 4]
        x = F.relu(self.fc_norm(x, labels))
        return self.trunk(x, labels)  # [n, C, T, H, W]

    def onnx_graph(self):
        """ONNX export (kinema.models.onnx): z [batch, ...] (+ labels) -> video."""
        from kinema.models.onnx import OnnxGraph

        return OnnxGraph(lambda z, labels=None: self({"z": z}, labels), {"z": torch.zeros((1,) + self.latent_shape)},
                         {"z": {0: "batch"}})


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps from the global torch RNG of mu's device (resumable)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def vae_loss(E: nn.Module, G: nn.Module, video: torch.Tensor, beta: float = 1.0,
             labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Negative ELBO pieces for a batch video [B, C, T, H, W] in [-1, 1].

    recon: mean squared error per element; kl: KL(q(z|x) || N(0, I)) summed over latent
    dimensions, averaged over the batch and divided by the elements per clip, so both terms are
    per-pixel and ``total = recon + beta * kl`` (beta = 1: the ELBO of a Gaussian decoder with
    variance 1/2, up to constants). Also returns "recon_video" (detached) for logging.
    """
    mu, logvar = E(video)
    z = reparameterize(mu, logvar)
    recon_video = G({"z": z}, labels)
    recon = F.mse_loss(recon_video.float(), video.float())
    logvar = logvar.float()
    kl = 0.5 * (mu.float().square() + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean() / video[0].numel()
    return {"total": recon + beta * kl, "recon": recon, "kl": kl, "recon_video": recon_video.detach()}


@torch.no_grad()
def reconstruct(E: nn.Module, G: nn.Module, video: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic reconstruction through the posterior mean: [B, C, T, H, W] -> same shape."""
    mu, _ = E(video)
    return G({"z": mu}, labels)


@bounded("videovae", **COMMON_OPTIONS, e_width=Int(1, MAX_WIDTH, optional=True), latent=Choice("vector", "grid"),
         z_dim=Int(1, MAX_LATENT), grid_res=Int(4, 64))
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 32,
          e_width: int | None = None, latent: str = "vector", z_dim: int = 128, grid_res: int = 8,
          upsample: str = "transpose"):
    """Video VAE: E = encoder, G = decoder, D = None, kind "vae". Returns a ModelSet.

    latent: "vector" (z [n, z_dim]) or "grid" (z [n, z_dim, t', grid_res, grid_res]);
    grid_res: a power of two from 4 to resolution // 4. e_width defaults to width.
    """
    from kinema.models import ModelSet

    if latent == "grid" and grid_res not in [2 ** i for i in range(2, 7) if 2 ** i <= resolution // 4]:
        raise KinemaError(f"model videovae: grid_res must be a power of two in 4..{resolution // 4}, got {grid_res}")
    e_width = e_width or width
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  e_width=e_width, latent=latent, z_dim=z_dim, grid_res=grid_res, upsample=upsample)
    G = VideoVAEDecoder(resolution, frames, channels, num_classes, width, latent, z_dim, grid_res, upsample)
    E = VideoEncoder(resolution, frames, channels, e_width, latent, z_dim, grid_res)
    return ModelSet(G=G, D=None, E=E, kind="vae", name="videovae", kwargs=kwargs)
