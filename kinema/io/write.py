"""Writing videos: uint8 frames ``[T, H, W, C]`` (C = 1 or 3) -> an encoded file, atomically.

Codecs (``CODECS``; the container follows the file extension, else the codec's default):

=========  ===========================  ==========  =======================================
name       encoder                      container   quality knobs (default)
=========  ===========================  ==========  =======================================
h264       libx264, yuv420p             .mp4        crf 0-51 (18), preset ultrafast..veryslow (medium)
hevc       libx265, yuv420p             .mp4        crf 0-51 (20), preset (fast); frames >= 64x64
vp9        libvpx-vp9, yuv420p          .webm       crf 0-63 (24), preset = cpu-used 0-8 (4)
av1        libsvtav1, yuv420p           .mp4        crf 1-63 (28), preset 0-13 (8)
gif        gif, 256-colour palette      .gif        palette from the first 64 frames
lossless   ffv1 (RGB, exact)            .mkv        in .mp4/.mov: libx264rgb crf 0 (also exact)
raw        rawvideo rgb24               .nut        for pipes into ffmpeg/ffplay
png        folder of numbered PNGs      (folder)    exact
=========  ===========================  ==========  =======================================

"lossless" is FFV1 in Matroska by default because it stores RGB exactly and every FFmpeg-based
tool reads it; libx264rgb is offered for .mp4/.mov targets (exact too, but few players know it).

yuv420p stores colour at half resolution, so those codecs need even sizes: ``odd="pad"`` repeats
the last row/column, ``odd="error"`` refuses. Colour is converted with BT.709 (limited range) and
tagged so, which is what players assume for modern video.

File targets are atomic (temporary beside the target, renamed on close; removed on error) and an
existing target is refused unless ``overwrite=True``. ``path="-"`` or a binary file object streams
instead (``format=`` picks the container, default mpegts/matroska/nut/gif by codec); streams
cannot be atomic.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from kinema.errors import KinemaError
from kinema.fsutil import atomic_dir, atomic_path, refuse_existing


@dataclass(frozen=True)
class CodecSpec:
    encoder: str
    ext: str  # default container extension
    pix_fmt: str
    crf: int | None = None
    preset: str | None = None
    even: bool = False  # 4:2:0 chroma needs even width and height
    min_side: int = 1
    stream_format: str = "matroska"  # container when writing to a pipe / file object


CODECS = {
    "h264": CodecSpec("libx264", ".mp4", "yuv420p", 18, "medium", even=True, stream_format="mpegts"),
    # libx265 4.2 as bundled with PyAV 18.1 corrupts the heap (the process dies) on frames below
    # 64 px per side (seen at 48x48, 40x40, 30x46), so smaller frames are refused.
    "hevc": CodecSpec("libx265", ".mp4", "yuv420p", 20, "fast", even=True, min_side=64, stream_format="mpegts"),
    "vp9": CodecSpec("libvpx-vp9", ".webm", "yuv420p", 24, "4", even=True),
    "av1": CodecSpec("libsvtav1", ".mp4", "yuv420p", 28, "8", even=True),
    "gif": CodecSpec("gif", ".gif", "pal8", stream_format="gif"),
    "lossless": CodecSpec("ffv1", ".mkv", "bgr0"),
    "raw": CodecSpec("rawvideo", ".nut", "rgb24", stream_format="nut"),
    "png": CodecSpec("png", "", "rgb24"),
}
EXT_CODEC = {".mp4": "h264", ".mov": "h264", ".m4v": "h264", ".mkv": "h264", ".ts": "h264", ".avi": "h264",
             ".webm": "vp9", ".gif": "gif", ".nut": "raw", "": "png"}
_FORMATS = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".mov": "mov", ".gif": "gif", ".nut": "nut",
            ".ts": "mpegts", ".avi": "avi", ".m4v": "mp4"}
GIF_PALETTE_FRAMES = 64  # frames (at most) the GIF palette is computed from


def codec_for(path: str | os.PathLike, codec: str | None) -> str:
    """Resolve ``codec`` (None = from the extension) and check it is known."""
    if codec is None:
        codec = EXT_CODEC.get(Path(str(path)).suffix.lower(), "h264")
    if codec not in CODECS:
        raise KinemaError(f"{path}: unknown codec {codec!r}; known: {', '.join(CODECS)}")
    return codec


def _rate(fps) -> Fraction:
    """fps (int, float, Fraction or "30000/1001") -> exact Fraction; 29.97 -> 30000/1001."""
    try:
        if isinstance(fps, (str, int, Fraction)):
            rate = Fraction(fps)
        else:
            fps = float(fps)
            ntsc = round(fps * 1.001)  # NTSC-style rates are n * 1000/1001 (29.97, 23.976, 59.94)
            if abs(fps - round(fps)) > 1e-6 and abs(fps - ntsc * 1000 / 1001) < 5e-4:
                rate = Fraction(ntsc * 1000, 1001)
            else:
                rate = Fraction(fps).limit_denominator(1001)
    except (ValueError, ZeroDivisionError, TypeError):
        raise KinemaError(f"fps must be a positive number or a ratio like 30000/1001, got {fps!r}") from None
    if rate <= 0:
        raise KinemaError(f"fps must be positive, got {fps}")
    return rate


def _encoder_options(spec: CodecSpec, crf, preset) -> dict[str, str]:
    crf = spec.crf if crf is None else crf
    preset = spec.preset if preset is None else preset
    name = spec.encoder
    if name == "libx264":
        return {"crf": str(crf), "preset": str(preset)}
    if name == "libx264rgb":
        return {"crf": "0", "preset": str(preset or "medium")}
    if name == "libx265":
        return {"crf": str(crf), "preset": str(preset), "x265-params": "log-level=error"}
    if name == "libvpx-vp9":  # constant quality mode needs b=0
        return {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": str(preset), "row-mt": "1"}
    if name == "libsvtav1":
        return {"crf": str(crf), "preset": str(preset)}
    return {}


class VideoWriter:
    """Streaming encoder: ``write`` frames as they come (memory stays bounded), ``close`` to finish.

    ``path`` is a file (atomic: appears on ``close``; an exception inside ``with`` removes the
    temporary and leaves any old file untouched), a folder for ``codec="png"``, ``"-"`` for stdout,
    or a binary file object. The frame size is taken from the first frame written.
    """

    def __init__(self, path, fps, codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 odd: str = "pad", overwrite: bool = False, format: str | None = None,
                 options: dict[str, str] | None = None):
        self.stream_out = path == "-" or hasattr(path, "write")
        self.path = "<stdout>" if path == "-" else getattr(path, "name", "<stream>") if self.stream_out else Path(path)
        self.codec = codec_for(self.path, codec or "h264") if self.stream_out else codec_for(self.path, codec)
        if odd not in ("pad", "error"):
            raise KinemaError(f"odd must be 'pad' or 'error', got {odd!r}")
        self.rate, self.odd, self.frames_written = _rate(fps), odd, 0
        self.spec = CODECS[self.codec]
        ext = "" if self.stream_out else self.path.suffix.lower()
        if self.codec == "lossless" and ext in (".mp4", ".mov", ".m4v"):
            self.spec = CodecSpec("libx264rgb", ext, "bgr0", stream_format="matroska")
        self.options = {**_encoder_options(self.spec, crf, preset), **(options or {})}
        self._stack = contextlib.ExitStack()
        self._container = self._stream = self._size = self._reformatter = None
        self._gif_pending, self._palette = [], None
        if self.stream_out:
            if self.codec == "png":
                raise KinemaError("png folders cannot be streamed; give a folder path")
            target = sys.stdout.buffer if path == "-" else path
            self._open_container(target, format or self.spec.stream_format)
            return
        if self.codec == "png":
            self._tmp = self._stack.enter_context(atomic_dir(self.path, force=overwrite))
            return
        refuse_existing(self.path, overwrite)
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        # Unknown or missing extension: the codec's usual container, named explicitly.
        fmt = format or _FORMATS.get(ext) or _FORMATS.get(self.spec.ext)
        # mp4/mov: move the index to the front on close, so playback (and a cut-off download) can
        # start before the end of the file. Needs a seekable file, so files only.
        self._open_container(str(self._tmp), fmt, {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {})

    def _open_container(self, target, fmt, opts=None):
        try:
            self._container = av.open(target, "w", format=fmt, options=opts or {})
        except (av.error.FFmpegError, ValueError, OSError) as err:
            self._fail(f"cannot open for writing ({err})")

    def _fail(self, problem: str):
        self.abort()
        raise KinemaError(f"{self.path}: {problem}")

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of the frames written so far (before odd-size padding); None before the first."""
        return self._size

    # ---- frames in ---------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``[T, H, W, C]`` or one frame ``[H, W, C]``, uint8, C in {1, 3}."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
            self._fail(f"frames must be uint8 [T, H, W, C] with C in (1, 3), got {frames.dtype} "
                       f"{tuple(frames.shape)} (use kinema.io.to_uint8 for model tensors)")
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)  # grey -> RGB: every encoder takes RGB
        for img in frames:
            self._write_one(self._fix_size(img))

    def _fix_size(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if self._size is None:
            if max(h, w) > 16384 or min(h, w) < self.spec.min_side:
                self._fail(f"{self.codec} cannot encode {w}x{h} frames (sides must be "
                           f"{self.spec.min_side}..16384 px)")
            if self.spec.even and (h % 2 or w % 2):
                if self.odd == "error":
                    self._fail(f"frame size {w}x{h} is odd; {self.codec} (yuv420p) needs even width and "
                               f"height (use odd='pad' to repeat the last row/column)")
            self._size = (h, w)
            self._padded = (h + h % 2, w + w % 2) if self.spec.even else (h, w)
        elif (h, w) != self._size:
            self._fail(f"frame {self.frames_written} is {w}x{h} but the video is {self._size[1]}x{self._size[0]}")
        ph, pw = self._padded
        if (ph, pw) != (h, w):
            img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        return img

    def _write_one(self, img: np.ndarray) -> None:
        if self.codec == "png":
            name = self._tmp / f"{self.frames_written:06d}.png"
            Image.fromarray(img).save(name, compress_level=3)  # level 3: ~same size, much faster than 6
            self.frames_written += 1
            return
        if self.codec == "gif" and self._palette is None:
            # Buffer the head of the video to build one palette for all frames (bounded memory).
            self._gif_pending.append(img)
            if len(self._gif_pending) >= GIF_PALETTE_FRAMES:
                self._flush_gif()
            return
        self._encode(img)

    def _flush_gif(self):
        if not self._gif_pending:
            return
        self._palette = _palette(np.stack(self._gif_pending))
        pending, self._gif_pending = self._gif_pending, []
        for img in pending:
            self._encode(img)

    def _encode(self, img: np.ndarray) -> None:
        if self._stream is None:
            self._add_stream(*img.shape[:2])
        if self.codec == "gif":
            frame = _pal8_frame(img, self._palette)
        else:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if self.spec.pix_fmt.startswith("yuv"):
                frame = self._reformatter.reformat(frame, format=self.spec.pix_fmt, dst_colorspace="ITU709",
                                                   dst_color_range="MPEG", threads=1)
                frame.colorspace, frame.color_range = 1, 1  # BT.709, limited range (FFmpeg enum values)
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, ValueError) as err:
            self._fail(f"{self.codec} encoding failed at frame {self.frames_written} ({err})")
        self.frames_written += 1

    def _add_stream(self, h: int, w: int) -> None:
        if self.spec.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder unless told
        try:
            stream = self._container.add_stream(self.spec.encoder, rate=self.rate, options=self.options)
            stream.width, stream.height, stream.pix_fmt = w, h, self.spec.pix_fmt
            stream.codec_context.time_base = 1 / self.rate
            if self.spec.pix_fmt.startswith("yuv"):
                cc = stream.codec_context
                cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # BT.709, limited
            if self.spec.encoder == "libx265" and self._container.format.name.startswith("mp4"):
                stream.codec_tag = "hvc1"  # the tag Apple players require for HEVC in mp4
        except (av.error.FFmpegError, ValueError) as err:
            self._fail(f"cannot store {self.codec} in a {self._container.format.name} container ({err})")
        self._stream, self._reformatter = stream, av.video.reformatter.VideoReformatter()

    # ---- finishing ---------------------------------------------------------------------------

    def close(self) -> Path | None:
        """Flush the encoder and finish the file (renamed into place). Returns the path written."""
        if self._stack is None:
            return None if self.stream_out else self.path
        if self.codec == "gif":
            self._flush_gif()
        if self.frames_written == 0:
            self._fail("no frames were written")
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            if self._container is not None:
                self._container.close()
        except (av.error.FFmpegError, ValueError, OSError) as err:
            self._fail(f"finishing the file failed ({err})")
        self._container = None
        stack, self._stack = self._stack, None
        stack.close()  # rename the temporary into place
        return None if self.stream_out else self.path

    def abort(self) -> None:
        """Stop without a result: the temporary file/folder is removed, the target left as it was."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            err = KinemaError(f"{self.path}: writing aborted")
            stack.__exit__(KinemaError, err, None)  # an exception tells atomic_* to clean up

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):
        # Never commit a half-written file: an unclosed writer is aborted when collected.
        with contextlib.suppress(Exception):
            self.abort()


def frames_and_path(a, b):
    """(frames, path) from two arguments given in either order: ``write_video(path, frames)`` and
    ``kinema.save_video(frames, path)`` accept both, so a swapped call does what was meant."""
    if isinstance(a, (str, os.PathLike)) and not isinstance(b, (str, os.PathLike)):
        return b, a
    return a, b


def write_video(path, frames: np.ndarray, fps, codec: str | None = None, crf: int | None = None,
                preset: str | None = None, odd: str = "pad", overwrite: bool = False, force: bool | None = None,
                **kwargs) -> Path | None:
    """Encode ``frames [T, H, W, C]`` uint8 (C in {1, 3}) to ``path`` at ``fps``; see the module doc.

    ``codec=None`` picks from the extension (.mp4 -> h264, .webm -> vp9, .gif, .nut -> raw, no
    extension -> png folder). An existing ``path`` is refused unless ``overwrite=True`` (``force``
    is the same switch, as in ``kinema.save_video``); ``write_video(frames, path, ...)``, the order
    of ``kinema.save_video``, is accepted too. Extra keyword arguments (``format``, ``options``) go
    to ``VideoWriter``.
    """
    frames, path = frames_and_path(frames, path)
    overwrite = overwrite if force is None else force
    with VideoWriter(path, fps, codec, crf=crf, preset=preset, odd=odd, overwrite=overwrite, **kwargs) as writer:
        writer.write(frames)
    return writer.path if not writer.stream_out else None


def _palette(frames: np.ndarray) -> Image.Image:
    """Median-cut 256-colour palette (a Pillow "P" image) of frames ``[T, H, W, 3]``."""
    step = max(1, int(np.sqrt(frames.shape[1] * frames.shape[2] * len(frames) / 2e6)))  # cap work at ~2 Mpx
    sub = frames[:, ::step, ::step]
    mosaic = sub.reshape(-1, sub.shape[2], 3)  # frames stacked vertically
    return Image.fromarray(np.ascontiguousarray(mosaic)).quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def _pal8_frame(img: np.ndarray, palette: Image.Image) -> av.VideoFrame:
    # No dithering: dither patterns change from frame to frame and flicker in animations.
    idx = np.asarray(Image.fromarray(img).quantize(palette=palette, dither=Image.Dither.NONE))
    rgb = np.zeros((256, 3), np.uint8)
    used = np.asarray(palette.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    rgb[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], 1)  # PyAV takes [256, 4] ARGB rows
    return av.VideoFrame.from_ndarray((idx, argb), format="pal8")
