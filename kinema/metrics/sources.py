"""Where real and fake clips come from: an archive, a folder of video files, or a training export.

Every source yields uint8 batches [B, T, H, W, C] drawn by the protocol's rule (see
``protocols.py``) from a seed, and describes itself (kind, path, content hash, counts) for the
result record. Clips are streamed batch by batch, so memory holds one batch, not the whole set.

Under torchrun, ``clips(..., shard=True)`` yields ``None`` in place of the batches other ranks
extract (batch ``j`` belongs to rank ``j % world``), so an archive reads and an export generates
only this rank's batches; a folder of videos is decoded whole on every rank (its clips depend on
a sequential seeded walk) and ``evaluate.features_of`` picks this rank's batches from it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.metrics.protocols import Protocol
from kinema import dist

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v"}


def _batches(clips: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group single clips [T, H, W, C] into batches [B, T, H, W, C] of equal shape."""
    buf: list[np.ndarray] = []
    for clip in clips:
        if buf and (len(buf) == batch_size or clip.shape != buf[0].shape):
            yield np.stack(buf)
            buf = []
        buf.append(clip)
    if buf:
        yield np.stack(buf)


def _others(shard: bool):
    """A predicate on batch indices: True for the batches another rank extracts (``shard`` only)."""
    world, rank = dist.world_size(), dist.rank()
    return lambda j: shard and j % world != rank


def _too_few(path, protocol: Protocol, need: int, found: int, short: int, longest: int) -> KinemaError:
    return KinemaError(
        f"{path}: protocol {protocol.name} needs {need} videos with at least {protocol.frames} frames; "
        f"found {found} ({short} shorter, longest {longest} frames); use a protocol with fewer clips "
        f"or frames, or --num")


class ArchiveSource:
    """A prepared kinema archive; clips are cut from each source video's full frame run."""

    kind = "archive"

    def __init__(self, path):
        from kinema.data import open_archive

        self.path = str(path)
        self.archive = open_archive(path)
        self.content_hash = self.archive.content_hash

    def clips(self, protocol: Protocol, count: int, seed: int, batch_size: int,
              shard: bool = False) -> Iterator[np.ndarray | None]:
        a, rng, others = self.archive, np.random.default_rng(seed), _others(shard)
        if not protocol.frames:
            protocol = replace(protocol, frames=a.frames_per_clip)
        lengths = np.array([v["num_frames"] for v in a.videos], np.int64)
        offsets = np.array([v["offset"] for v in a.videos], np.int64)
        if protocol.real_sampling == "random_frames":
            if a.num_frames < count:
                raise KinemaError(f"{self.path}: protocol {protocol.name} needs {count} frames; found {a.num_frames}")
            rows = rng.choice(a.num_frames, count, replace=False)
            return (None if others(i // batch_size) else a.frames[np.sort(rows[i:i + batch_size])][:, None]
                    for i in range(0, count, batch_size))
        ok = np.flatnonzero(lengths >= protocol.frames)
        if len(ok) < count:
            raise _too_few(self.path, protocol, count, len(ok), len(lengths) - len(ok), int(lengths.max(initial=0)))
        chosen = ok[rng.choice(len(ok), count, replace=False)]
        starts = offsets[chosen] + rng.integers(0, lengths[chosen] - protocol.frames + 1)
        t = np.arange(protocol.frames)
        return (None if others(i // batch_size) else np.asarray(a.frames[starts[i:i + batch_size, None] + t])
                for i in range(0, count, batch_size))

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.path, "content_hash": self.content_hash,
                "videos": len(self.archive.videos), "resolution": list(self.archive.resolution)}


class FolderSource:
    """A folder of video files (searched recursively, sorted by path); decoded with kinema.io."""

    kind = "folder"

    def __init__(self, path):
        self.path = str(path)
        root = Path(path)
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
        if not self.files:
            raise KinemaError(f"{path}: no video files ({', '.join(sorted(VIDEO_EXTS))}) in this folder")
        # The content hash covers names and bytes: renaming or re-encoding a file changes it.
        h = hashlib.sha256(b"kinema-folder-v1")
        for f in self.files:
            h.update(str(f.relative_to(root)).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        self.content_hash = h.hexdigest()[:32]

    def _read(self, f: Path) -> np.ndarray:
        from kinema.io import read_video

        return read_video(f).frames  # uint8 [T, H, W, 3]

    def clips(self, protocol: Protocol, count: int, seed: int, batch_size: int,
              shard: bool = False) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)  # every rank decodes everything (see the module docstring)
        if not protocol.frames:
            protocol = replace(protocol, frames=16)  # folders: the first common clip length
        if protocol.real_sampling == "random_frames":
            videos = [self._read(f) for f in self.files]
            total = sum(len(v) for v in videos)
            if total < count:
                raise KinemaError(f"{self.path}: protocol {protocol.name} needs {count} frames; found {total}")
            flat_index = np.sort(rng.choice(total, count, replace=False))
            starts = np.cumsum([0] + [len(v) for v in videos])
            vid = np.searchsorted(starts, flat_index, side="right") - 1
            return _batches((videos[v][i - starts[v]][None] for v, i in zip(vid, flat_index)), batch_size)

        def gen():
            got, short, longest = 0, 0, 0
            for k in rng.permutation(len(self.files)):
                if got == count:
                    return
                frames = self._read(self.files[k])
                longest = max(longest, len(frames))
                if len(frames) < protocol.frames:
                    short += 1
                    continue
                off = int(rng.integers(0, len(frames) - protocol.frames + 1))
                got += 1
                yield frames[off:off + protocol.frames]
            if got < count:
                raise _too_few(self.path, protocol, count, got, short, longest)

        return _batches(gen(), batch_size)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.path, "content_hash": self.content_hash, "videos": len(self.files)}


