"""Seed lists: ``"0-63,70,80-82"`` -> ``[0, 1, ..., 63, 70, 80, 81, 82]``.

One seed names one video (see :mod:`kinema.sample.generate`), so a list of seeds is the
reproducible address of a set of videos.
"""

from __future__ import annotations

from kinema.errors import KinemaError

# torch.Generator.manual_seed accepts any 64-bit value; keep seeds non-negative and printable.
MAX_SEED = 2 ** 63 - 1
MAX_COUNT = 1_000_000


def parse_seeds(spec: str | int | list[int] | range) -> list[int]:
    """Parse ``"a-b,c,d-e"`` (ranges inclusive), an int, or a list of ints into a list of seeds.

    Order is kept and duplicates are allowed (the same video twice). Raises ``KinemaError`` for
    empty parts, negative numbers, reversed ranges and lists longer than a million.
    """
    if isinstance(spec, bool):
        raise KinemaError(f"seeds: expected numbers, got {spec!r}")
    if isinstance(spec, int):
        seeds = [spec]
    elif isinstance(spec, (list, tuple, range)):
        seeds = [int(s) for s in spec]
    elif isinstance(spec, str):
        seeds = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                raise KinemaError(f"seeds: empty item in {spec!r}")
            lo, dash, hi = part.partition("-")
            try:
                a = int(lo)
                b = int(hi) if dash else a
            except ValueError:
                raise KinemaError(f"seeds: {part!r} is not a number or range like 0-63 (in {spec!r})") from None
            if b < a:
                raise KinemaError(f"seeds: range {part!r} ends before it starts")
            if len(seeds) + (b - a + 1) > MAX_COUNT:
                raise KinemaError(f"seeds: {spec!r} asks for more than {MAX_COUNT} videos")
            seeds.extend(range(a, b + 1))
    else:
        raise KinemaError(f"seeds: cannot read {spec!r}")
    if not seeds:
        raise KinemaError("seeds: no seed given")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise KinemaError(f"seeds: {bad[0]} is outside 0..2^63-1")
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """The inverse of :func:`parse_seeds` for sorted runs: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)
