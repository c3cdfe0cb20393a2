"""Writing generated videos to disk: one file per seed, grids, interpolations, loops.

These are what ``kinema generate`` calls; every output is atomic (files via :mod:`kinema.io`,
folders via :func:`kinema.fsutil.atomic_dir`) and refuses to replace anything unless ``force``.
Per-seed files can be encoded by ``jobs`` encoder threads at once (PyAV releases the GIL while
encoding), so a fast generator is not held back by one encoder; memory stays bounded because at
most ``2 * jobs`` videos wait for an encoder.

Under torchrun, per-seed files are sharded over ranks: the seeds are cut into the same batches
one process would use and batch ``j`` goes to rank ``j % world``, so every video is computed with
the same batch composition and its file is byte-identical to the single-process one. All ranks
write into one temporary folder (a filesystem every rank sees), renamed into place by rank 0 once
every rank has succeeded. Grids, interpolations and loops are single files: rank 0 writes them.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from kinema.errors import KinemaError
from kinema.fsutil import atomic_dir
from kinema.sample.generate import generate_batches
from kinema.sample.interpolate import interpolate_batches
from kinema import dist


def _encoding(codec: str, crf, preset) -> dict:
    return {"codec": codec, "crf": crf, "preset": preset}


def write_per_seed(model, seeds: Sequence[int], out: str | Path, fps: float, codec: str = "h264", crf=None,
                   preset=None, jobs: int = 1, force: bool = False, **gen) -> Path:
    """``out/seedNNNN.<ext>`` for every seed (``codec="png"``: ``out/seedNNNN/`` frame folders).

    ``gen``: frames, class_, truncation, batch (see :func:`kinema.sample.generate.generate_batches`).
    """
    from kinema.io import CODECS, to_uint8, write_video

    if int(jobs) != jobs or jobs < 1:
        raise KinemaError(f"jobs must be a whole number >= 1, got {jobs}")
    ext = CODECS[codec].ext if codec in CODECS else ""
    enc = _encoding(codec, crf, preset)
    mine = rank_share(list(seeds), int(gen.get("batch", 8)))
    with _atomic_dir_all_ranks(out, force) as tmp, ThreadPoolExecutor(max_workers=int(jobs)) as pool:
        pending = []
        for batch_seeds, video in generate_batches(model.G, mine, device=model.device, config=model.config, **gen):
            for seed, frames in zip(batch_seeds, to_uint8(video)):
                pending.append(pool.submit(write_video, tmp / f"seed{seed:04d}{ext}", frames, fps, **enc))
            # Bound the queue: wait for the oldest encodes before generating more.
            while len(pending) > 2 * jobs:
                pending.pop(0).result()
        for f in pending:
            f.result()
    return Path(out)


def rank_share(seeds: list[int], batch: int) -> list[int]:
    """This rank's seeds: batches ``j = rank, rank + world, ...`` of ``seeds`` cut ``batch`` at a time.

    Every batch but the overall last is full, so ``generate_batches(mine, batch)`` re-cuts exactly
    these batches. One process: all seeds.
    """
    world, rank = dist.world_size(), dist.rank()
    if world == 1 or batch < 1:
        return seeds
    return [s for j in range(rank, -(-len(seeds) // batch), world) for s in seeds[j * batch:(j + 1) * batch]]


@contextlib.contextmanager
def _atomic_dir_all_ranks(out, force: bool):
    """``atomic_dir`` shared by every rank: rank 0 makes the temporary folder, every rank writes into
    it, and it is renamed into place only if every rank got through (else removed). One process:
    plain ``atomic_dir``."""
    if dist.world_size() == 1:
        with atomic_dir(out, force=force) as tmp:
            yield tmp
        return
    with contextlib.ExitStack() as stack:
        made, error = None, None
        if dist.is_main():
            try:
                made = str(stack.enter_context(atomic_dir(out, force=force)))
            except KinemaError as err:
                error = str(err)
        made, error = dist.all_gather_object((made, error))[0]   # rank 0's folder (or its error)
        if error:
            raise KinemaError(error)
        ok = False
        try:
            yield Path(made)
            ok = True
        finally:
            everyone_ok = all(dist.all_gather_object(ok))
        if not everyone_ok:
            raise KinemaError(f"{out}: another rank failed while writing; nothing was written")
    dist.barrier()  # the others return once rank 0 has renamed the folder into place


def write_grid(model, seeds: Sequence[int], out: str | Path, fps: float, png: bool = False, cols=None,
               codec: str = "h264", crf=None, preset=None, force: bool = False, **gen) -> Path:
    """All seeds' videos tiled into one grid video, or a PNG contact sheet (rows = videos)."""
    from kinema.io import to_uint8, write_grid_png, write_grid_video

    videos = np.concatenate([to_uint8(v) for _, v in generate_batches(model.G, seeds, device=model.device,
                                                                      config=model.config, **gen)])
    if png:
        return write_grid_png(out, videos, overwrite=force)
    return write_grid_video(out, videos, fps, cols=cols, overwrite=force, **_encoding(codec, crf, preset))


def write_interpolation(model, seeds: Sequence[int], out: str | Path, fps: float, steps: int, space: str = "all",
                        loop: bool = False, grid: bool = False, png: bool = False, cols=None, codec: str = "h264",
                        crf=None, preset=None, force: bool = False, **gen) -> int:
    """The interpolation path's clips played one after another (or tiled); returns the clip count."""
    from kinema.io import to_uint8, write_grid_png, write_grid_video, write_video

    clips = np.concatenate([to_uint8(v) for v in interpolate_batches(
        model.G, seeds, steps, space=space, loop=loop, device=model.device, config=model.config, **gen)])
    enc = _encoding(codec, crf, preset)
    if png:
        write_grid_png(out, clips, overwrite=force)
    elif grid:
        write_grid_video(out, clips, fps, cols=cols, overwrite=force, **enc)
    else:
        # [K, T, H, W, C] -> [K*T, H, W, C]
        write_video(out, clips.reshape(-1, *clips.shape[2:]), fps, overwrite=force, **enc)
    return len(clips)


def write_walk_loop(model, seeds: Sequence[int], out: str | Path, fps: float, frames: int, class_=None,
                    truncation: float = 1.0, codec: str = "h264", crf=None, preset=None, force: bool = False) -> int:
    """A seamless looping video (frame-per-latent models); returns its frame count."""
    from kinema.io import write_video

    video = model.walk_loop(seeds, frames, class_=class_, truncation=truncation)
    write_video(out, video, fps, overwrite=force, **_encoding(codec, crf, preset))
    return len(video)
