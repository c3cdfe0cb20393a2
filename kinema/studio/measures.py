"""The numbers the studio's Compare view puts side by side for two exports on the same seeds.

* motion measures of the generated clips: the mean frame-to-frame change and
  ``kinema.metrics.digits.motion_accel`` (how jerky the moving content's centre is);
* optionally one named ``kinema eval`` protocol (``kinema.metrics.evaluate``) on ``num`` samples,
  its real side taken from the export's training data when that is a built-in dataset or an
  archive under one of the studio's data roots.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError


def clip_measures(videos: np.ndarray, source: str | None = None) -> dict:
    """``videos`` uint8 [B, T, H, W, C] -> {name: value} (motion measures)."""
    from kinema.metrics.digits import motion_accel

    out = {}
    if videos.shape[1] >= 2:
        diff = np.abs(np.diff(videos.astype(np.int16), axis=1))
        out["motion: mean frame change (0-1)"] = round(float(diff.mean()) / 255, 6)
    if videos.shape[1] >= 3:
        out["motion: centroid acceleration (motion_accel)"] = round(motion_accel(videos), 6)
    return out


def real_source(source: str | None, config: dict, data_roots: list[Path]) -> str:
    """The real data for a protocol: the export's built-in dataset (prepared in kinema's cache at
    the export's clip size) or its archive, which must lie under a data root."""
    from kinema.data import resolve_source

    if not source:
        raise KinemaError("compare: the export does not record its training data; no real side for the metric")
    if source.startswith("builtin:"):
        kw = config.get("kwargs") or {}
        archive = resolve_source(source, int(kw["resolution"]), int(kw["frames"]),
                                 channels=int(kw.get("channels") or 0) or None)
        return str(archive.path)
    real = Path(os.path.realpath(source))
    if not any(r == real or r in real.parents for r in data_roots):
        raise KinemaError(f"compare: the training data {source} is outside this studio's data roots")
    return str(real)


def protocol_result(metric: str, export: Path, config: dict, data_roots: list[Path], num: int,
                    device: str = "cpu") -> dict:
    """``{"eval <metric> (n=num)": value}`` for one protocol, run now (builtin extractor)."""
    from kinema.metrics.evaluate import evaluate
    from kinema.metrics.protocols import get_protocol

    p = get_protocol(metric)
    real = real_source((config.get("meta") or {}).get("source"), config, data_roots) if p.num_real else None
    result = evaluate([metric], real, str(export), extractor="builtin", num=num, device=device, log=None)[0]
    return {f"eval {metric} now (n={num}, builtin extractor)": result["value"]}
