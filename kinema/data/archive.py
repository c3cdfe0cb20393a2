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

Archives are shared, so opening one checks every claim of ``index.json`` against the data
before anything is mapped or allocated: the JSON's size and depth are bounded, every number is
range-checked, ``frames.u8`` must hold exactly ``num_frames`` frames, the ``.npy`` headers must
describe the clip count the index states and the bytes the files hold, and every clip must lie
inside its video's frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError
from kinema.untrusted import MiB, json_float, json_int, json_strings, load_npy, read_json

FORMAT = "kinema-archive"
VERSION = 1
FRAMES_FILE, CLIPS_FILE, LABELS_FILE, INDEX_FILE, REPORT_FILE = (
    "frames.u8", "clips.npy", "labels.npy", "index.json", "report.json")
MAX_JSON_BYTES = 256 * MiB         # index.json / report.json (about 300 bytes per source video)
MAX_SIDE, MAX_CLIP_FRAMES, MAX_CLASSES, MAX_FPS = 8192, 1024, 100000, 1000.0
MAX_TOTAL_FRAMES = 1 << 48


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
            # File names that are not valid UTF-8 (legal on Linux) arrive as lone surrogates
            # (os.fsdecode); "backslashreplace" writes them as JSON \udcXX escapes, which json.load
            # reads back to the same str, so os.fsencode gives the original bytes: lossless.
            with open(self.folder / name, "w", encoding="utf-8", errors="backslashreplace") as f:
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
        index = read_json(index_path, MAX_JSON_BYTES, what="archive index")
        if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
            found = (index.get("format"), index.get("version")) if isinstance(index, dict) else (None, None)
            raise KinemaError(f"{self.path}: not a kinema archive of version {VERSION} "
                              f"(found {str(found[0])[:40]!r} version {str(found[1])[:20]!r})")
        self.index = index
        where = index_path
        self.frames_per_clip = json_int(index, "frames_per_clip", 1, MAX_CLIP_FRAMES, where)
        res = index.get("resolution")
        if not (isinstance(res, list) and len(res) == 2 and all(type(v) is int and 1 <= v <= MAX_SIDE for v in res)):
            raise KinemaError(f"{where}: 'resolution' must be [height, width], each in 1..{MAX_SIDE}, got {str(res)[:40]}")
        self.resolution = (res[0], res[1])
        self.channels = json_int(index, "channels", 1, 3, where)
        if self.channels == 2:
            raise KinemaError(f"{where}: 'channels' must be 1 or 3, got 2")
        self.fps = json_float(index, "fps", 1e-3, MAX_FPS, where)
        self.class_names = json_strings(index, "class_names", MAX_CLASSES, 256, where)
        self.num_frames = json_int(index, "num_frames", 0, MAX_TOTAL_FRAMES, where)
        num_clips = json_int(index, "num_clips", 0, MAX_TOTAL_FRAMES, where)
        if not isinstance(index.get("content_hash"), str):
            raise KinemaError(f"{where}: 'content_hash' must be a string")
        self.content_hash = index["content_hash"]
        self.videos = index.get("videos")
        if not isinstance(self.videos, list):
            raise KinemaError(f"{where}: 'videos' must be a list")
        for i, v in enumerate(self.videos):
            ok = isinstance(v, dict) and type(v.get("offset")) is int and type(v.get("num_frames")) is int
            if not ok or v["offset"] < 0 or v["num_frames"] < 0 or v["offset"] + v["num_frames"] > self.num_frames:
                raise KinemaError(f"{where}: video {i} must have offset and num_frames within the "
                                  f"archive's {self.num_frames} frames")
        # frames.u8 must hold exactly what the index claims, before anything is mapped.
        frame_bytes = self.resolution[0] * self.resolution[1] * self.channels
        frames_path = self.path / FRAMES_FILE
        size = frames_path.stat().st_size if frames_path.is_file() else -1
        if size != self.num_frames * frame_bytes:
            raise KinemaError(f"{frames_path}: {size} bytes, expected {self.num_frames * frame_bytes} "
                              "(truncated or replaced archive)")
        # Clip tables: headers checked against the index and the file sizes before loading.
        clips = load_npy(self.path / CLIPS_FILE, lambda sh: sh == (num_clips, 2), "clip table",
                         f"[{num_clips}, 2] (num_clips in {INDEX_FILE})")
        labels = load_npy(self.path / LABELS_FILE, lambda sh: sh == (num_clips,), "label table",
                          f"[{num_clips}] (num_clips in {INDEX_FILE})")
        if clips.dtype.kind not in "iu" or labels.dtype.kind not in "iu":
            raise KinemaError(f"{self.path}: clip and label tables must hold integers")
        clips, self.labels = clips.astype(np.int64), labels.astype(np.int64)
        self.num_clips = num_clips
        offsets = np.array([v["offset"] for v in self.videos], np.int64)
        lengths = np.array([v["num_frames"] for v in self.videos], np.int64)
        if num_clips:
            vid, start = clips[:, 0], clips[:, 1]
            bad = (vid < 0) | (vid >= len(self.videos)) | (start < 0)
            if not bad.any():
                bad = start + self.frames_per_clip > lengths[vid]
            if bad.any():
                i = int(np.argmax(bad))
                raise KinemaError(f"{self.path / CLIPS_FILE}: clip {i} (video {int(vid[i])}, frame {int(start[i])}) "
                                  f"does not lie inside its video's frames")
            if ((self.labels < -1) | (self.labels >= len(self.class_names))).any():
                raise KinemaError(f"{self.path / LABELS_FILE}: labels must be -1 or a class index below "
                                  f"{len(self.class_names)}")
        # First frame of each clip in frames.u8: int64 [N].
        self.clip_first = offsets[clips[:, 0]] + clips[:, 1] if num_clips else np.zeros(0, np.int64)
        self.clip_video = clips[:, 0]
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
        return read_json(self.path / REPORT_FILE, MAX_JSON_BYTES, what="archive report")

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
