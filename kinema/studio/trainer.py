"""One training run at a time, as a ``python -m kinema train ...`` subprocess.

The studio builds the same command line a user would type, so a run started from the page is a
plain run folder that ``kinema train --resume latest`` continues. Stopping sends SIGTERM: the
loop finishes its step, saves a training state and an export, and exits 0 - exactly what the CLI
does on Ctrl-C. The process's output goes to ``OUT/studio-train.log``; progress comes from the
run's ``log.jsonl`` and ``status.json``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kinema.errors import KinemaError

LOG_NAME = "studio-train.log"


class Busy(KinemaError):
    """A training run is already in progress in this studio."""


class Trainer:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.out: Path | None = None
        self.name: str | None = None
        self.cmd: list[str] = []
        self.started: float | None = None
        self.stop_requested = False
        self._lock = threading.Lock()
        self._log = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, name: str, out: Path, args: list[str]) -> None:
        with self._lock:
            if self.running():
                raise Busy(f"a training run is already in progress ({self.name}); stop it or wait until it ends "
                           "(one training run at a time per studio)")
            out.mkdir(parents=True, exist_ok=True)
            if self._log is not None:
                self._log.close()
            self._log = open(out / LOG_NAME, "ab")
            self.cmd = [sys.executable, "-m", "kinema", "train", *args, "--out", str(out)]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
            self.out, self.name, self.started, self.stop_requested = out, name, time.time(), False

    def stop(self) -> None:
        with self._lock:
            if not self.running():
                raise KinemaError("no training run is in progress")
            self.stop_requested = True
            self.proc.send_signal(signal.SIGTERM)

    def close(self, timeout: float = 120.0) -> None:
        """Stop a running training cleanly (it saves) and wait for it."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30, max_bytes: int = 16384) -> list[str]:
        if self.out is None:
            return []
        try:
            with open(self.out / LOG_NAME, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        # tqdm redraws with carriage returns: keep the last state of each line.
        parts = [seg.split("\r")[-1] for seg in text.split("\n")]
        return [p for p in parts if p.strip()][-lines:]

    def describe(self) -> dict:
        if self.proc is None:
            return {"active": False}
        code = self.proc.poll()
        return {"active": code is None, "name": self.name, "pid": self.proc.pid, "returncode": code,
                "stop_requested": self.stop_requested, "started": self.started,
                "command": " ".join(self.cmd[1:]), "log": self.log_tail()}
