"""Reading run folders for the studio: summaries, config, ``log.jsonl`` curves, samples, eval results.

Everything here only reads files that training (``kinema.train``) and ``kinema eval --out`` write;
a run is any folder under RUNS_DIR holding a ``config.json`` or an ``export-*.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from kinema.studio.paths import relative_to_root
from kinema.train.checkpoint import list_exports, list_states, tag_nimg
from kinema.train.status import read_status

SAMPLE_RE = re.compile(r"^samples-(\d{10}|\d+k)\.png$")   # tags as in kinema.train.checkpoint
MAX_POINTS = 2000          # curves are thinned to at most this many records


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_run(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "config.json").is_file() or bool(list_exports(folder)))


def _inside(root: Path, path: Path) -> bool:
    return Path(os.path.realpath(root)) in Path(os.path.realpath(path)).parents


def find_runs(root: Path, depth: int = 2) -> list[Path]:
    """Run folders under ``root`` (children and grandchildren), hidden folders and symlinks that
    lead out of ``root`` skipped."""
    found, frontier = [], [root]
    for _ in range(depth):
        nxt = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith(".") and _inside(root, p))
            except OSError:
                continue
            for child in children:
                (found if is_run(child) else nxt).append(child)
        frontier = nxt
    return found


def read_jsonl(path: Path) -> list[dict]:
    """The object records of a jsonl file (a torn last line, written while we read, is skipped)."""
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
    except OSError:
        pass
    return records


def read_log(folder: Path) -> list[dict]:
    return read_jsonl(folder / "log.jsonl")


def last_record(folder: Path, tail: int = 65536) -> dict:
    """The last complete record of ``log.jsonl``, reading only the file's tail."""
    try:
        with open(folder / "log.jsonl", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            return rec
    return {}


def curves(folder: Path) -> dict:
    """``{"kimg": [...], "series": {name: [value or None, ...]}}`` for every numeric key of the log."""
    records = read_log(folder)
    if len(records) > MAX_POINTS:
        step = math.ceil(len(records) / MAX_POINTS)
        records = records[::step] + ([records[-1]] if (len(records) - 1) % step else [])
    names = sorted({k for r in records for k, v in r.items()
                    if k not in ("kimg", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    series = {n: [(float(r[n]) if isinstance(r.get(n), (int, float)) and math.isfinite(r[n]) else None)
                  for r in records] for n in names}
    return {"kimg": [r.get("kimg") for r in records], "series": series}


def eval_results(folder: Path) -> list[dict]:
    """``kinema eval --out`` records kept in the run folder (any ``*.jsonl`` but the training log)."""
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        if path.name == "log.jsonl":
            continue
        for rec in read_jsonl(path):
            if isinstance(rec.get("metric"), str) and isinstance(rec.get("value"), (int, float)):
                fake = rec.get("fake") or {}
                out.append({"file": path.name, "metric": rec["metric"], "value": rec["value"], "std": rec.get("std"),
                            "kimg": fake.get("kimg"), "extractor": (rec.get("extractor") or {}).get("name"),
                            "comparable": (rec.get("extractor") or {}).get("comparable"), "time": rec.get("time")})
    return out


def state_of(folder: Path) -> dict:
    """running / finished / stopped / diverged / failed / interrupted (from ``status.json``), else
    finished (a final export) or incomplete."""
    status = read_status(folder)
    if status is not None:
        state = status["state"]
        return {"state": state, "detail": status.get("message") or status.get("stopped_by"),
                "kimg": status.get("kimg")}
    exports = list_exports(folder)
    final = exports and ((_json(exports[-1][1].with_suffix(".json")) or {}).get("meta") or {}).get("final")
    return {"state": "finished" if final else "incomplete", "detail": None, "kimg": None}


def summary(root: Path, folder: Path) -> dict:
    config = _json(folder / "config.json") or {}
    exports = list_exports(folder)
    last = [last_record(folder)]
    export_cfg = _json(exports[-1][1].with_suffix(".json")) if exports else None
    model = ((config.get("model") or {}).get("name")) or (export_cfg or {}).get("name")
    data = (config.get("data") or {}).get("source") or ((export_cfg or {}).get("meta") or {}).get("source")
    kimg = last[0].get("kimg")
    if kimg is None and export_cfg:
        kimg = (export_cfg.get("meta") or {}).get("kimg")
    metrics = {k: v for k, v in last[0].items() if k.startswith(("loss/", "diversity", "motion/motion_distance"))}
    return {"name": relative_to_root(root, folder), "model": model, "data": data, "kimg": kimg,
            "metrics": metrics, "state": state_of(folder), "exports": [relative_to_root(root, p) for _, p in exports],
            "states": len(list_states(folder)), "mtime": folder.stat().st_mtime}


def details(root: Path, folder: Path) -> dict:
    info = summary(root, folder)
    samples = []
    for p in (folder / "samples").glob("samples-*.png"):
        m = SAMPLE_RE.match(p.name)
        if m:
            mp4 = p.with_suffix(".mp4")
            samples.append({"kimg": tag_nimg(m.group(1)) / 1000, "png": relative_to_root(root, p),
                            "mp4": relative_to_root(root, mp4) if mp4.is_file() else None})
    samples.sort(key=lambda s: s["kimg"])
    info.update(config=_json(folder / "config.json"), samples=samples, evals=eval_results(folder),
                status=read_status(folder))
    return info


def list_export_files(root: Path) -> list[str]:
    """Every export under ``root`` (runs' exports and loose ones), in name order (within a run:
    training order), hidden folders and files whose links lead out of ``root`` skipped."""
    out = []
    for weights in sorted(root.rglob("*.safetensors")):
        rel = weights.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        sidecar = weights.with_suffix(".json")
        if sidecar.is_file() and _inside(root, weights) and _inside(root, sidecar):
            out.append(rel.as_posix())
    return out
