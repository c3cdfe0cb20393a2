"""What a run reports while it trains: a progress bar, scalars (jsonl + TensorBoard), sample grids.

Only rank 0 logs; on other ranks every method is a no-op, so the loop calls them unconditionally.

Scalars are accumulated as detached tensors and turned into numbers only at a log tick, so the
hot loop never waits for the device (one host sync per tick, not per step).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from kinema import dist


class Stats:
    """Running means of named scalar tensors between two log ticks (reduced across ranks)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value) -> None:
        value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + 1

    def collect(self) -> dict[str, float]:
        """Means since the last call, averaged over ranks; resets the accumulators."""
        if not self.sums:
            return {}
        names = sorted(self.sums)  # the same order on every rank
        means = torch.stack([self.sums[n].cpu() / self.counts[n] for n in names])
        means = dist.all_reduce_mean(means)
        self.sums, self.counts = {}, {}
        return {n: float(v) for n, v in zip(names, means.tolist())}


class RunLogger:
    """Progress bar + ``OUT/log.jsonl`` + ``OUT/tb/`` + ``OUT/samples/``, all from rank 0."""

    def __init__(self, out: Path, total_nimg: float, start_nimg: int, deadline: float | None,
                 tensorboard: bool = True, progress: bool = True):
        self.enabled = dist.is_main()
        self.out = Path(out)
        self.deadline = deadline
        self.bar = self.writer = None
        self.last_time, self.last_nimg = time.perf_counter(), start_nimg
        if not self.enabled:
            return
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.out / "log.jsonl", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out / "tb"))
        if progress:  # a bar on a terminal, a line every 30 s in a log; ETA capped by --minutes
            from kinema.progress import Progress

            self.bar = Progress("train", total_nimg, initial=start_nimg, unit="clips", deadline=deadline)

    def step(self, nimg: int, batch: int) -> None:
        """Advance the progress display by one global batch (clips/s and the ETA)."""
        if self.bar is not None:
            self.bar.update(batch)

    def scalars(self, nimg: int, values: dict[str, float]) -> dict[str, float]:
        """Write one jsonl record and the TensorBoard scalars at ``nimg``; returns the record."""
        if not self.enabled:
            return {}
        now = time.perf_counter()
        rate = (nimg - self.last_nimg) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_nimg = now, nimg
        record = {"kimg": round(nimg / 1000, 3), "time": round(time.time(), 3), "clips_per_s": round(rate, 2)}
        record.update({k: (round(v, 6) if math.isfinite(v) else v) for k, v in values.items()})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("kimg", "time"):
                    self.writer.add_scalar(k, v, global_step=nimg)
        if self.bar is not None:
            short = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k.startswith("loss/")}
            self.bar.note(short)
        return record

    def values(self, nimg: int, values: dict[str, float], label: str | None = None) -> None:
        """Write measurements taken at ``nimg`` (e.g. motion at a snapshot) as their own jsonl record
        and TensorBoard scalars, without touching the clips/s clock of :meth:`scalars`; with a
        ``label``, also one line of them above the progress bar."""
        if not self.enabled or not values:
            return
        if label:
            self.message(f"{label} at {nimg / 1000:.3f} kimg: "
                         + ", ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in values.items()))
        record = {"kimg": round(nimg / 1000, 3), "time": round(time.time(), 3)}
        record.update({k: (round(v, 6) if math.isfinite(v) else v) for k, v in values.items()})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, global_step=nimg)

    def samples(self, nimg: int, videos, fps: float = 8.0) -> Path | None:
        """Write a fixed-seed grid ``uint8 [B, T, H, W, C]`` as ``samples/samples-XXXXXXk.{png,mp4}``."""
        if not self.enabled:
            return None
        from kinema.io import write_grid_png, write_grid_video
        from kinema.train.checkpoint import kimg_tag

        base = self.out / "samples" / f"samples-{kimg_tag(nimg)}"
        # A state of the same kimg may be written again after a resume: replace its grid.
        write_grid_png(base.with_suffix(".png"), videos, overwrite=True)
        write_grid_video(base.with_suffix(".mp4"), videos, fps=fps, overwrite=True)
        return base

    def message(self, text: str) -> None:
        """A line above the progress bar (or plain print without one)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.jsonl.close()
