"""Kernel Inception/Video Distance: unbiased MMD^2 with the cubic polynomial kernel.

    k(a, b) = (a . b / d + 1)^3                       (degree 3, gamma = 1/d, coef0 = 1)
    MMD^2_u = sum_{i!=j} k(x_i,x_j) / (m(m-1)) + sum_{i!=j} k(y_i,y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i,y_j) / m^2

As in Bińkowski et al. (KID) the estimate is averaged over ``num_subsets`` random subsets of
``subset_size`` samples drawn without replacement from each side; the subsets come from a
seeded numpy generator so the number is reproducible. KVD is the same on video features.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, D], b [M, D] -> kernel matrix [N, M] in float64."""
    d = a.shape[1]
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x [m, D] and y [m, D] (equal sizes) with the cubic kernel."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two equal-size samples of at least 2, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    # Drop the diagonal (k(x_i, x_i)) terms: that is what makes the estimate unbiased.
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2 * kxy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID / KVD: mean and std of ``mmd2_unbiased`` over random subsets.

    x [N, D], y [M, D]; the subset size is ``min(subset_size, N, M)``. Returns (mean, std).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        xi = rng.choice(x.shape[0], m, replace=False)
        yi = rng.choice(y.shape[0], m, replace=False)
        values.append(mmd2_unbiased(x[xi], y[yi]))
    values = np.asarray(values)
    return float(values.mean()), float(values.std())
