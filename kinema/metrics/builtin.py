"""The built-in feature extractor: a fixed random-feature 3D conv network, no download needed.

SCORES FROM IT ARE NOT COMPARABLE TO PUBLISHED FVD / FID / KVD / IS NUMBERS. It exists so that
evaluation works offline, in tests and as a cheap proxy during training; every result made
with it carries ``"extractor": "builtin"`` and that warning.

Design (why it can tell good video from bad without training):
* Input: uint8 [B, T, H, W, C] -> RGB (gray repeated) float in [-1, 1], every frame resized to
  64x64 (bilinear, antialiased). The network sees the frames AND their temporal differences
  x[t+1] - x[t] (6 input channels), so motion, flicker and frame order matter directly.
* Four random conv layers with temporal kernels: [6 -> 16 -> 32 -> 64 -> 128] channels, kernels
  3x5x5 then 3x3x3, spatial stride 2 (temporal stride 2 after the first), He-scaled Gaussian weights from
  a fixed seed, ReLU. Random
  features of this kind preserve distances between inputs well enough for two-sample tests.
* Features: per layer, the mean and standard deviation over (T, H, W) of each channel, plus the
  standard deviation over time of the spatial means (temporal variation): 3 * 240 = 720 dims.

Shuffled frames change the temporal differences (jumps instead of small motion) and raise the
Fréchet distance; frozen frames zero them. The weights are generated, not stored: their sha256
(``weights_hash``) identifies the extractor in caches and results, and changes if the recipe does.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20240531
SIZE = 64
CHANNELS = (16, 32, 64, 128)
WARNING = "built-in random-feature extractor: not comparable to published FVD/FID/KVD/IS"


class BuiltinExtractor(nn.Module):
    """uint8 [B, T, H, W, C] (C 1 or 3, T >= 1) -> float64 features [B, 720]."""

    kind = "video"
    description = "kinema built-in random-feature 3D conv network (seeded; " + WARNING + ")"

    def __init__(self, seed: int = SEED):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers, cin = [], 6
        # (temporal kernel, spatial kernel, temporal stride, spatial stride) per layer.
        # Time is halved from the second layer on: the input already carries the differences,
        # and the cost (about 90 MFLOP-MACs a 16-frame clip) must stay CPU-friendly.
        shapes = [(3, 5, 1, 2), (3, 3, 2, 2), (3, 3, 2, 2), (3, 3, 2, 2)]
        for cout, (kt, ks, st, ss) in zip(CHANNELS, shapes):
            conv = nn.Conv3d(cin, cout, (kt, ks, ks), (st, ss, ss), (kt // 2, ks // 2, ks // 2))
            fan_in = cin * kt * ks * ks
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                conv.bias.copy_(0.1 * torch.randn(cout, generator=gen))
            layers.append(conv)
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)
        # A fixed random head for the Inception-Score-like protocol (class "probabilities").
        self.register_buffer("head", torch.randn(3 * sum(CHANNELS), 100, generator=gen) / (3 * sum(CHANNELS)) ** 0.5)
        self.dim = 3 * sum(CHANNELS)

    def weights_hash(self) -> str:
        h = hashlib.sha256(b"kinema-builtin-v1")
        for name, t in self.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @staticmethod
    def preprocess(videos: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, C] -> float [B, 6, T, 64, 64]: frames and forward differences."""
        b, t, h, w, c = videos.shape
        x = videos.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w).float() / 127.5 - 1
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        if (h, w) != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = x.reshape(b, t, 3, SIZE, SIZE).permute(0, 2, 1, 3, 4)  # [B, 3, T, 64, 64]
        # The last frame has no successor: its difference is zero.
        diff = torch.cat([x[:, :, 1:] - x[:, :, :-1], torch.zeros_like(x[:, :, :1])], 2)
        return torch.cat([x, 2 * diff], 1)

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        dev = self.head.device
        x = self.preprocess(torch.as_tensor(videos)).to(dev)
        feats = []
        for conv in self.layers:
            x = F.relu(conv(x))  # [B, C, T', H', W']
            spatial = x.mean(dim=(3, 4))  # [B, C, T']
            feats += [spatial.mean(2), x.flatten(2).std(2, unbiased=False), spatial.std(2, unbiased=False)]
        return torch.cat(feats, 1).double()

    @torch.no_grad()
    def probs(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, 720] -> pseudo class probabilities [B, 100] (for is*_16f with builtin)."""
        # Standardise each vector on its own (so a sample's output never depends on its batch).
        f = features.double()
        f = (f - f.mean(1, keepdim=True)) / (f.std(1, keepdim=True) + 1e-8)
        return F.softmax(4 * f @ self.head.to(f.device).double(), 1)


def extract(extractor, videos: np.ndarray, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """Run any kinema extractor over uint8 [N, T, H, W, C] in batches -> float64 [N, D]."""
    out = []
    for i in range(0, len(videos), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(videos[i:i + batch_size]))
        out.append(extractor(batch.to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
