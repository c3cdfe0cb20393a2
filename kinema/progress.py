"""One progress display for long commands (train, demo, prepare).

On a terminal: a tqdm bar redrawn in place. Anywhere else (a log file, a pipe, a CI job): one
plain line every ``interval`` seconds and one at the end, never carriage-return redraws. The
remaining time is the smaller of what the rate predicts for the rest of ``total`` and what is
left of a wall-clock ``deadline`` (``time.monotonic()``), so a run stopped by ``--minutes``
shows when it will really end.
"""

from __future__ import annotations

import math
import sys
import time

INTERVAL_S = 30.0  # seconds between lines when the output is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _count(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


class Progress:
    """``update(n)`` / ``set(done, total)`` / ``note(dict)`` / ``close()``; nothing at all when
    ``enabled`` is false."""

    def __init__(self, desc: str, total: float | None = None, initial: float = 0, unit: str = "it",
                 deadline: float | None = None, enabled: bool = True, stream=None, interval: float = INTERVAL_S,
                 tty: bool | None = None):
        self.desc, self.unit, self.deadline, self.interval = desc, unit, deadline, interval
        self.total = None if total is None or math.isinf(total) else total
        self.n = self.start = initial
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = self.last = time.monotonic()
        self.extra: dict[str, str] = {}
        self.bar = None
        tty = self.stream.isatty() if tty is None and hasattr(self.stream, "isatty") else bool(tty)
        if enabled and tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, unit=unit, unit_scale=True, dynamic_ncols=True,
                            smoothing=0.1, desc=desc, file=self.stream,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]")

    def rate(self) -> float:
        return (self.n - self.start) / max(time.monotonic() - self.t0, 1e-9)

    def remaining(self) -> float | None:
        """Seconds left: the rate's prediction for the rest of ``total``, capped by the deadline."""
        left = []
        rate = self.rate()
        if self.total is not None and rate > 0:
            left.append((self.total - self.n) / rate)
        if self.deadline is not None:
            left.append(self.deadline - time.monotonic())
        return max(0.0, min(left)) if left else None

    def _postfix(self) -> dict:
        eta = self.remaining()
        return {**self.extra, **({"eta": _clock(eta)} if eta is not None else {})}

    def line(self) -> str:
        total = f"/{_count(self.total)}" if self.total is not None else ""
        pct = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
        parts = [f"{_count(self.n)}{total} {self.unit}{pct}", f"{self.rate():.3g} {self.unit}/s",
                 f"elapsed {_clock(time.monotonic() - self.t0)}"]
        parts += [f"{k} {v}" for k, v in self._postfix().items()]
        return f"{self.desc}: " + ", ".join(parts)

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(), refresh=False)
            return
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        self._show()

    def set(self, done: float, total: float | None = None) -> None:
        if total is not None:
            self.total = total
            if self.bar is not None:
                self.bar.total = total
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
        self.n = done
        self._show()

    def note(self, values: dict) -> None:
        """Extra fields shown after the rate (losses, ...)."""
        self.extra = {str(k): str(v) for k, v in values.items()}

    def write(self, text: str) -> None:
        """A message line that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            self._show(force=True)
        self.enabled = False
