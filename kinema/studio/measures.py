"""The numbers the studio's Compare view puts side by side for two exports on the same seeds.

* motion measures (:mod:`kinema.metrics.motion`): with the export's training data at hand (a
  built-in dataset, or an archive under one of the studio's data roots) the full
  ``motion_report`` of the generated clips against real clips, flattened by ``motion.summary``
  (motion distance, speed / travel / displacement ratios, static fraction, ...); otherwise the
  generated side's generic measures alone (mean block displacement, static fraction);
* optionally one named ``kinema eval`` protocol (``kinema.metrics.evaluate``) on ``num`` samples
  with the built-in extractor, its real side taken from the same training data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError

REAL_CLIPS = 64     # real clips a motion report compares with (a seeded subset of the archive)


def real_source(source: str | None, config: dict, data_roots: list[Path]) -> str:
    """The real data of an export: its built-in dataset (prepared in kinema's cache at the export's
    clip size) or its archive, which must lie under a data root."""
    from kinema.data import resolve_source

    if not source:
        raise KinemaError("the export does not record its training data, so there is no real side to compare with")
    if source.startswith("builtin:"):
        kw = config.get("kwargs") or {}
        archive = resolve_source(source, int(kw["resolution"]), int(kw["frames"]),
                                 channels=int(kw.get("channels") or 0) or None)
        return str(archive.path)
    real = Path(os.path.realpath(source))
    if not any(r == real or r in real.parents for r in data_roots):
        raise KinemaError(f"the training data {source} is outside this studio's data roots")
    return str(real)


def real_clips(path: str, count: int = REAL_CLIPS, seed: int = 0) -> np.ndarray:
    """A seeded subset of an archive's clips, uint8 [N, T, H, W, C]."""
    from kinema.data import open_archive

    archive = open_archive(path)
    n = min(count, len(archive))
    return archive.clips(np.sort(np.random.default_rng(seed).choice(len(archive), n, replace=False)))


def motion_measures(videos: np.ndarray, config: dict, data_roots: list[Path], device: str = "cpu") -> dict:
    """``{"motion: <name>": value}`` for generated ``videos`` uint8 [B, T, H, W, C]."""
    from kinema.data.builtin import builtin_name
    from kinema.metrics import motion

    source = (config.get("meta") or {}).get("source")
    try:
        real = real_clips(real_source(source, config, data_roots))
    except KinemaError as err:
        gen = motion.generic_motion(videos)
        return {"motion: mean displacement (side/frame)": float(gen["displacement"].mean()),
                "motion: static clips (fraction)": float(gen["static"].mean()),
                "motion: vs real": f"not compared ({err})"}
    dataset = builtin_name(source) if source and source.startswith("builtin:") else None
    # "cached": identity measures only when the dataset's classifier was trained before (it takes a
    # minute the first time; `kinema eval --metric digits256` or bench/bench_demo.py trains it).
    report = motion.motion_report(videos, real, dataset=dataset, classifier="cached", device=device)
    out = {f"motion: {k}": v for k, v in motion.summary(report).items()}
    out["motion: real clips"] = f"{report['num_real']} from {source}"
    return out


def protocol_result(metric: str, export: Path, config: dict, data_roots: list[Path], num: int,
                    device: str = "cpu") -> dict:
    """``{"eval <metric> now (...)": value}`` for one protocol, run now (builtin extractor)."""
    from kinema.metrics.evaluate import evaluate
    from kinema.metrics.protocols import get_protocol

    p = get_protocol(metric)
    real = real_source((config.get("meta") or {}).get("source"), config, data_roots) if p.num_real else None
    result = evaluate([metric], real, str(export), extractor="builtin", num=num, device=device, log=None)[0]
    return {f"eval {metric} now (n={num}, builtin extractor)": result["value"]}
