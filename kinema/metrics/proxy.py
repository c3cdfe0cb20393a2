"""A cheap FVD proxy for use during training: built-in extractor, a few hundred clips.

NOT comparable to published FVD (built-in random-feature extractor); useful as a trend line.
Real clips: ``num`` clips of the archive chosen by a seeded draw (or the given uint8 array);
fake clips: video ``i`` from seed ``seed + i``, labels cycling through the classes. The real
statistics are kept in the ``ProxyFVD`` object, so repeated calls only pay for the fake side.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from kinema.metrics.builtin import BuiltinExtractor
from kinema.metrics.frechet import FeatureStats, frechet_distance
from kinema.metrics.sources import generate_clips


class ProxyFVD:
    """``ProxyFVD(real, num, seed, device)(G) -> float``; real = Archive or uint8 [N, T, H, W, C]."""

    def __init__(self, real, num: int = 256, seed: int = 0, device: str = "cpu", batch_size: int = 16):
        self.num, self.seed, self.device, self.batch_size = num, seed, device, batch_size
        self.extractor = BuiltinExtractor().to(device)
        if isinstance(real, np.ndarray):
            clips = real[np.random.default_rng(seed).permutation(len(real))[:num]]
        else:  # an Archive: seeded choice of clip indices
            idx = np.sort(np.random.default_rng(seed).choice(real.num_clips, min(num, real.num_clips), replace=False))
            clips = real.clips(idx)
        self.frames = clips.shape[1]
        self.real_mean, self.real_cov = self._stats(clips[i:i + batch_size] for i in range(0, len(clips), batch_size))

    def _stats(self, batches):
        stats = FeatureStats(self.extractor.dim)
        for b in batches:
            stats.update(self.extractor(torch.from_numpy(np.ascontiguousarray(b)).to(self.device)).cpu().numpy())
        return stats.mean_cov(ddof=0)

    @torch.no_grad()
    def __call__(self, G) -> float:
        was_training = G.training
        G.eval()
        try:
            batches = (generate_clips(G, range(self.seed + i, self.seed + min(i + self.batch_size, self.num)),
                                      self.frames, self.device) for i in range(0, self.num, self.batch_size))
            mean, cov = self._stats(batches)
        finally:
            G.train(was_training)
        return frechet_distance(self.real_mean, self.real_cov, mean, cov)


def _real_key(real, num, seed, device) -> tuple:
    if isinstance(real, np.ndarray):
        return ("array", hashlib.sha256(np.ascontiguousarray(real).data).hexdigest(), num, seed, str(device))
    return ("archive", real.content_hash, num, seed, str(device))


_PROXIES: dict[tuple, ProxyFVD] = {}  # a small memo of real statistics; at most 4 kept


def proxy_fvd(G, real, num: int = 256, seed: int = 0, device: str = "cpu") -> float:
    """FVD proxy of generator ``G`` against ``real`` (Archive or uint8 clips [N, T, H, W, C]).

    The real statistics are computed on the first call and reused for the same (real, num,
    seed, device). For full control (or no memo) build a :class:`ProxyFVD` yourself.
    """
    key = _real_key(real, num, seed, device)
    if key not in _PROXIES:
        if len(_PROXIES) >= 4:
            _PROXIES.pop(next(iter(_PROXIES)))
        _PROXIES[key] = ProxyFVD(real, num, seed, device)
    return _PROXIES[key](G)
