"""Worker side of ``prepare``: one source video in, its resampled and resized clip frames out.

Everything here runs inside a worker process and returns one video's frames at a time (already
at archive resolution, so small), which keeps the parent's memory flat whatever the dataset size.

Steps for one video:
1. ``probe`` (refuse unreadable files and absurd frame sizes before decoding anything);
2. stream frames with their presentation times and resample to the target fps by timestamp with
   kinema's one retiming rule (``kinema.io.resample_fps``, sample and hold: target time
   ``t0 + k / fps`` takes the source frame on screen then, the same frames ``kinema encode
   --fps`` picks); this handles variable frame rate and up/down-sampling alike;
3. resize: crop (scale to cover, crop centre or a seeded random offset) or pad (scale to fit,
   letterbox), antialiased. Video files are scaled by FFmpeg's scaler in the same pass that
   converts the decoded YUV picture to RGB (area averaging when shrinking; the crop offset
   rounded to whole pixels of the scaled frame), so no full-size RGB frame is ever made; frame
   folders and rotated videos are converted first and resized with Pillow (bicubic after an
   integer box reduction). ``bench/bench_ingest.py`` measures the difference;
4. choose clip starts (stride, evenly spread when capped) and keep only frames some clip uses.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kinema.errors import KinemaError
from kinema.io import iter_frames, probe, resample_fps


@dataclass(frozen=True)
class DecodeSettings:
    resolution: tuple[int, int]      # (H, W) of archive frames
    frames: int                      # frames per clip
    fps: float                       # target frame rate
    stride: int                      # frames between clip starts
    crop: str = "center"             # "center" | "random": where the crop window sits
    resize: str = "crop"             # "crop" (cover, then crop) | "pad" (fit, then letterbox)
    max_clips_per_video: int | None = None
    channels: int = 3
    seed: int = 0
    max_side: int | None = None      # refuse larger frames before decoding (None: kinema.io's 8192)
    threads: int = 0                 # decoder threads per video (1 inside a pool of workers)
    scaler: bool = True              # resize in FFmpeg's scaler while decoding (False: Pillow on RGB frames)


def clip_starts(n: int, frames: int, stride: int, max_clips: int | None) -> np.ndarray:
    """Start indices of the clips of a video of ``n`` frames: int64 ``[k]`` (maybe empty).

    ``range(0, n - frames + 1, stride)``; when capped, ``max_clips`` of them evenly spread over
    the video (first and last included) so the clips sample the whole video, not its opening.
    """
    if n < frames:
        return np.zeros(0, np.int64)
    starts = np.arange(0, n - frames + 1, stride, dtype=np.int64)
    if max_clips is not None and len(starts) > max_clips:
        pick = np.unique(np.rint(np.linspace(0, len(starts) - 1, max_clips)).astype(np.int64))
        starts = starts[pick]
    return starts


class _Fitter:
    """Resize + crop/pad of one video's frames ``[h, w, 3]`` -> ``[H, W, C]``, geometry fixed per video."""

    def __init__(self, s: DecodeSettings, key: str):
        self.s = s
        self.key = key
        self.box = None

    def _setup(self, h: int, w: int) -> None:
        H, W = self.s.resolution
        if self.s.resize == "pad":
            scale = min(H / h, W / w)
            self.inner = (max(1, round(w * scale)), max(1, round(h * scale)))  # (w, h) for PIL
            self.box = (0.0, 0.0, float(w), float(h))
            return
        # Crop: the largest window of the target aspect that fits, as a float box (sub-pixel ok).
        ch, cw = (h, h * W / H) if w * H >= h * W else (w * H / W, w)
        if self.s.crop == "random":
            # Seeded by the file's name, so a video gets the same crop whatever else is in SRC.
            rng = np.random.default_rng([self.s.seed, zlib.crc32(self.key.encode())])
            y0, x0 = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
        else:
            y0, x0 = (h - ch) / 2, (w - cw) / 2
        self.box = (x0, y0, x0 + cw, y0 + ch)
        self.inner = (W, H)

    def scaled_plan(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """For resizing in the decoder: ((width, height) to scale the whole frame to, (x, y) of
        the target window in the scaled frame). Crop: the frame scaled so that the crop box becomes
        exactly the target size, the box's offset rounded to whole pixels; pad: the fitted size."""
        self._setup(h, w)
        if self.s.resize == "pad":
            return self.inner, (0, 0)
        H, W = self.s.resolution
        x0, y0, x1, y1 = self.box
        sx, sy = W / (x1 - x0), H / (y1 - y0)
        full = (max(W, round(w * sx)), max(H, round(h * sy)))
        return full, (min(round(x0 * sx), full[0] - W), min(round(y0 * sy), full[1] - H))

    def cut(self, frame: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
        """A frame the decoder already scaled (see :meth:`scaled_plan`) -> ``[H, W, C]``."""
        H, W = self.s.resolution
        if self.s.resize == "crop":
            frame = frame[offset[1]:offset[1] + H, offset[0]:offset[0] + W]
        if self.s.channels == 1:  # Pillow's RGB -> L: ITU-R 601-2 luma, fixed point
            frame = ((frame.astype(np.uint32) @ np.array([19595, 38470, 7471], np.uint32) + 0x8000) >> 16)
            frame = frame.astype(np.uint8)[..., None]
        frame = np.ascontiguousarray(frame)
        if self.s.resize == "pad":
            canvas = np.zeros((H, W, frame.shape[-1]), np.uint8)
            y0, x0 = (H - frame.shape[0]) // 2, (W - frame.shape[1]) // 2
            canvas[y0:y0 + frame.shape[0], x0:x0 + frame.shape[1]] = frame
            frame = canvas
        return frame

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.box is None:
            self._setup(*frame.shape[:2])
        img = Image.fromarray(frame)
        # reducing_gap: shrink by an integer factor with a box filter first, then bicubic over the
        # last <2x (Pillow's thumbnail path): 2x faster than plain bicubic, same look.
        img = img.resize(self.inner, Image.Resampling.BICUBIC, box=self.box, reducing_gap=2.0)
        if self.s.channels == 1:
            img = img.convert("L")
        out = np.asarray(img)
        if out.ndim == 2:
            out = out[..., None]
        if self.s.resize == "pad":
            H, W = self.s.resolution
            canvas = np.zeros((H, W, out.shape[-1]), np.uint8)
            y0, x0 = (H - out.shape[0]) // 2, (W - out.shape[1]) // 2
            canvas[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] = out
            out = canvas
        return out


def decode_video(path: Path, name: str, s: DecodeSettings) -> dict:
    """Decode one source into clip frames. ``name`` is the path shown in reports.

    Returns ``{"frames": uint8 [n, H, W, C], "starts": int64 [k], "info": {...}}`` or, for a file
    to quarantine, ``{"error": "NAME: reason"}``. Never raises for bad input.
    """
    try:
        return _decode(Path(path), name, s)
    except KinemaError as err:
        # kinema.io names the file by its full path; reports use the path relative to SRC.
        msg = str(err).replace(str(path), name)
        return {"error": msg if msg.startswith(name) else f"{name}: {msg}"}
    except Exception as err:  # decoders raise many types for corrupt data; keep the run going
        first = (str(err).splitlines() or [""])[0]
        return {"error": f"{name}: unreadable ({type(err).__name__}: {first})"}


def _decode(path: Path, name: str, s: DecodeSettings) -> dict:
    info = probe(path, max_side=s.max_side)  # unreadable, audio-only, absurd sizes: refused here
    fit = _Fitter(s, name)
    times: list[float] = []
    # Video files without a display rotation: FFmpeg's scaler resizes while converting to RGB
    # (one pass over the decoded picture, no full-size RGB frame); frame folders and rotated
    # videos take the Pillow path.
    size = offset = None
    if s.scaler and not path.is_dir() and info.rotation == 0:
        size, offset = fit.scaled_plan(info.height, info.width)

    def timed():
        for frame, t in iter_frames(path, max_side=s.max_side, threads=s.threads, size=size):  # strict
            times.append(float(t))
            yield frame, t

    out: list[np.ndarray] = []
    src = fitted = None
    for frame in resample_fps(timed(), s.fps):
        if frame is not src:  # a held frame repeats as the same object: resize it once
            src, fitted = frame, (fit(frame) if size is None else fit.cut(frame, offset))
        out.append(fitted)
    if not times:
        raise KinemaError(f"{name}: no decodable video frames")
    times = np.unique(times)  # resample_fps skips frames whose timestamp does not advance
    intervals = np.diff(times)
    # For the report: the last frame shows for one typical frame interval (as resample_fps takes it).
    last = float(np.median(intervals)) if len(intervals) else 1.0 / s.fps
    n_src = len(times)
    duration = times[-1] + last - times[0]
    if len(out) < s.frames:
        raise KinemaError(f"{name}: too short, {n_src} frame(s) ({duration:.2f} s) give {len(out)} frame(s) "
                          f"at {s.fps:g} fps, fewer than one clip of {s.frames}")
    starts = clip_starts(len(out), s.frames, s.stride, s.max_clips_per_video)
    # Keep only frames some clip uses (stride > frames leaves gaps); clips stay contiguous.
    used = np.zeros(len(out), bool)
    for a in starts:
        used[a:a + s.frames] = True
    position = np.cumsum(used) - 1
    frames = np.stack([f for f, u in zip(out, used) if u])
    return {
        "frames": frames,
        "starts": position[starts],
        "info": {"path": name, "source_fps": round(len(intervals) / (times[-1] - times[0]), 4) if n_src > 1 else info.fps,
                 "source_frames": n_src, "duration": round(duration, 4), "width": info.width, "height": info.height,
                 "codec": info.codec, "variable_fps": info.variable_fps, "resampled_frames": len(out)},
    }
