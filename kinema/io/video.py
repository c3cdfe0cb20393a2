"""Reading videos: probe a file, stream its frames, or read a range of them into memory.

Sources are video files (anything PyAV/FFmpeg demuxes: mp4, mov, avi, mkv, webm, gif, ...) and
folders of numbered image frames (``frame_1.png``, ``frame_2.png``, ..., sorted naturally, so 10
comes after 9). Every frame comes out as uint8 RGB ``[H, W, 3]``: grey sources are expanded, audio
tracks are ignored, and rotation metadata (an iPhone's portrait clip is stored landscape with a
display matrix) is applied so frames are upright.

Every problem with a source is a one-line ``KinemaError`` naming the file. A file that decodes for
a while and then breaks (a truncated download) raises "truncated or corrupt after frame N" by
default; ``strict=False`` keeps the frames decoded so far and marks the result ``truncated``.
Decoding stops as soon as the requested range is complete, so a damaged tail is never seen when
only the head is asked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image, ImageOps

from kinema.errors import KinemaError

MAX_SIDE = 8192  # default limit per side: larger frames are refused before decoding
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FOLDER_FPS = 30.0
# A stream is called variable-frame-rate when its frame durations differ by more than this
# fraction of the median duration (timestamps are integers, so tiny jitter is normal).
VFR_TOLERANCE = 0.1
_PROBE_PACKETS = 2000  # packets demuxed by probe (no decoding) to count frames and check timing


@dataclass
class Video:
    """Decoded frames ``[T, H, W, 3]`` uint8 and their rate; ``truncated`` if the source broke early."""

    frames: np.ndarray
    fps: float
    truncated: bool = False


@dataclass
class VideoInfo:
    """What ``probe`` learns without decoding more than one frame.

    ``width``/``height`` are as displayed (after rotation). ``num_frames`` is exact for files up to
    a few thousand frames and estimated from duration x fps beyond that.
    """

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str
    rotation: int = 0
    variable_fps: bool = False
    has_audio: bool = False


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder``, naturally sorted (``2.png`` before ``10.png``); hidden files skipped."""
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _check_side(path, width: int, height: int, max_side: int | None) -> None:
    limit = MAX_SIDE if max_side is None else max_side
    if width <= 0 or height <= 0:
        raise KinemaError(f"{path}: video stream has no frame size (corrupt header)")
    if max(width, height) > limit:
        raise KinemaError(f"{path}: frame size {width}x{height} exceeds the limit of {limit} px per side")


