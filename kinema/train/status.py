"""``OUT/status.json``: what a training run is doing, for anything that watches a run folder.

    {"state": "running", "pid": 1234, "started": 1700000000.0, "updated": ...}
    {"state": "finished" | "stopped", "stopped_by": "kimg" | "time" | "signal", "kimg": 1.024, ...}
    {"state": "diverged", "message": "loss G is nan at ..."}     # NaN/Inf: nothing saved from that state
    {"state": "failed", "message": "..."}                         # any other error

Written atomically by rank 0 around ``kinema.train.train``. ``read_status`` turns a "running"
record whose process is gone (killed, machine restarted) into "interrupted".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kinema.fsutil import atomic_write_text

STATUS_FILE = "status.json"


def write_status(out, state: str, **info) -> None:
    record = {"state": state, "pid": os.getpid(), "updated": round(time.time(), 3), **info}
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / STATUS_FILE, json.dumps(record, sort_keys=True) + "\n")
    except OSError:
        pass  # a status file is a courtesy to watchers; never fail a run over it


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def read_status(out) -> dict | None:
    """The run's status record, or None when the folder has none (runs of older versions)."""
    try:
        record = json.loads((Path(out) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("state") == "running" and not _alive(record.get("pid")):
        record["state"] = "interrupted"
    return record
