"""Inception Score: exp( E_x KL( p(y|x) || p(y) ) ), averaged over splits.

As in Salimans et al.: the N probability vectors are cut into ``splits`` consecutive parts;
in each part p(y) is the part's mean prediction; the score is the mean (and std) over parts.
"""

from __future__ import annotations

import numpy as np


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """probs [N, K] (rows sum to 1) -> (mean, std) of the Inception Score over ``splits`` parts."""
    probs = np.asarray(probs, np.float64)
    n = probs.shape[0]
    if n < splits:
        raise ValueError(f"need at least {splits} predictions for {splits} splits, got {n}")
    # Guard log(0): a zero probability contributes 0 * log 0 = 0 to the KL sum.
    logp = np.log(np.clip(probs, 1e-30, None))
    scores = []
    for i in range(splits):
        part, logpart = probs[i * n // splits:(i + 1) * n // splits], logp[i * n // splits:(i + 1) * n // splits]
        log_py = np.log(np.clip(part.mean(axis=0, keepdims=True), 1e-30, None))
        kl = (part * (logpart - log_py)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
