"""Run named protocols: features of real and fake clips -> FVD / KVD / FID / KID / IS.

``evaluate(metrics, real, fake, ...)`` returns one result dict per protocol, appends each as a
line to ``out`` (jsonl) and prints a table. A result records the value, the whole protocol (and
any ``--num`` override), the extractor (name, file, sha256, preprocessing, whether numbers are
comparable to published ones), both sources (kind, path, content hash, counts, seeds), whether the
real statistics came from the cache, and the kinema version. Same inputs, same device -> the same
number: sampling is seeded, batches are fixed, accumulation is float64.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from kinema import __version__
from kinema.errors import KinemaError
from kinema.fsutil import atomic_write_text
from kinema.metrics import cache
from kinema.metrics.builtin import WARNING, BuiltinExtractor
from kinema.metrics.frechet import FeatureStats, frechet_distance
from kinema.metrics.inception_score import inception_score
from kinema.metrics.mmd import kernel_distance
from kinema.metrics.protocols import Protocol, get_protocol
from kinema.metrics.sources import open_source
from kinema import dist

EXTRACTORS = ("builtin", "i3d", "inception")


def load_extractor(name: str, unit: str, weights=None, device: str = "cpu"):
    """-> (module mapping uint8 [B, T, H, W, C] to float64 [B, D], info dict for the result)."""
    from kinema.metrics import weights as w

    if name == "builtin":
        ext = BuiltinExtractor().to(device)
        return ext, {"name": "builtin", "file": None, "sha256": ext.weights_hash(), "comparable": False,
                     "description": ext.description, "warning": WARNING}
    want = {"clip": "i3d", "frame": "inception"}[unit]
    if name != want:
        raise KinemaError(f"--extractor {name}: {'video (clip)' if unit == 'clip' else 'frame'} protocols "
                          f"need --extractor {want} or builtin")
    ext, path, sha = w.load_video_extractor(weights, device) if unit == "clip" else w.load_frame_extractor(weights, device)
    return ext, {"name": name, "file": str(path), "sha256": sha, "comparable": True, "description": ext.description}


def features_of(extractor, batches, device: str = "cpu") -> np.ndarray:
    """uint8 batches [B, T, H, W, C] -> float64 features [N, D].

    Under torchrun batch ``j`` is extracted by rank ``j % world`` (``None`` batches are another
    rank's, see ``sources``) and the features are gathered in batch order: every rank returns the
    array one process computes, batch for batch the same extractor calls, so the same numbers.
    """
    world, rank = dist.world_size(), dist.rank()
    mine = {j: extractor(torch.from_numpy(np.ascontiguousarray(b)).to(device)).cpu().numpy()
            for j, b in enumerate(batches) if b is not None and j % world == rank}
    parts = {}
    for d in dist.all_gather_object(mine):    # [{batch index: features}] per rank
        parts.update(d)
    return np.concatenate([parts[j] for j in sorted(parts)]).astype(np.float64)


def class_probs(extractor, features: np.ndarray) -> np.ndarray:
    """Class probabilities for the Inception Score from a video extractor's features."""
    if isinstance(extractor, BuiltinExtractor):
        return extractor.probs(torch.from_numpy(features)).numpy()
    return torch.softmax(torch.from_numpy(features), 1).numpy()  # I3D: features are the 400 logits


def _real_stats(p: Protocol, real, ext, ext_info, seed, batch_size, cache_dir, device, log) -> tuple[dict, bool]:
    key = cache.stats_key(real.content_hash, p.to_dict(), ext_info["sha256"], seed)
    hit = cache.load_stats(cache_dir, key, ext.dim, p.num_real)
    if not all(dist.all_gather_object(hit is not None)):  # ranks agree: a real pass is collective
        hit = None
    if hit is not None:
        log(f"{p.name}: cache hit: real statistics of {real.path} ({int(hit['n'])} samples)")
        return hit, True
    log(f"{p.name}: real pass over {real.path} ({p.num_real} {'frames' if p.unit == 'frame' else 'clips'})")
    feats = features_of(ext, real.clips(p, p.num_real, seed, batch_size, shard=True), device)
    stats = FeatureStats(feats.shape[1])
    stats.update(feats)
    mean, cov = stats.mean_cov(p.cov_ddof)
    arrays = {"n": np.array(stats.n), "mean": mean, "cov": cov}
    if p.metric in ("kvd", "kid"):
        arrays["features"] = feats
    if dist.is_main():
        cache.save_stats(cache_dir, key, arrays)
    return arrays, False


BUILTIN_OF = {"digits": "moving_digits", "shapes": "bouncing_shapes"}  # classifier score -> its dataset


def _check_builtin_match(p: Protocol, fake) -> None:
    """A classifier score only means something for a model of its own dataset: refuse an export
    whose recorded training source is another dataset (a digits model scored as shapes, ...)."""
    want = BUILTIN_OF[p.metric]
    if fake.kind != "export":
        return
    source = str(fake.config.get("meta", {}).get("source") or "")
    if not source:
        return  # an export that does not record its data: nothing to compare
    from kinema.metrics.motion import builtin_dataset_of

    name = builtin_dataset_of(source)
    if name != want:
        raise KinemaError(f"{fake.path}: --metric {p.name} scores models of builtin:{want}, but this model was "
                          f"trained on {source}; use {'shapes256' if want == 'moving_digits' else 'digits256'} "
                          "for the other built-in dataset, or fvd*/fid* for your own data")


def _run_motion(p: Protocol, real, fake, ext_info: dict, seed: int, batch_size: int, device, log, t0) -> dict:
    """Motion measures (kinema.metrics.motion) of fake vs real clips; object measures when the real
    archive (or else the export's training data) is a built-in single-object dataset."""
    from kinema.metrics.motion import builtin_dataset_of, motion_report, summary

    dataset = builtin_dataset_of(real.path) if real.kind == "archive" else None
    if dataset is None and fake.kind == "export":
        dataset = builtin_dataset_of(str(fake.config.get("meta", {}).get("source") or ""))
    log(f"{p.name}: {p.num_real} real clips from {real.path}, {p.num_fake} generated from {fake.path}"
        + (f" (object measures for {dataset})" if dataset else ""))
    real_clips = np.concatenate(list(real.clips(p, p.num_real, seed, batch_size)))
    fake_clips = np.concatenate(list(fake.clips(p, p.num_fake, seed, batch_size)))
    report = motion_report(fake_clips, real_clips, dataset, device=device)
    result = {
        "metric": p.name, "value": report["generic"]["motion_distance"], "std": None, "protocol": p.to_dict(),
        "extractor": ext_info, "real": {**real.describe(), "count": len(real_clips), "seed": seed},
        "fake": {**fake.describe(), "count": len(fake_clips), "seed": seed, "seeds": None},
        "cache": None, "kinema_version": __version__, "device": str(device), "seconds": round(time.time() - t0, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scores": {**summary(report), "report": report},
    }
    if fake.kind == "export":
        result["fake"]["seeds"] = f"{seed}..{seed + p.num_fake - 1}"
    return result


def run_protocol(p: Protocol, real, fake, ext, ext_info: dict, seed: int = 0, batch_size: int = 16,
                 cache_dir=None, device: str = "cpu", log=print) -> dict:
    """One protocol -> result dict (without writing it anywhere)."""
    log = log or (lambda *_: None)
    t0 = time.time()
    real_stats, hit = (None, False)
    if p.num_real and real is None:
        raise KinemaError(f"{p.name}: needs --real")
    if p.metric == "motion":  # real clips themselves, not features
        return _run_motion(p, real, fake, ext_info, seed, batch_size, device, log, t0)
    if p.num_real:
        real_stats, hit = _real_stats(p, real, ext, ext_info, seed, batch_size, cache_dir, device, log)
    log(f"{p.name}: fake pass over {fake.path} ({p.num_fake} {'frames' if p.unit == 'frame' else 'clips'})")
    # Classifier scores take all clips at once (every rank computes them); features are sharded.
    batches = fake.clips(p, p.num_fake, seed, batch_size, shard=p.metric not in ("digits", "shapes"))
    std, scores = None, None
    if p.metric in ("digits", "shapes"):  # classifier scores (a dict, see kinema.metrics.digits)
        from kinema.metrics.digits import score_digits, score_shapes

        _check_builtin_match(p, fake)
        labels = None
        if fake.kind == "export" and getattr(fake.G, "num_classes", 0):  # video i asked for (seed + i) % K
            labels = np.arange(seed, seed + p.num_fake) % fake.G.num_classes
        score = score_digits if p.metric == "digits" else score_shapes
        scores = score(np.concatenate(list(batches)), device=device, labels=labels)
        value, fake_count = scores["recognised_frac"], scores["num_clips"]
    else:
        fake_feats = features_of(ext, batches, device)
        fake_count = int(fake_feats.shape[0])
        if p.metric in ("fvd", "fid"):
            fstats = FeatureStats(fake_feats.shape[1])
            fstats.update(fake_feats)
            value = frechet_distance(real_stats["mean"], real_stats["cov"], *fstats.mean_cov(p.cov_ddof))
        elif p.metric in ("kvd", "kid"):
            value, std = kernel_distance(real_stats["features"], fake_feats, p.kid_subsets, p.kid_subset_size, seed)
        elif p.metric == "is":
            value, std = inception_score(class_probs(ext, fake_feats), p.is_splits)
        else:
            raise KinemaError(f"{p.name}: unknown metric {p.metric!r}")
    result = {
        "metric": p.name, "value": value, "std": std, "protocol": p.to_dict(),
        "extractor": ext_info,
        "real": None if real_stats is None else {**real.describe(), "count": int(real_stats["n"]), "seed": seed},
        "fake": {**fake.describe(), "count": fake_count, "seed": seed, "seeds": None},
        "cache": "hit" if hit else ("miss" if p.num_real else None),
        "kinema_version": __version__, "device": str(device), "seconds": round(time.time() - t0, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if fake.kind == "export":  # one video per seed; frame protocols use every frame of ceil(N / T) videos
        videos = math.ceil(p.num_fake / (p.frames or fake.G.frames)) if p.unit == "frame" else p.num_fake
        result["fake"]["seeds"] = f"{seed}..{seed + videos - 1}"
    if scores:
        result["scores"] = scores
    elif not ext_info["comparable"]:
        result["warning"] = WARNING
    return result


def _existing_jsonl(path) -> str:
    """The text of an existing results file ("" if none); KinemaError for a folder or a non-text file."""
    path = Path(path)
    if not path.exists():
        return ""
    if not path.is_file():
        raise KinemaError(f"{path}: --out must be a jsonl file, not a folder")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise KinemaError(f"{path}: --out is not a jsonl text file (not UTF-8); refusing to append to it") from None


def append_jsonl(path, records: list[dict]) -> None:
    """Append records to a jsonl file, atomically (old lines + new lines written as a whole)."""
    path = Path(path)
    old = _existing_jsonl(path)
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _fmt(v: float) -> str:
    # Fixed decimals for the usual magnitudes; scientific for tiny ones (KVD with the built-in net).
    return f"{v:.4f}" if v == 0 or abs(v) >= 0.01 else f"{v:.4e}"


def format_table(results: list[dict]) -> str:
    rows = [("metric", "value", "std", "real", "fake", "extractor", "cache")]
    for r in results:
        rows.append((r["metric"], _fmt(r["value"]), "" if r["std"] is None else _fmt(r["std"]),
                     str(r["real"]["count"]) if r["real"] else "-", str(r["fake"]["count"]),
                     r["extractor"]["name"] + ("" if r["extractor"]["comparable"] else " (not comparable)"),
                     r["cache"] or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for r in results:  # classifier and motion scores carry more than one number
        if r.get("scores") and "report" in r["scores"]:
            s = r["scores"]
            lines.append(f"{r['metric']}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s.items() if k != "report"))
        elif r.get("scores"):
            s = r["scores"]
            lines.append(f"{r['metric']}: recognised {s['recognised_frac']:.4f}, consistent {s['consistent_frac']:.4f}, "
                         f"classifier held-out accuracy {s['classifier_accuracy']:.4f}, clips per class {s['histogram']}"
                         + (f", label match {s['label_match_frac']:.4f}" if "label_match_frac" in s else "")
                         + (f", motion_accel {s['motion_accel']:.5f}" if "motion_accel" in s else ""))
    return "\n".join(lines)


def evaluate(metrics: list[str], real, fake, extractor: str = "builtin", weights=None, out=None,
             num: int | None = None, seed: int = 0, batch_size: int = 16, cache_dir=None,
             device: str = "cpu", log=print, sampler: dict | None = None) -> list[dict]:
    """Evaluate each named protocol in ``metrics``; real/fake are paths (see ``sources.open_source``).

    ``sampler``: ``{"steps", "cfg", "solver"}`` for a flow model's export (``None`` values keep the
    export's settings); the settings used are recorded in each result's ``fake.sampler``.

    Under torchrun (``kinema.dist.init`` called) extraction is sharded over ranks, every rank
    returns the same results, and only rank 0 logs and appends to ``out``.
    """
    quiet = log is None or not dist.is_main()
    log = log if not quiet else (lambda *_: None)
    if extractor not in EXTRACTORS:
        raise KinemaError(f"--extractor {extractor}: unknown; choose from {', '.join(EXTRACTORS)}")
    protocols = [get_protocol(m).with_num(num) for m in metrics]
    if out is not None:
        _existing_jsonl(out)  # a bad --out fails before any work
    fake_src = open_source(fake, "fake", device)
    if sampler and any(v is not None for v in sampler.values()):  # before a built-in real set is prepared
        if fake_src.kind != "export":
            raise KinemaError(f"{fake}: --steps, --cfg and --solver sample a flow model's export; --fake is a folder "
                              "of videos")
        fake_src.set_sampler(**sampler)
    real_src = open_source(real, "real", device, like=fake_src) if real is not None else None
    extractors, results = {}, []
    for p in protocols:
        if p.metric in ("digits", "shapes"):  # its own classifier, no feature extractor
            ext, info = None, {"name": f"kinema {p.metric} classifier", "file": None, "sha256": None,
                               "comparable": True, "description": "kinema.metrics.digits (trained on built-in data)"}
        elif p.metric == "motion":  # centroids, block matching and the dataset's classifier
            ext, info = None, {"name": "kinema motion", "file": None, "sha256": None, "comparable": True,
                               "description": "kinema.metrics.motion (no feature network)"}
        else:
            if p.unit not in extractors:
                extractors[p.unit] = load_extractor(extractor, p.unit, weights, device)
            ext, info = extractors[p.unit]
        r = run_protocol(p, real_src, fake_src, ext, info, seed, batch_size, cache_dir, device, log)
        if num is not None:
            r["overrides"] = {"num": num}
        results.append(r)
    if out is not None and dist.is_main():
        append_jsonl(out, results)
    if not quiet:
        log(format_table(results))
        if any(not r["extractor"]["comparable"] for r in results):
            log(f"note: {WARNING}")
    return results
