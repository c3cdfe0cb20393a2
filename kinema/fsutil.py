"""Atomic file and folder writes: every file kinema writes appears whole or not at all.

The pattern is always the same: write to a temporary name in the destination's own folder
(so the final ``os.replace`` is a rename on one filesystem, which POSIX makes atomic), flush
and fsync, then rename over the destination. A crash at any moment leaves either the old
file or the new one, never a torn one; stray temporaries start with ``.tmp-``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from kinema.errors import KinemaError


# tempfile's names: PREFIX + 8 random characters + suffix (atomic_path: .tmp-STEM-XXXXXXXX.EXT,
# atomic_dir: .tmp-NAME-XXXXXXXX, and .old-NAME-XXXXXXXX while a folder is replaced).
_TEMP_NAME = re.compile(r"\.(?:tmp|old)-(.+?)-[A-Za-z0-9_]{8}((?:\.[A-Za-z0-9]+)?)(?=$|[/\s:'\",;)])")


def public_paths(message: str) -> str:
    """``message`` with every temporary name of this module replaced by the name it stands for
    (``.tmp-out-k3j9x_2a.mp4`` -> ``out.mp4``): errors speak of the user's files only."""
    return _TEMP_NAME.sub(lambda m: m.group(1) + m.group(2), message)


def refuse_existing(path: str | os.PathLike, force: bool) -> None:
    """Raise a one-line error if ``path`` exists and ``force`` is false."""
    if os.path.lexists(path) and not force:
        raise KinemaError(f"{path}: already exists (pass --force to replace it)")


def _default_mode(kind: int) -> int:
    """The permissions a plain ``open``/``mkdir`` would give (0o666 / 0o777 less the umask):
    mkstemp and mkdtemp make private 0600 / 0700 temporaries, which must not leak into results."""
    umask = os.umask(0)
    os.umask(umask)
    return kind & ~umask


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary keeps ``path``'s extension (or ``suffix``) so that libraries which pick a
    format from the file name (PyAV, Pillow) still work. On an exception the temporary is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else "".join(path.suffixes[-1:])
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=ext, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_file() and path.is_dir() and not path.is_symlink():
            raise KinemaError(f"{path}: is a folder; kinema replaces files only (remove it or choose another name)")
        if tmp.is_file():  # (a writer may have replaced it by a folder, e.g. frames as PNGs)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, _default_mode(0o666))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole.

    Refuses an existing ``path`` unless ``force``. With ``force`` the old folder is moved
    aside first and deleted only after the new one is in place, so a crash never leaves a
    half-written folder under the final name (at worst an old ``.old-*`` copy remains).
    """
    path = Path(path)
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    os.chmod(tmp, _default_mode(0o777))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(path):
        old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}-", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
