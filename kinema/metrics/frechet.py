"""Fréchet distance between Gaussians fitted to features (FID, FVD).

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )

Everything is accumulated and computed in float64. The matrix square root is the part that
differs between public implementations (scipy ``sqrtm`` of the non-symmetric product S1 S2, an
SVD-based square root, an ``eps * I`` offset retried on failure...), and the part that breaks
when covariances are rank-deficient (fewer samples than feature dimensions, dead features).

kinema uses the symmetric form: S1 S2 is similar to the symmetric positive semi-definite matrix
M = S1^(1/2) S2 S1^(1/2) (conjugate by S1^(1/2)), so both have the same non-negative
eigenvalues and tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i(M)). Two ``eigh`` calls on symmetric
matrices give that sum; eigenvalues that round-off pushes below zero are clipped to zero. No
complex numbers, no offset, no iteration, and it is exact for rank-deficient covariances (the
zero eigenvalues simply contribute nothing).
"""

from __future__ import annotations

import numpy as np


class FeatureStats:
    """Streaming first and second moments of feature vectors, accumulated in float64.

    ``update(x [N, D])`` any number of times, then ``mean_cov(ddof)``. Keeping sums instead of
    the features makes the real-statistics cache small and the pass memory-bounded.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.sum_outer = np.zeros((dim, dim), np.float64)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features [N, {self.dim}], got {x.shape}")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def mean_cov(self, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """-> (mean [D], covariance [D, D]); ``ddof=1`` unbiased (numpy), ``ddof=0`` the ML estimate."""
        if self.n <= ddof:
            raise ValueError(f"need more than {ddof} feature vectors, have {self.n}")
        mean = self.sum / self.n
        # sum (x - m)(x - m)^T = sum x x^T - n m m^T; float64 keeps the cancellation harmless
        # for feature magnitudes up to ~1e4 (I3D logits are ~10).
        cov = (self.sum_outer - self.n * np.outer(mean, mean)) / (self.n - ddof)
        return mean, (cov + cov.T) / 2


def fit_gaussian(features: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mean [D], covariance [D, D]) in float64."""
    features = np.asarray(features)
    stats = FeatureStats(features.shape[1])
    stats.update(features)
    return stats.mean_cov(ddof)


def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh; negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh((mat + mat.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (S1 S2)^(1/2) for symmetric PSD S1, S2, as sum sqrt(eig(S1^1/2 S2 S1^1/2))."""
    root1 = _sqrt_psd(np.asarray(sigma1, np.float64))
    m = root1 @ np.asarray(sigma2, np.float64) @ root1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D, D]."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    # The exact value is >= 0; tiny negative results are round-off for identical inputs.
    return float(max(d2, 0.0))


def frechet_distance_from_features(x: np.ndarray, y: np.ndarray, ddof: int = 1) -> float:
    """Convenience: fit Gaussians to x [N, D] and y [M, D] and return their Fréchet distance."""
    return frechet_distance(*fit_gaussian(x, ddof), *fit_gaussian(y, ddof))
