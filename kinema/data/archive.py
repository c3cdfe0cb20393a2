"""The clip archive: a folder that ``prepare`` writes once and training reads many times.

Layout of ``OUT/`` (written whole or not at all by :func:`kinema.fsutil.atomic_dir`)::

    frames.u8     raw uint8 [F, H, W, C]: every video's resampled frames, once, back to back
    clips.npy     int64 [N, 2]: (video index, first frame within that video) of each clip
    labels.npy    int64 [N]: class of each clip, -1 if none
    index.json    format + version, shapes, fps, class names, per-video entries, content hash
    report.json   what prepare found: counts, fps histogram, durations, quarantined files

A clip is ``frames.u8[offset[video] + start : ... + T]``, so overlapping clips (stride < T)
share frames instead of copying them. ``frames.u8`` is memory-mapped: opening an archive costs
nothing and the page cache serves the loader.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError

FORMAT = "kinema-archive"
VERSION = 1
FRAMES_FILE, CLIPS_FILE, LABELS_FILE, INDEX_FILE, REPORT_FILE = (
    "frames.u8", "clips.npy", "labels.npy", "index.json", "report.json")


def _hash_header(index: dict) -> bytes:
    """The part of the index the content hash covers: shapes and meaning, not source paths.

    Paths and timings are left out so that the same data prepared from another folder (or
    machine) hashes the same; anything that changes the clips a loader returns is included.
    """
    keys = ("format", "version", "frames_per_clip", "resolution", "channels", "fps", "num_frames",
            "num_clips", "class_names")
    return json.dumps({k: index[k] for k in keys}, sort_keys=True).encode()


def _sync(f) -> None:
    # On disk before atomic_dir renames the folder into place: a crash never shows an archive
    # under its final name whose files are still empty.
    f.flush()
    os.fsync(f.fileno())


class ArchiveWriter:
    """Append videos to a new archive folder (normally the temp folder of ``atomic_dir``).

    Frames go straight to ``frames.u8`` as each video arrives, and are hashed on the way, so
    memory holds one video at a time whatever the dataset size.
    """

    def __init__(self, folder: Path, resolution: tuple[int, int], frames_per_clip: int, channels: int, fps: float):
        self.folder = Path(folder)
        self.shape = (int(resolution[0]), int(resolution[1]), int(channels))
        self.frames_per_clip, self.fps = int(frames_per_clip), float(fps)
        self._file = open(self.folder / FRAMES_FILE, "wb")
        self._sha = hashlib.sha256()
        self.videos: list[dict] = []
        self._clips: list[np.ndarray] = []  # per video int64 [n, 2]; small (16 bytes a clip)
        self._labels: list[np.ndarray] = []
        self.num_frames = 0

    def add(self, frames: np.ndarray, starts, label: int, info: dict) -> None:
        """Append one video: uint8 ``frames [n, H, W, C]`` and clip ``starts`` (indices into them)."""
        if frames.dtype != np.uint8 or tuple(frames.shape[1:]) != self.shape:
            raise ValueError(f"expected uint8 [n, {self.shape}], got {frames.dtype} {tuple(frames.shape)}")
        starts = np.asarray(starts, np.int64)
        if len(starts) and (starts.min() < 0 or starts.max() + self.frames_per_clip > len(frames)):
            raise ValueError("clip start outside the video's frames")
        data = np.ascontiguousarray(frames).tobytes()
        self._file.write(data)
        self._sha.update(data)
        vid = len(self.videos)
        first_clip = sum(len(c) for c in self._clips)
        self.videos.append({**info, "label": int(label), "offset": self.num_frames, "num_frames": len(frames),
                            "clips": [first_clip, len(starts)]})
        self._clips.append(np.stack([np.full(len(starts), vid, np.int64), starts], 1))
        self._labels.append(np.full(len(starts), label, np.int64))
        self.num_frames += len(frames)

    def finish(self, class_names: list[str], report: dict, settings: dict) -> dict:
        """Write the tables, ``index.json`` and ``report.json``; returns the index."""
        _sync(self._file)
        self._file.close()
        clips = np.concatenate(self._clips) if self._clips else np.zeros((0, 2), np.int64)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)
        for name, arr in ((CLIPS_FILE, clips), (LABELS_FILE, labels)):
            with open(self.folder / name, "wb") as f:
                np.save(f, arr)
                _sync(f)
        index = {"format": FORMAT, "version": VERSION, "frames_per_clip": self.frames_per_clip,
                 "resolution": list(self.shape[:2]), "channels": self.shape[2], "fps": self.fps,
                 "num_frames": self.num_frames, "num_clips": len(clips), "class_names": list(class_names),
                 "settings": settings, "videos": self.videos}
        h = hashlib.sha256(_hash_header(index))
        h.update(self._sha.digest())
        h.update(clips.tobytes())
        h.update(labels.tobytes())
        index["content_hash"] = h.hexdigest()[:32]
        for name, obj in ((INDEX_FILE, index), (REPORT_FILE, report)):
            with open(self.folder / name, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=1, ensure_ascii=False)
                _sync(f)
        return index

    def abort(self) -> None:
        self._file.close()


class Archive:
    """Read-only view of a prepared archive; see the module docstring for the layout.

    Attributes: ``num_clips``, ``frames_per_clip``, ``resolution`` (H, W), ``channels``, ``fps``,
    ``labels`` (int64 [N], -1 = none), ``class_names``, ``videos`` (per source video: path, label,
    offset, num_frames, clips = [first clip, count], source fps, ...), ``report``, ``content_hash``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        if not self.path.is_dir():
            raise KinemaError(f"{self.path}: no such archive folder")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise KinemaError(f"{index_path}: not a readable kinema archive index ({type(err).__name__})") from None
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise KinemaError(f"{self.path}: not a kinema archive of version {VERSION} "
                              f"(found {index.get('format')!r} version {index.get('version')!r})")
        self.index = index
        self.frames_per_clip = int(index["frames_per_clip"])
        self.resolution = (int(index["resolution"][0]), int(index["resolution"][1]))
        self.channels = int(index["channels"])
        self.fps = float(index["fps"])
        self.class_names = list(index["class_names"])
        self.videos = index["videos"]
        self.content_hash = index["content_hash"]
        self.num_frames = int(index["num_frames"])
        try:
            clips = np.load(self.path / CLIPS_FILE, allow_pickle=False)
            self.labels = np.load(self.path / LABELS_FILE, allow_pickle=False).astype(np.int64)
        except (OSError, ValueError) as err:
            raise KinemaError(f"{self.path}: clip table unreadable ({err})") from None
        self.num_clips = len(clips)
        if self.num_clips != index["num_clips"] or len(self.labels) != self.num_clips:
            raise KinemaError(f"{self.path}: clip table has {self.num_clips} rows, index says {index['num_clips']}")
        offsets = np.array([v["offset"] for v in self.videos], np.int64)
        # First frame of each clip in frames.u8: int64 [N].
        self.clip_first = offsets[clips[:, 0]] + clips[:, 1] if self.num_clips else np.zeros(0, np.int64)
        self.clip_video = clips[:, 0]
        frame_bytes = int(np.prod(self.frame_shape))
        size = (self.path / FRAMES_FILE).stat().st_size if (self.path / FRAMES_FILE).exists() else -1
        if size != self.num_frames * frame_bytes:
            raise KinemaError(f"{self.path / FRAMES_FILE}: {size} bytes, expected {self.num_frames * frame_bytes} "
                              "(truncated or replaced archive)")
        self._frames = None  # memory map opened on first use (and again in each worker process)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (*self.resolution, self.channels)

    @property
    def frames(self) -> np.ndarray:
        """All frames, uint8 memmap ``[F, H, W, C]``."""
        if self._frames is None:
            self._frames = np.memmap(self.path / FRAMES_FILE, np.uint8, "r", shape=(self.num_frames, *self.frame_shape))
        return self._frames

    @property
    def report(self) -> dict:
        return json.loads((self.path / REPORT_FILE).read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return self.num_clips

    def clip(self, i: int) -> np.ndarray:
        """Clip ``i`` as uint8 ``[T, H, W, C]`` (a copy)."""
        first = int(self.clip_first[i])
        return np.array(self.frames[first:first + self.frames_per_clip])

    def clips(self, indices) -> np.ndarray:
        """Clips as uint8 ``[B, T, H, W, C]`` (one gather from the memory map)."""
        indices = np.asarray(indices, np.int64)
        rows = self.clip_first[indices][:, None] + np.arange(self.frames_per_clip)  # [B, T]
        return np.asarray(self.frames[rows])

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def verify(self) -> bool:
        """Recompute the content hash from the files (reads every frame once)."""
        h = hashlib.sha256(_hash_header(self.index))
        sha = hashlib.sha256()
        with open(self.path / FRAMES_FILE, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                sha.update(block)
        h.update(sha.digest())
        h.update(np.load(self.path / CLIPS_FILE).tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:32] == self.content_hash

    # Memory maps are not pickled (that would copy every frame); worker processes reopen them.
    def __getstate__(self):
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __repr__(self) -> str:
        h, w = self.resolution
        return (f"Archive({str(self.path)!r}, clips={self.num_clips}, {self.frames_per_clip}x{h}x{w}x{self.channels}, "
                f"fps={self.fps:g}, classes={len(self.class_names)})")


def open_archive(path: str | os.PathLike) -> Archive:
    """Open a prepared archive folder; raises KinemaError naming the folder if it is not one."""
    return Archive(path)
