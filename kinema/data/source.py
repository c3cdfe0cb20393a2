"""``resolve_source``: what ``kinema train DATA`` turns DATA into.

DATA is an archive folder (opened and checked against the requested clip shape) or a built-in
dataset (``builtin:NAME``), which is prepared once into a cache folder named after every setting
that changes its contents, then reused.
"""

from __future__ import annotations

import os
from pathlib import Path

from kinema.data import builtin as bi
from kinema.data.archive import INDEX_FILE, Archive, open_archive
from kinema.errors import KinemaError


def cache_root(cache_dir=None) -> Path:
    """``cache_dir``, else ``$KINEMA_CACHE/builtin``, else ``~/.cache/kinema/builtin``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("KINEMA_CACHE")
    return Path(env) / "builtin" if env else Path.home() / ".cache" / "kinema" / "builtin"


def resolve_source(spec, resolution, frames: int, cache_dir=None, channels: int | None = None,
                   num_videos: int | None = None, seed: int = 0, workers: int | None = None) -> Archive:
    """Open the archive ``spec`` (checking its clip shape), or prepare/reuse built-in ``spec``.

    ``resolution``: int or (H, W). Raises KinemaError naming ``spec`` when it is neither, or when
    the archive's clips differ from ``frames`` x ``resolution`` (or ``channels``, if given).
    """
    from kinema.data.prepare import prepare  # imports the decoder; only needed for built-ins

    res = (int(resolution), int(resolution)) if isinstance(resolution, int) else tuple(resolution)
    spec_s = str(spec)
    name = bi.builtin_name(spec_s) if not Path(spec_s).exists() else None
    if name is None:
        path = Path(spec_s)
        if not (path / INDEX_FILE).exists():
            hint = "; run `kinema prepare` on it first" if path.is_dir() else ""
            raise KinemaError(f"{spec_s}: not a kinema archive nor a built-in dataset "
                              f"(builtin:{', builtin:'.join(bi.BUILTINS)}){hint}")
        archive = open_archive(path)
        got = (archive.frames_per_clip, *archive.resolution)
        if got != (frames, *res) or (channels is not None and channels != archive.channels):
            raise KinemaError(
                f"{spec_s}: archive clips are {got[0]} frames of {got[1]}x{got[2]}x{archive.channels}, but "
                f"{frames} frames of {res[0]}x{res[1]}{'x' + str(channels) if channels else ''} were asked; "
                f"prepare it again with --frames {frames} --resolution {res[0]}")
        return archive
    channels = channels or bi.CHANNELS[name]
    num_videos = num_videos or bi.DEFAULT_NUM_VIDEOS[name]
    folder = cache_root(cache_dir) / f"{name}-{res[0]}x{res[1]}x{channels}-f{frames}-n{num_videos}-s{seed}"
    if (folder / INDEX_FILE).exists():
        try:
            return open_archive(folder)
        except KinemaError:
            pass  # damaged cache: prepare again, replacing it whole
    return prepare(f"builtin:{name}", folder, resolution=res, frames=frames, channels=channels,
                   num_videos=num_videos, seed=seed, workers=workers, force=True, verbose=False)
