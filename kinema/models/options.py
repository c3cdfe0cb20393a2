"""Bounds of every model option, declared once next to each model's ``build``.

    @bounded("dcgan", resolution=Choice(32, 64, 128, 256), width=Int(1, 1024), ...)
    def build(*, resolution=32, width=32, ...): ...

``bounded`` checks every keyword's type and range before ``build`` runs (a one-line
KinemaError naming the model and option otherwise), and records the schema as
``build.options`` for the registry: :func:`kinema.models.check_options` validates options read
from a file (an export's sidecar, a training config) without building anything. Every keyword
of ``build`` must have a declared bound; a new model only declares its bounds here.
Relations between options (``attention_res`` below the resolution, ...) stay in ``build``.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any

from kinema.errors import KinemaError


@dataclass(frozen=True)
class Int:
    """A whole number in lo..hi (JSON true/false are not numbers); ``optional``: None allowed."""
    lo: int
    hi: int
    optional: bool = False

    def problem(self, value) -> str | None:
        if value is None and self.optional:
            return None
        if type(value) is not int or not self.lo <= value <= self.hi:
            return f"must be a whole number in {self.lo}..{self.hi}" + (" or null" if self.optional else "")
        return None


@dataclass(frozen=True)
class Float:
    """A finite number in [lo, hi]."""
    lo: float
    hi: float

    def problem(self, value) -> str | None:
        if type(value) not in (int, float) or not math.isfinite(value) or not self.lo <= value <= self.hi:
            return f"must be a number in [{self.lo:g}, {self.hi:g}]"
        return None


@dataclass(frozen=True)
class Bool:
    def problem(self, value) -> str | None:
        return None if type(value) is bool else "must be true or false"


class Choice:
    """One of the listed values, of the same type (32.0 is not the resolution 32)."""

    def __init__(self, *values, optional: bool = False):
        self.values, self.optional = values, optional

    def problem(self, value) -> str | None:
        if value is None and self.optional:
            return None
        if any(type(value) is type(v) and value == v for v in self.values):
            return None
        return f"must be one of {', '.join(map(repr, self.values))}" + (" or null" if self.optional else "")

    def __repr__(self) -> str:
        return f"Choice{self.values!r}"


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(model: str, schema: dict, kwargs: dict) -> None:
    """Raise a one-line KinemaError for the first option of ``kwargs`` outside ``schema``."""
    unknown = sorted(k for k in kwargs if k not in schema)
    if unknown:
        raise KinemaError(f"model {model}: unknown option(s) {', '.join(map(str, unknown))}; known: {', '.join(schema)}")
    for key, value in kwargs.items():
        problem = schema[key].problem(value)
        if problem:
            raise KinemaError(f"model {model}: option {key} {problem}, got {describe(value)}")


def bounded(model: str, **schema):
    """Decorator for a model's ``build``: validate keywords against ``schema`` before building."""

    def wrap(build):
        params = inspect.signature(build).parameters
        undeclared = [p for p in params if p not in schema]
        if undeclared:  # a programming error in the model file: every option needs a bound
            raise TypeError(f"model {model}: no bounds declared for option(s) {', '.join(undeclared)}")

        @functools.wraps(build)
        def checked(**kwargs: Any):
            check(model, schema, kwargs)
            return build(**kwargs)

        checked.options = schema
        return checked

    return wrap