def _open(path: Path):
    """Open a video file, turning every low-level failure into a one-line KinemaError."""
    if not path.exists():
        raise KinemaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise KinemaError(f"{path}: empty file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        with open(path, "rb") as f:
            head = f.read(12)
        if head[4:8] == b"ftyp":  # an mp4/mov that starts right but whose index never arrived
            raise KinemaError(f"{path}: truncated or corrupt mp4/mov (index missing; {_reason(err)})") from None
        raise KinemaError(f"{path}: not a video file ({_reason(err)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        problem = "no video stream (audio only)" if "audio" in kinds else "no video stream"
        raise KinemaError(f"{path}: {problem}")
    return container


def _reason(err: Exception) -> str:
    # FFmpeg messages often end with the (long) file name; keep just the reason.
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())


def _rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return 25.0


def _rgb(frame: av.VideoFrame, reformatter, size: tuple[int, int] | None = None,
         interpolation: str | None = None) -> np.ndarray:
    """Decoded frame -> upright uint8 ``[H, W, 3]`` (rotation applied); with ``size`` (width,
    height) FFmpeg's scaler resizes in the same pass as the colour conversion."""
    if size is not None:
        rgb = reformatter.reformat(frame, width=size[0], height=size[1], format="rgb24", interpolation=interpolation,
                                   src_color_range=frame.color_range, threads=1)
    else:
        rgb = reformatter.reformat(frame, format="rgb24", src_color_range=frame.color_range, threads=1)
    arr = rgb.to_ndarray()
    k = _rotation(frame) // 90 % 4
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270) from the display matrix."""
    # PyAV reads FFmpeg's DISPLAYMATRIX side data (the tkhd matrix of mp4/mov files); rotations
    # that are not multiples of 90 degrees do not occur in practice and are rounded.
    return int(round(frame.rotation / 90.0)) % 4 * 90


def probe(path: str | os.PathLike, fps: float | None = None, max_side: int | None = None) -> VideoInfo:
    """Size, rate, length, codec, rotation and timing regularity of a video file or frame folder.

    Demuxes packets (cheap, no decoding) to count frames and look at their timestamps, and decodes
    the first frame to learn the rotation. ``fps`` is the rate assumed for frame folders.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path, fps, max_side)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        _check_side(path, cc.width, cc.height, max_side)
        rate = _rate(stream)
        # Count packets and collect their timestamps (in stream time_base units); decode only
        # until the first frame comes out, to learn the rotation and prove the stream decodes.
        pts, count, complete, first = [], 0, True, None
        try:
            for packet in container.demux(stream):
                if first is None:
                    first = next(iter(stream.decode(packet)), None)
                if packet.size == 0:
                    continue  # flush packet at the end
                count += 1
                if packet.pts is not None:
                    pts.append(packet.pts)
                if count >= _PROBE_PACKETS:
                    complete = False
                    break
            if first is None:
                first = next(iter(stream.decode(None)), None)
        except av.error.FFmpegError as err:
            if first is None:
                raise KinemaError(f"{path}: cannot decode the first frame ({_reason(err)})") from None
            # Later damage is reported by iter_frames; probe describes what is there.
        if first is None:
            raise KinemaError(f"{path}: no decodable video frames")
        rotation = _rotation(first)
        duration = _duration(container, stream, pts if complete else [], rate)  # partial pts: use the header
        num_frames = count if complete else max(stream.frames, int(round(duration * rate)))
        variable = _is_variable(pts)
        if variable and duration > 0 and num_frames > 1:
            rate = num_frames / duration  # report the average rate of a VFR stream
        elif complete and len(pts) >= 3:
            rate = _timestamp_rate(pts, stream.time_base, rate)
        w, h = (cc.height, cc.width) if rotation % 180 else (cc.width, cc.height)
        return VideoInfo(str(path), w, h, rate, num_frames, duration, cc.codec.canonical_name, rotation, variable,
                         has_audio=bool(container.streams.audio))
    finally:
        container.close()


def _duration(container, stream, pts: list[int], rate: float) -> float:
    if len(pts) >= 2:
        ordered = sorted(pts)
        step = float(np.median(np.diff(ordered))) if len(ordered) > 1 else 0
        return float((ordered[-1] - ordered[0] + step) * stream.time_base)
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return len(pts) / rate


def _timestamp_rate(pts: list[int], time_base, header: float) -> float:
    """The rate the timestamps actually advance at, when it differs from the header's.

    Coarse time bases round every timestamp: a 30 fps GIF (1/100 s ticks) has delays of 30, 40,
    30, 30, 40 ms... and a header rate taken from the first delay (33.33 fps). A least-squares line
    through the sorted timestamps gives the true average (30 fps); rates within 0.1 % of a whole
    number are snapped to it."""
    ordered = np.sort(np.asarray(pts, np.float64))
    k = np.arange(len(ordered))
    if header > 0 and np.abs(ordered - ordered[0] - k / (header * float(time_base))).max() <= 1.01:
        return header  # the header's rate explains every timestamp to within the rounding of one tick
    slope = np.polyfit(k, ordered, 1)[0] * float(time_base)
    if not slope > 0:
        return header
    measured = 1.0 / slope
    whole = round(measured)
    return float(whole) if whole and abs(measured - whole) <= 1e-3 * measured else measured


