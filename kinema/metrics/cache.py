"""Cache of real-data statistics, so a second evaluation against the same data skips the real pass.

Key: sha256 of (source content hash, the protocol with any overrides, the extractor's weights
sha256, the sampling seed, cache format version). Any change to the data, the protocol, the
sample count or the network gives another key, never a stale hit.

Format: a plain ``.npz`` (numpy arrays only; read with ``allow_pickle=False``, so a cache file
cannot run code), written atomically; stored: ``n``, ``mean`` [D], ``cov`` [D, D] (float64) and,
for kernel metrics, ``features`` [N, D]. Before loading, the file's size and every array's
header are checked against the extractor's dimension D and the protocol's sample count N (a
cache copied from elsewhere is read like any file from a stranger); a file that does not fit is
an error naming it, a torn one is recomputed. Folder: ``--cache-dir``, else ``$KINEMA_CACHE/metrics``,
else ``~/.cache/kinema/metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError
from kinema.fsutil import atomic_path
from kinema.untrusted import KiB, check_npz, file_size

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


def load_stats(folder, key: str, dim: int, max_rows: int) -> dict[str, np.ndarray] | None:
    """The cached arrays for ``key``, or None if absent or torn (then it is recomputed).

    ``dim``: the extractor's feature dimension D; ``max_rows``: the most feature rows the
    protocol stores. A file whose size or array shapes do not fit them raises KinemaError.
    """
    path = cache_dir(folder) / f"real-{key}.npz"
    if not path.is_file():
        return None
    limit = 8 * (dim + dim * dim + max_rows * dim) + 64 * KiB  # float64 arrays + zip/npy headers

    def shapes_ok(shapes: dict) -> str | None:
        want = {"n": (), "mean": (dim,), "cov": (dim, dim)}
        for name, shape in want.items():
            if shapes.get(name) != shape:
                return f"array {name} has shape {list(shapes.get(name, ['missing']))}, expected {list(shape)} (D = {dim})"
        extra = set(shapes) - set(want) - {"features"}
        if extra:
            return f"holds unexpected array {sorted(extra)[0][:40]!r}"
        feats = shapes.get("features")
        if feats is not None and (len(feats) != 2 or feats[1] != dim or feats[0] > max_rows):
            return f"array features has shape {list(feats)}, expected [N <= {max_rows}, {dim}]"
        return None

    try:
        file_size(path, limit, "real-statistics cache")
        if not zipfile.is_zipfile(path):
            return None  # torn file (no zip directory at its end): recompute and overwrite
        check_npz(path, shapes_ok, limit, "real-statistics cache")
    except KinemaError as err:
        raise KinemaError(f"{err}; delete it to recompute") from None
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
