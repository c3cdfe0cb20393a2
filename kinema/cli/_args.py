"""Ranges of the numeric command-line options, and argparse errors as one line.

Every ``type=int`` / ``type=float`` option of every subcommand gets a range when the parser is
built (:func:`apply_ranges`): integers must be >= 1 and reals > 0 (and finite) unless the
subcommand's module lists the option in ``RANGES = {dest: Range(...)}`` (for an ``edit`` op,
``"op.dest"`` overrides ``"dest"``). A value out of range, or not a number, is a one-line error
with exit status 2, before anything runs.
"""

from __future__ import annotations

import argparse
import math
import sys


class Range:
    """An argparse ``type``: int or float within [lo, hi] (``lo_open``: strictly above ``lo``)."""

    def __init__(self, kind=int, lo=None, hi=None, lo_open: bool = False):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = kind.__name__

    def describe(self) -> str:
        parts = []
        if self.lo == 0:
            parts.append("positive (> 0)" if self.lo_open else "not negative (>= 0)")
        elif self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        return " and ".join(parts) or "a finite number"

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if self.kind is int else 'a number'}, got {text!r}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if low or (self.hi is not None and value > self.hi):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value


POSITIVE_INT = Range(int, 1)
NONNEG_INT = Range(int, 0)
POSITIVE = Range(float, 0, lo_open=True)
NONNEG = Range(float, 0)
ANY_REAL = Range(float)
SEED = Range(int, 0, 2**63 - 1)
CRF = Range(int, 0, 63)
# Frame sides a command may produce: 8192 (8K) per side keeps one frame under 200 MB.
MAX_SIDE = 8192
SIDE = Range(int, 1, MAX_SIDE)


class Rate:
    """An argparse ``type`` for frame rates: a number or a ratio like ``30000/1001`` -> Fraction."""

    __name__ = "rate"

    def __call__(self, text: str):
        from fractions import Fraction

        try:
            value = Fraction(str(text))
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"expected a number or a ratio like 30000/1001, got {text!r}") from None
        if not 0 < value <= 1000:
            raise argparse.ArgumentTypeError(f"must be positive and at most 1000 frames per second, got {text}")
        return value


RATE = Rate()


# Options of the same name mean the same thing in every subcommand.
COMMON = {"seed": SEED, "crf": CRF, "truncation": Range(float, 0, 2)}


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (``kinema: error: CMD: ...``), exit status 2."""

    def error(self, message: str):
        message = " ".join(message.split())
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"kinema: error: {command}{message} (see {self.prog} --help)\n")


def apply_ranges(parser: argparse.ArgumentParser, ranges: dict, prefix: str = "") -> None:
    """Replace bare ``int`` / ``float`` types by their :class:`Range` (module table or default)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                apply_ranges(sub, ranges, prefix=f"{name}.")
            continue
        if action.type not in (int, float):
            continue
        spec = ranges.get(prefix + action.dest) or ranges.get(action.dest) or COMMON.get(action.dest)
        action.type = spec or (POSITIVE_INT if action.type is int else POSITIVE)


SAMPLER_RANGES = {"steps": Range(int, 1, 10000), "cfg": Range(float, 0, 100)}


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """``--steps / --cfg / --solver``: the ODE settings of flow models (the export's when not given).
    A subcommand that adds them puts :data:`SAMPLER_RANGES` in its ``RANGES``."""
    p.add_argument("--steps", type=int, default=None, help="flow models: ODE steps (default: the export's)")
    p.add_argument("--cfg", type=float, default=None, help="flow models: classifier-free guidance scale (1 = none)")
    p.add_argument("--solver", choices=["euler", "heun"], default=None, help="flow models: ODE solver")


def one_line_exit(code) -> int:
    """SystemExit code -> int (argparse's --help exits 0, errors 2)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