def _is_variable(pts: list[int]) -> bool:
    if len(pts) < 3:
        return False
    deltas = np.diff(np.sort(np.asarray(pts, np.int64)))
    deltas = deltas[deltas > 0]
    if len(deltas) < 2:
        return False
    med = float(np.median(deltas))
    return bool(np.abs(deltas - med).max() > VFR_TOLERANCE * med + 1)


def _probe_folder(path: Path, fps: float | None, max_side: int | None) -> VideoInfo:
    files = list_frame_files(path)
    if not files:
        raise KinemaError(f"{path}: folder holds no image frames ({', '.join(IMAGE_EXTS)})")
    try:
        with Image.open(files[0]) as im:
            w, h = im.size
    except (OSError, ValueError) as err:
        raise KinemaError(f"{files[0]}: not an image ({_reason(err)})") from None
    _check_side(files[0], w, h, max_side)
    rate = float(fps or DEFAULT_FOLDER_FPS)
    codec = files[0].suffix.lower().lstrip(".").replace("jpg", "jpeg")
    return VideoInfo(str(path), w, h, rate, len(files), len(files) / rate, codec)


def iter_frames(path: str | os.PathLike, start: int = 0, num_frames: int | None = None, *,
                fps: float | None = None, max_side: int | None = None, threads: int = 0,
                strict: bool = True, size: tuple[int, int] | None = None, interpolation: str = "AREA",
                _state: dict | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """Stream ``(frame uint8 [H, W, 3], t_seconds)`` from a video file or frame folder.

    Memory stays bounded whatever the length. ``start``/``num_frames`` select a range of frame
    indices (decoding stops after it). ``t_seconds`` is the presentation time relative to the
    first frame, so variable-frame-rate sources can be resampled. ``fps`` is used for frame folders
    (default 30). ``threads=0`` lets FFmpeg pick (set 1 inside worker processes). With
    ``strict=False`` a source that breaks part-way ends the iteration quietly instead of raising.
    ``size`` (width, height; video files only) has FFmpeg's scaler (``interpolation``: AREA,
    BICUBIC, ...) resize each frame while converting it to RGB, before any rotation is applied:
    far cheaper than converting the full frame and resizing the array.
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path, start, num_frames, fps, max_side)
        return
    stop = None if num_frames is None else start + num_frames
    container = _open(path)
    index = 0
    try:
        stream = container.streams.video[0]
        _check_side(path, stream.codec_context.width, stream.codec_context.height, max_side)
        stream.thread_type = "AUTO"  # frame + slice threads; pays off from ~256 px up
        stream.thread_count = threads
        reformatter = av.video.reformatter.VideoReformatter()
        t0 = None
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else index / _rate(stream)
                t0 = t if t0 is None else t0
                if index >= start:
                    yield _rgb(frame, reformatter, size, interpolation), t - t0
                index += 1
                if stop is not None and index >= stop:
                    return  # the rest of the file is never decoded
        except av.error.FFmpegError as err:
            if strict:
                raise KinemaError(f"{path}: truncated or corrupt after frame {index} ({_reason(err)})") from None
            if _state is not None:
                _state["truncated"] = True
            return
        # An mp4/mov index (moov) lists every sample, so fewer decoded frames means the data
        # was cut off. (AVI headers count dropped-frame placeholders too: not trusted.)
        if "mp4" in container.format.name and stream.frames and index < stream.frames:
            if strict:
                raise KinemaError(f"{path}: truncated or corrupt after frame {index} "
                                  f"(header promises {stream.frames} frames)")
            if _state is not None:
                _state["truncated"] = True
        if index == 0 and strict:
            raise KinemaError(f"{path}: no decodable video frames")
    finally:
        container.close()


def _iter_folder(path: Path, start: int, num_frames: int | None, fps: float | None, max_side: int | None):
    files = list_frame_files(path)
    if not files:
        raise KinemaError(f"{path}: folder holds no image frames ({', '.join(IMAGE_EXTS)})")
    rate = float(fps or DEFAULT_FOLDER_FPS)
    stop = len(files) if num_frames is None else min(len(files), start + num_frames)
    size = None
    for i in range(start, stop):
        try:
            with Image.open(files[i]) as im:
                _check_side(files[i], *im.size, max_side)
                # Honour EXIF orientation (phone JPGs), like rotation metadata in video files.
                arr = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise KinemaError(f"{files[i]}: unreadable image frame ({_reason(err)})") from None
        if size is None:
            size = arr.shape
        elif arr.shape != size:
            raise KinemaError(f"{files[i]}: frame size {arr.shape[1]}x{arr.shape[0]} differs from "
                              f"the first frame's {size[1]}x{size[0]}")
        yield arr, (i - start) / rate


def read_video(path: str | os.PathLike, start: int = 0, num_frames: int | None = None,
               max_side: int | None = None, *, fps: float | None = None, threads: int = 0,
               strict: bool = True) -> Video:
    """Decode frames ``[start, start + num_frames)`` (all by default) into ``Video([T, H, W, 3], fps)``.

    ``max_side`` (default ``MAX_SIDE`` = 8192) refuses larger frames before decoding. Asking for
    more frames than exist returns the frames there are (check ``len(video.frames)``). See
    ``iter_frames`` for ``fps``, ``threads`` and ``strict``; with ``strict=False`` a damaged file
    returns the frames before the damage and ``truncated=True``.
    """
    info = probe(path, fps=fps, max_side=max_side)
    state = {"truncated": False}
    frames = [f for f, _ in iter_frames(path, start, num_frames, fps=fps, max_side=max_side,
                                        threads=threads, strict=strict, _state=state)]
    if frames:
        arr = np.stack(frames)
    else:
        arr = np.zeros((0, info.height, info.width, 3), np.uint8)
    return Video(arr, info.fps, state["truncated"])


def resample_fps(frames: Iterator[tuple[object, float]], fps: float) -> Iterator[object]:
    """Turn timed frames (as from ``iter_frames``) into a constant-rate stream at ``fps``.

    The one retiming rule of kinema (``kinema encode --fps`` and ``kinema prepare --fps`` both use
    it): **sample and hold**. Output frame k, at time k / fps after the first input frame, is the
    input frame on screen then, i.e. the last one that started at or before it; frames are
    repeated or dropped, never blended. It is what a player shows at that instant and needs no
    look-ahead, so a stream is resampled as it arrives. A frame whose timestamp does not advance
    past the previous one's is skipped. The last frame is taken to last one typical (median)
    frame interval, or 1 / fps for a single frame, and output frames are produced for every time
    before it stops showing. A constant-rate input at the same rate passes through unchanged.

    The frames themselves are passed through untouched (any object): a repeated frame is the same
    object again, so a consumer can process each source frame once. Holds one frame.
    """
    eps = 1e-6  # timestamps are rounded to the stream time base; a microsecond absorbs that
    k, t0, prev, prev_t, gaps = 0, None, None, None, []
    for frame, t in frames:
        t = float(t)
        t0 = t if t0 is None else t0
        t -= t0
        if prev is not None:
            if t <= prev_t:
                continue
            while k / fps < t - eps:  # output slots that start before this frame appears
                yield prev
                k += 1
            gaps.append(t - prev_t)
        prev, prev_t = frame, t
    if prev is not None:
        end = prev_t + (float(np.median(gaps)) if gaps else 1.0 / fps)
        while k / fps < end - eps:
            yield prev
            k += 1


def resample_times(times, fps: float) -> np.ndarray:
    """``resample_fps`` on timestamps alone: for each output frame, the index of the source frame
    it shows (int64 ``[m]``); ``times`` are the source frames' presentation times in seconds."""
    return np.fromiter(resample_fps(((i, t) for i, t in enumerate(times)), fps), dtype=np.int64)
