"""Cache of real-data statistics, so a second evaluation against the same data skips the real pass.

Key: sha256 of (source content hash, the protocol with any overrides, the extractor's weights
sha256, the sampling seed, cache format version). Any change to the data, the protocol, the
sample count or the network gives another key, never a stale hit.

Format: a plain ``.npz`` (numpy arrays only; read with ``allow_pickle=False``, so a cache file
cannot run code), written atomically; stored: ``n``, ``mean`` [D], ``cov`` [D, D] (float64) and,
for kernel metrics, ``features`` [N, D]. Folder: ``--cache-dir``, else ``$KINEMA_CACHE/metrics``,
else ``~/.cache/kinema/metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from kinema.fsutil import atomic_path

FORMAT_VERSION = 1


def cache_dir(path=None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("KINEMA_CACHE")
    return Path(env) / "metrics" if env else Path.home() / ".cache" / "kinema" / "metrics"


def stats_key(content_hash: str, protocol: dict, extractor_hash: str, seed: int) -> str:
    text = json.dumps({"source": content_hash, "protocol": protocol, "extractor": extractor_hash,
                       "seed": seed, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def load_stats(folder, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays for ``key``, or None if absent or unreadable (then it is recomputed)."""
    path = cache_dir(folder) / f"real-{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None  # torn or foreign file: recompute and overwrite


def save_stats(folder, key: str, arrays: dict[str, np.ndarray]) -> Path:
    path = cache_dir(folder) / f"real-{key}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path
