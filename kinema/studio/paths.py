"""Confinement: every path the studio reads or writes lies inside RUNS_DIR or a configured data root.

A path from a request is always *relative* to a root. It is refused when it is absolute, names
a parent (``..``), holds a NUL or backslash, or - once symlinks are followed - lands outside the
root (a link pointing out of the tree). Refusals are ``PathRefused``, a ``KinemaError`` whose
one-line message the page shows.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from kinema.errors import KinemaError


class PathRefused(KinemaError):
    """A request named a path outside the studio's roots."""


def confine(root: str | os.PathLike, rel: str, what: str = "path") -> Path:
    """``root/rel`` with symlinks resolved, or ``PathRefused`` when it would leave ``root``.

    The returned path need not exist (the caller reports a missing file in its own words).
    """
    text = str(rel or "").strip()
    if not text:
        raise KinemaError(f"{what}: empty path")
    if "\x00" in text or "\\" in text:
        raise PathRefused(f"{what} {text!r}: refused (backslashes and NUL bytes are not allowed)")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("~"):
        raise PathRefused(f"{what} {text!r}: refused (absolute paths are not allowed; give a path inside the root)")
    if ".." in pure.parts:
        raise PathRefused(f"{what} {text!r}: refused (path traversal: '..' is not allowed)")
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / pure))
    if target != base and base not in target.parents:
        raise PathRefused(f"{what} {text!r}: refused (it leads outside the allowed folders, e.g. through a symlink)")
    return target


def confine_any(roots: list[Path], rel: str, what: str = "path") -> Path:
    """The first existing ``confine(root, rel)`` over ``roots`` (each check applied to every root)."""
    found = None
    for root in roots:
        p = confine(root, rel, what)
        if found is None and p.exists():
            found = p
    if found is None:
        raise KinemaError(f"{what} {rel!r}: not found under the allowed folders")
    return found


def relative_to_root(root: Path, path: Path) -> str:
    """``path`` as the root-relative POSIX string the page sends back."""
    return Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
