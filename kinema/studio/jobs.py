"""The compute queue: one job (generate, interpolate, compare, edit) runs at a time, in order.

Requests are checked and turned into jobs at once; a single worker thread takes them first in,
first out, so one studio never runs two models at the same time on the same cores or GPU. A
waiting job reports its position (1 = next). Each job writes its outputs into its own folder
under ``RUNS_DIR/.studio/jobs/``; only the newest ``keep`` finished jobs are kept, so disk use
is bounded, and nothing a job produces stays in memory after it finishes.
"""

from __future__ import annotations

import collections
import itertools
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kinema.errors import KinemaError


class QueueFull(KinemaError):
    """More jobs are waiting than the studio accepts."""


class JobNotFound(KinemaError):
    """No job of that id (never made, or its results were pruned)."""


@dataclass
class Job:
    id: str
    seq: int
    kind: str
    summary: str
    folder: Path
    run: Callable = field(repr=False)          # run(job) -> result dict (JSON-able)
    state: str = "queued"                      # queued | running | done | error
    error: str | None = None
    result: dict | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None


class JobQueue:
    """FIFO of jobs with one worker thread (``start``/``close``)."""

    def __init__(self, folder: Path, max_pending: int = 32, keep: int = 64, log=None):
        self.folder = Path(folder)
        self.max_pending, self.keep = int(max_pending), int(keep)
        self.log = log or (lambda *_: None)
        self.jobs: dict[str, Job] = {}
        self.pending: collections.deque[Job] = collections.deque()
        self.started_order: list[str] = []         # ids in the order the worker took them
        self.current: Job | None = None
        self._counter = itertools.count(1)
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.folder.exists():     # outputs of an earlier session are not listed any more
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._work, name="kinema-studio-jobs", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            for job in self.pending:
                job.state, job.error = "error", "the studio is shutting down"
            self.pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, kind: str, summary: str, run: Callable) -> Job:
        with self._cond:
            if self._closing:
                raise KinemaError("the studio is shutting down")
            if len(self.pending) >= self.max_pending:
                raise QueueFull(f"queue full: {len(self.pending)} jobs are waiting (limit {self.max_pending}); "
                                "try again when some have finished")
            seq = next(self._counter)
            job = Job(id=f"{seq:06d}", seq=seq, kind=kind, summary=summary, folder=self.folder / f"{seq:06d}", run=run)
            self.jobs[job.id] = job
            self.pending.append(job)
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(str(job_id))
        if job is None:
            raise JobNotFound(f"job {job_id}: unknown or expired (only the newest {self.keep} results are kept)")
        return job

    def position(self, job: Job) -> int:
        """0 while running or finished, else 1 + the number of jobs ahead of it."""
        with self._cond:
            if job.state != "queued":
                return 0
            for i, other in enumerate(self.pending):
                if other is job:
                    return i + 1
        return 0

    def describe(self, job: Job) -> dict:
        return {"id": job.id, "kind": job.kind, "summary": job.summary, "state": job.state,
                "position": self.position(job), "error": job.error, "result": job.result,
                "queued_s": round((job.started or time.time()) - job.created, 3),
                "run_s": round(job.finished - job.started, 3) if job.finished and job.started else None}

    def snapshot(self) -> dict:
        with self._cond:
            return {"running": self.current.id if self.current else None,
                    "waiting": [j.id for j in self.pending], "limit": self.max_pending}

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self.pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self.pending.popleft()
                job.state, job.started = "running", time.time()
                self.current = job
                self.started_order.append(job.id)
            try:
                job.folder.mkdir(parents=True, exist_ok=True)
                result = job.run(job)
                job.result, job.state = result, "done"
            except KinemaError as err:
                job.error, job.state = str(err), "error"
            except Exception as err:  # a bug: keep the studio alive, say what happened
                self.log(traceback.format_exc())
                job.error, job.state = f"internal error: {type(err).__name__}: {err}", "error"
            finally:
                job.finished = time.time()
                with self._cond:
                    self.current = None
                self._prune()

    def _prune(self) -> None:
        with self._cond:
            done = [j for j in self.jobs.values() if j.state in ("done", "error")]
            for job in sorted(done, key=lambda j: j.seq)[:max(0, len(done) - self.keep)]:
                self.jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)
