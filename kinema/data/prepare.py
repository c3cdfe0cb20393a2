"""``prepare``: turn a folder of videos (or a built-in dataset) into a clip archive, once.

Sources, in SRC:
- video files directly in SRC (no class), or in first-level subfolders (class = subfolder
  name, as in UCF-101 / HMDB-51; anything deeper inside a class folder belongs to that class);
- frame folders (a folder holding numbered images) anywhere a video file could be;
- ``builtin:NAME`` or ``NAME`` of a built-in dataset (one clip per generated video).

Decoding runs in a process pool, videos in flight bounded to twice the workers, and results are
appended in source order as they arrive, so memory stays flat and the archive (and its content
hash) does not depend on the number of workers. Bad files are quarantined with a one-line reason
(printed, and kept in ``report.json``); the rest of the run finishes.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from kinema.data import builtin as bi
from kinema.data.archive import Archive, ArchiveWriter, open_archive
from kinema.data.decode import DecodeSettings, decode_video
from kinema.devices import usable_cores
from kinema.errors import KinemaError
from kinema.fsutil import atomic_dir, refuse_existing
from kinema.io.video import IMAGE_EXTS

VIDEO_EXTS = {".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".flv",
              ".3gp", ".ts", ".mts", ".ogv"}
BUILTIN_FPS = 8.0


def _is_frame_folder(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in folder.iterdir())


def find_sources(src: Path) -> tuple[list[tuple[Path, str, str | None]], list[str], int]:
    """List ``(path, name relative to SRC, class or None)`` in a stable order, class names, and
    the number of files ignored (not a video extension)."""
    found, ignored = [], 0

    def walk(folder: Path, cls: str | None, top: bool) -> None:
        nonlocal ignored
        for p in sorted(folder.iterdir(), key=lambda p: p.name):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if _is_frame_folder(p):
                    found.append((p, str(p.relative_to(src)), cls))
                else:  # a class folder at the top level, else a plain subfolder of the class
                    walk(p, p.name if top else cls, False)
            elif p.suffix.lower() in VIDEO_EXTS:
                found.append((p, str(p.relative_to(src)), cls))
            else:
                ignored += 1

    walk(src, None, True)
    classes = sorted({c for _, _, c in found if c is not None})
    return found, classes, ignored


# Largest frame side of an archive: one 4096x4096 RGB frame is 48 MiB, and a worker holds a video's
# frames while it crops and resizes them.
MAX_RESOLUTION = 4096


def _ordered_map(fn: Callable, tasks: Iterable, workers: int) -> Iterator:
    """``map(fn, tasks)`` on a process pool, results in task order, at most 2*workers in flight.

    Ordered results make the archive independent of timing; the bound on tasks in flight keeps
    memory flat (a plain ``Pool.imap`` queues every finished result behind a slow one).
    """
    if workers <= 1:
        yield from map(fn, tasks)
        return
    # fork starts workers instantly and shares the already-imported decoder; spawn elsewhere.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    # concurrent.futures, not multiprocessing.Pool: a worker that dies (killed for memory) breaks
    # the executor and every pending result raises, where Pool would wait for it forever.
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        it = iter(tasks)
        pending = collections.deque(pool.submit(fn, t) for t in _take(it, 2 * workers))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool:
                raise KinemaError(f"prepare: a worker process died (killed by the system, most likely for lack "
                                  f"of memory); nothing was written; try fewer --workers or a smaller "
                                  f"--resolution") from None
            for t in _take(it, 1):
                pending.append(pool.submit(fn, t))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _take(it: Iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _decode_task(task):
    path, name, settings = task
    return decode_video(path, name, settings)


def _builtin_task(task):
    name, indices, frames, size, seed, channels = task
    return [bi.make_builtin_video(name, i, frames, size, seed, channels) for i in indices]


def _probe_fps(path: Path) -> float | None:
    from kinema.io import probe

    try:
        return round(float(probe(path).fps), 2)
    except Exception:  # unreadable files are quarantined later, with their reason
        return None


def _common_fps(sources, workers: int) -> float:
    """The most common source frame rate (rounded to 0.01), used when no --fps is given."""
    rates = [r for r in _ordered_map(_probe_fps, (p for p, _, _ in sources), workers) if r]
    if not rates:
        return 25.0
    values, counts = np.unique(rates, return_counts=True)
    return float(values[np.argmax(counts)])


def _warn(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"kinema: warning: {msg}", file=sys.stderr, flush=True)


def prepare(src, out, resolution=64, frames: int = 16, fps: float | None = None, stride: int | None = None,
            crop: str = "center", max_clips_per_video: int | None = None, workers: int | None = None,
            force: bool = False, channels: int | None = None, num_videos: int | None = None, seed: int = 0,
            resize: str = "crop", max_side: int | None = None, progress: Callable[[int, int], None] | None = None,
            verbose: bool = True) -> Archive:
    """Prepare SRC into the archive folder OUT and return it opened.

    ``resolution``: int (square) or (H, W). ``fps``: resample to this rate (default: the most
    common source rate; 8 for built-ins). ``stride``: frames between clip starts (default
    ``frames``: no overlap). ``channels``: 1 or 3 (default 3; built-ins their own). ``progress(done,
    total)`` is called after each source video. Raises KinemaError for bad arguments, a missing
    or empty SRC, an existing OUT without ``force``, or when no video yields a clip; nothing is
    written then.
    """
    res = (int(resolution), int(resolution)) if np.isscalar(resolution) else tuple(int(r) for r in resolution)
    stride = frames if stride is None else int(stride)
    workers = usable_cores() if workers is None else max(1, int(workers))
    for ok, what in ((8 <= min(res) and max(res) <= MAX_RESOLUTION, f"resolution {res} (8 to {MAX_RESOLUTION})"), (frames >= 1, f"frames {frames}"),
                     (stride >= 1, f"stride {stride}"), (fps is None or fps > 0, f"fps {fps}"),
                     (crop in ("center", "random"), f"crop {crop!r} (center|random)"),
                     (resize in ("crop", "pad"), f"resize {resize!r} (crop|pad)"),
                     (channels in (None, 1, 3), f"channels {channels} (1|3)"),
                     (max_clips_per_video is None or max_clips_per_video >= 1, "max_clips_per_video")):
        if not ok:
            raise KinemaError(f"prepare: bad {what}")
    refuse_existing(out, force)  # fail fast, before any decoding
    spec = str(src)
    name = bi.builtin_name(spec) if not Path(spec).exists() else None
    if name is not None:
        return _prepare_builtin(name, Path(out), res, frames, fps or BUILTIN_FPS, channels, num_videos, seed,
                                workers, force, progress)
    src = Path(src)
    if not src.exists():
        raise KinemaError(f"{src}: no such file or folder (nor a built-in dataset: {', '.join(bi.BUILTINS)})")
    if src.is_file():
        sources, classes, ignored = [(src, src.name, None)], [], 0
    else:
        sources, classes, ignored = find_sources(src)
    if not sources:
        raise KinemaError(f"{src}: no video files or frame folders found "
                          f"(looked for {', '.join(sorted(VIDEO_EXTS))} and folders of images)")
    workers = min(workers, len(sources))
    target_fps = float(fps) if fps else _common_fps(sources, workers)
    settings = DecodeSettings(res, frames, target_fps, stride, crop, resize, max_clips_per_video,
                              channels or 3, seed, max_side, threads=1)  # parallelism = workers
    label_of = {c: i for i, c in enumerate(classes)}
    quarantined, fps_hist, durations, vfr = [], collections.Counter(), [], []
    class_clips = collections.Counter()
    t_start = time.time()
    with atomic_dir(out, force) as tmp:
        writer = ArchiveWriter(tmp, res, frames, settings.channels, target_fps)
        try:
            tasks = ((p, rel, settings) for p, rel, _ in sources)
            for i, result in enumerate(_ordered_map(_decode_task, tasks, workers)):
                path, rel, cls = sources[i]
                if "error" in result:
                    quarantined.append({"path": rel, "reason": result["error"]})
                    _warn(f"quarantined {result['error']}", verbose)
                else:
                    info = {**result["info"], "class": cls}
                    label = label_of[cls] if cls is not None else -1
                    writer.add(result["frames"], result["starts"], label, info)
                    fps_hist[f"{info['source_fps']:.2f}"] += 1
                    durations.append(info["duration"])
                    class_clips[cls if cls is not None else "(none)"] += len(result["starts"])
                    if info["variable_fps"]:
                        vfr.append(rel)
                        _warn(f"{rel}: variable frame rate, resampled to {target_fps:g} fps by timestamps", verbose)
                if progress is not None:
                    progress(i + 1, len(sources))
        except BaseException:
            writer.abort()
            raise
        if not writer.videos:
            writer.abort()
            raise KinemaError(f"{src}: none of the {len(sources)} videos gave a clip of {frames} frames "
                              f"({len(quarantined)} quarantined; first: {quarantined[0]['reason'] if quarantined else '-'})")
        total_clips = sum(v["clips"][1] for v in writer.videos)
        d = np.array(durations)
        report = {
            "source": str(src), "videos_found": len(sources), "videos_used": len(writer.videos),
            "videos_quarantined": len(quarantined), "files_ignored": ignored, "clips": total_clips,
            "frames_stored": writer.num_frames, "frames_per_clip": frames, "fps": target_fps,
            "fps_histogram": dict(sorted(fps_hist.items())),
            "durations_s": {"total": round(float(d.sum()), 3), "min": round(float(d.min()), 3),
                            "median": round(float(np.median(d)), 3), "max": round(float(d.max()), 3)},
            "clips_per_class": dict(class_clips), "variable_fps": vfr, "quarantined": quarantined,
            "seconds": round(time.time() - t_start, 3), "workers": workers,
        }
        settings_json = {"resolution": list(res), "frames": frames, "fps": target_fps, "stride": stride, "crop": crop,
                         "resize": resize, "max_clips_per_video": max_clips_per_video, "channels": settings.channels,
                         "seed": seed, "max_side": max_side}
        report["settings"] = settings_json
        writer.finish(classes, report, settings_json)
    return open_archive(out)


def _prepare_builtin(name, out: Path, res, frames, fps, channels, num_videos, seed, workers, force, progress) -> Archive:
    """Generate ``num_videos`` videos of built-in ``name``, one clip each, into the archive ``out``."""
    num_videos = bi.DEFAULT_NUM_VIDEOS[name] if num_videos is None else int(num_videos)
    if num_videos < 1:
        raise KinemaError(f"builtin:{name}: num_videos must be at least 1, got {num_videos}")
    channels = channels or bi.CHANNELS[name]
    chunk = 32
    tasks = [(name, range(a, min(a + chunk, num_videos)), frames, res, seed, channels)
             for a in range(0, num_videos, chunk)]
    workers = min(workers, len(tasks))
    bi.preload(name)  # before forking, so workers share it
    t_start = time.time()
    with atomic_dir(out, force) as tmp:
        writer = ArchiveWriter(tmp, res, frames, channels, fps)
        try:
            for task, videos in zip(tasks, _ordered_map(_builtin_task, tasks, workers)):
                for i, (video, label) in zip(task[1], videos):
                    writer.add(video, [0], label, {"path": f"builtin:{name}/{i:06d}", "duration": frames / fps})
                if progress is not None:
                    progress(task[1].stop, num_videos)
        except BaseException:
            writer.abort()
            raise
        classes = bi.CLASS_NAMES[name]
        labels = collections.Counter(v["label"] for v in writer.videos)
        settings = {"builtin": name, "resolution": list(res), "frames": frames, "fps": fps, "channels": channels,
                    "num_videos": num_videos, "seed": seed}
        report = {"source": f"builtin:{name}", "videos_found": num_videos, "videos_used": num_videos,
                  "videos_quarantined": 0, "clips": num_videos, "frames_stored": writer.num_frames,
                  "frames_per_clip": frames, "fps": fps, "fps_histogram": {f"{fps:.2f}": num_videos},
                  "durations_s": {"total": round(num_videos * frames / fps, 3), "min": frames / fps,
                                  "median": frames / fps, "max": frames / fps},
                  "clips_per_class": {classes[k] if k >= 0 else "(none)": c for k, c in sorted(labels.items())},
                  "variable_fps": [], "quarantined": [], "seconds": round(time.time() - t_start, 3),
                  "workers": workers, "settings": settings}
        writer.finish(classes, report, settings)
    return open_archive(out)