@torch.no_grad()
def generate_clips(G, seeds, frames: int, device: str = "cpu") -> np.ndarray:
    """One video per seed -> uint8 [len(seeds), T, H, W, C]; label ``seed % num_classes`` if conditional.

    Latents are drawn per seed on the CPU (``make_latents(1, generator=seeded)``) and then
    concatenated, so video ``s`` is the same whatever batch it is generated in.
    """
    from kinema.io import to_uint8

    per_seed = [G.make_latents(1, frames, generator=torch.Generator().manual_seed(int(s)), device=device)
                for s in seeds]
    latents = {k: torch.cat([p[k] for p in per_seed]) for k in per_seed[0]}
    labels = None
    if getattr(G, "num_classes", 0):
        labels = torch.tensor([int(s) % G.num_classes for s in seeds], device=device)
    return to_uint8(G(latents, labels))  # [B, T, H, W, C]


class ExportSource:
    """A training export (``export-*.safetensors``): video i is generated from seed ``seed + i``.

    Class-conditional generators get label ``(seed + i) % num_classes`` (balanced classes).
    """

    kind = "export"

    def __init__(self, path, device: str = "cpu"):
        from kinema.models import load_generator

        self.path, self.device = str(path), device
        self.G, self.config = load_generator(path, device=device)
        self.content_hash = self.config.get("sha256", "")

    def set_sampler(self, steps=None, cfg=None, solver=None) -> dict:
        """ODE settings of a flow model's export (kinema.models.flow.update_sampler)."""
        from kinema.models.flow import update_sampler

        return update_sampler(self.G, self.config.get("name", self.path), steps, cfg, solver)

    def clips(self, protocol: Protocol, count: int, seed: int, batch_size: int,
              shard: bool = False) -> Iterator[np.ndarray | None]:
        G, frames, others = self.G, protocol.frames, _others(shard) or self.G.frames
        if frames > G.frames and not getattr(G, "can_extend", False):
            raise KinemaError(f"{self.path}: generator makes {G.frames}-frame clips and cannot extend them; "
                              f"protocol {protocol.name} needs {frames}")
        clips_needed = math.ceil(count / frames) if protocol.unit == "frame" else count

        def gen():
            left = count
            for i in range(0, clips_needed, batch_size):
                seeds = range(seed + i, seed + min(i + batch_size, clips_needed))
                if others(i // batch_size):
                    left -= min(len(seeds) * frames, left) if protocol.unit == "frame" else 0
                    yield None
                    continue
                video = generate_clips(G, seeds, frames, self.device)
                if protocol.unit == "frame":  # all frames of each clip, as 1-frame clips
                    video = video.reshape(-1, 1, *video.shape[2:])[:left]
                    left -= len(video)
                yield video

        return gen()

    def describe(self) -> dict:
        out = {"kind": self.kind, "path": self.path, "content_hash": self.content_hash,
               "model": self.config.get("name"), "kimg": self.config.get("meta", {}).get("kimg")}
        if hasattr(self.G, "sampler"):  # a flow model: how its videos were sampled
            out["sampler"] = dict(self.G.sampler)
        return out


def open_source(spec, role: str, device: str = "cpu", like=None):
    """``spec`` (archive folder, folder of videos, or export file) -> a source; role "real"/"fake".

    A real ``builtin:NAME`` is the built-in dataset prepared (or reused from the cache) at the
    clip size of ``like``, the fake source's export.
    """
    p = Path(str(spec))
    if role == "real" and not p.exists() and str(spec).startswith("builtin:"):
        if getattr(like, "kind", None) != "export":
            raise KinemaError(f"{spec}: a built-in --real dataset takes its clip size from an export as --fake; "
                              "with a folder of videos, prepare it first (kinema prepare) and give the archive")
        from kinema.data import resolve_source

        G = like.G
        return ArchiveSource(resolve_source(spec, G.resolution, G.frames, channels=G.channels).path)
    if not p.exists():
        raise KinemaError(f"{spec}: --{role} source not found")
    if p.is_dir() and (p / "index.json").exists():
        return ArchiveSource(p)
    is_run = p.is_dir() and any(p.glob("export-*.safetensors"))
    if p.is_dir() and not is_run:
        return FolderSource(p)
    if is_run or p.suffix in (".safetensors", ".json"):
        if role == "real":
            raise KinemaError(f"{spec}: a generator export cannot be the real source")
        from kinema.models.export import find_export

        return ExportSource(find_export(p), device=device)
    raise KinemaError(f"{spec}: not an archive folder, a folder of videos, a run folder, or an export .safetensors")
