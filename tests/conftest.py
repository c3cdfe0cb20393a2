"""Shared test fixtures: real encoded video files made with PyAV, in a fresh tmp folder per test.

Fixtures (all function-scoped, files under ``tmp_path``):

- ``video_factory(name, frames=16, size=(H, W), fps=25, codec="h264", content="ramp", gray=False,
  audio=False, rotation=None) -> Path``: an encoded file. ``name`` may contain sub-folders,
  spaces and non-ASCII; without an extension the codec's usual container is used. ``frames`` may
  also be your own uint8 ``[T, H, W, C]``. Codecs: see ``CODECS`` (h264, hevc (sides >= 64), vp9,
  av1, gif, mpeg4 (.avi), ffv1 (.mkv, lossless), mjpeg (.avi)); ``rotation`` writes a display
  matrix (counter-clockwise degrees, as phones do).
- ``frame_folder_factory(name, frames=16, size=(H, W), ext="png", content="ramp", ...) -> Path``:
  a folder of numbered frames ``1.png, 2.png, ..., 10.png`` (not zero-padded, so a plain string
  sort would get the order wrong).
- ``bad_file_factory(kind, name=None) -> Path`` for kind in ``BAD_KINDS``.
- ``synth_frames(content, frames, size, gray=False) -> uint8 [T, H, W, C]``: exactly the frames the
  factories encode (C = 1 for gray), for PSNR checks.
- ``counter_index(frame [H, W, C]) -> int``: which frame a decoded "counter" frame was.

Content: "ramp" is smooth (gradients plus a slowly moving soft blob) so lossy codecs reach a high
PSNR; "noise" is seeded uniform noise (the worst case for codecs); "counter" paints the whole
frame one flat colour that encodes the frame index (see ``counter_frame``), which survives lossy
coding, resizing and cropping.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

# codec -> (PyAV encoder, container extension, pixel format, encoder options). Quality is set high
# so fixture files stand in for "good" real-world clips.
CODECS = {
    "h264": ("libx264", ".mp4", "yuv420p", {"crf": "12", "preset": "veryfast"}),
    "hevc": ("libx265", ".mp4", "yuv420p", {"crf": "12", "preset": "ultrafast", "x265-params": "log-level=error"}),
    "vp9": ("libvpx-vp9", ".webm", "yuv420p", {"crf": "15", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    "av1": ("libsvtav1", ".mp4", "yuv420p", {"crf": "20", "preset": "12"}),
    "gif": ("gif", ".gif", "pal8", {}),  # one palette per file, made by Pillow (see _gif_frames)
    "mpeg4": ("mpeg4", ".avi", "yuv420p", {"b": "8M"}),
    "ffv1": ("ffv1", ".mkv", "bgr0", {}),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p", {"b": "8M"}),
}
# Audio codec by container, for ``audio=True``.
AUDIO = {".webm": "libopus", ".mkv": "aac", ".mp4": "aac", ".mov": "aac", ".avi": "libmp3lame"}
BAD_KINDS = ("empty", "text", "truncated", "truncated_moov", "audio_only", "one_frame", "vfr", "huge")
# The counter encodes frame i as R = 8 * (i % 32) + 4, G = 8 * (i // 32) + 4, B = 250: up to 1000
# frames, and a decoded level may drift by up to 3 before the index is misread. Gray counters are
# R = G = B = 8 * i + 4 (up to 32 frames); the blue level tells the two apart.
COUNTER_STEP = 8


def counter_frame(i: int, size: tuple[int, int]) -> np.ndarray:
    """Flat frame ``[H, W, 3]`` whose colour encodes index ``i`` (< 1024)."""
    r, g = i % 32, i // 32
    out = np.empty((*size, 3), np.uint8)
    out[..., 0] = COUNTER_STEP * r + 4
    out[..., 1] = COUNTER_STEP * g + 4
    out[..., 2] = 250
    return out


def counter_index_of(frame: np.ndarray) -> int:
    """Inverse of ``counter_frame`` on a decoded frame ``[H, W, C]`` (uses the central region's median)."""
    h, w = frame.shape[:2]
    centre = frame[h // 4: h - h // 4 or None, w // 4: w - w // 4 or None].reshape(-1, frame.shape[-1])
    med = np.median(centre, axis=0)
    if frame.shape[-1] == 1 or np.ptp(med) < 6:  # gray counter: intensity only
        return int(round((float(med[0]) - 4) / COUNTER_STEP))
    return int(round((med[0] - 4) / COUNTER_STEP)) + 32 * int(round((med[1] - 4) / COUNTER_STEP))


def make_frames(content: str, frames: int, size: tuple[int, int], gray: bool = False, seed: int = 0) -> np.ndarray:
    """Synthetic uint8 frames ``[T, H, W, C]`` (C = 1 if gray, else 3)."""
    h, w = size
    if content == "counter":
        if gray:  # intensity = step * i: distinct for up to 32 frames
            vid = np.stack([np.full((h, w, 1), COUNTER_STEP * (i % 32) + 4, np.uint8) for i in range(frames)])
        else:
            vid = np.stack([counter_frame(i, size) for i in range(frames)])
        return vid
    if content == "noise":
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (frames, h, w, 1 if gray else 3), dtype=np.uint8)
    if content != "ramp":
        raise ValueError(f"unknown content {content!r}")
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    out = []
    for t in range(frames):
        phase = t / max(frames, 1)
        # Gradients drifting slowly, plus a soft blob moving on a circle: smooth in space and time.
        cx, cy = 0.5 + 0.25 * np.cos(2 * np.pi * phase), 0.5 + 0.25 * np.sin(2 * np.pi * phase)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.03)
        # Colour only in linear gradients (which survive 4:2:0 chroma subsampling); the blob is grey.
        r = 30 + 150 * x * (1 - 0.3 * phase) + 60 * blob
        g = 30 + 150 * y + 60 * blob
        b = 190 - 60 * (x + y) + 60 * blob
        img = np.stack(np.broadcast_arrays(r, g, b), -1)
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    vid = np.stack(out)
    if gray:
        vid = np.rint(vid @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].clip(0, 255).astype(np.uint8)
    return vid


def _add_audio(container, ext: str):
    codec = AUDIO.get(ext, "aac")
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    return stream


def _audio_frames(stream, seconds: float):
    """Yield encoded packets of a 440 Hz tone lasting ``seconds``."""
    rate = 48000
    n = 960 if stream.codec_context.name in ("libopus", "opus") else (stream.codec_context.frame_size or 1024)
    total = int(seconds * rate)
    pts = 0
    while pts < total:
        t = (pts + np.arange(n)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format
        planar = np.stack([tone, tone])  # [channels, samples]
        arr = planar if fmt.is_planar else planar.T.reshape(1, -1)
        if fmt.name.startswith("s16"):
            arr = (arr * 32767).astype(np.int16)
        elif fmt.name.startswith("s32"):
            arr = (arr * 2**31 * 0.99).astype(np.int32)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt.name, layout="stereo")
        frame.sample_rate = rate
        frame.pts = pts
        pts += n
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _gif_frames(frames: np.ndarray) -> list:
    """RGB ``[T, H, W, 3]`` -> pal8 VideoFrames sharing one median-cut palette of all frames."""
    mosaic = Image.fromarray(frames.reshape(-1, *frames.shape[2:]))  # frames stacked vertically
    pal_img = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    rgb = np.zeros((256, 3), np.uint8)
    used = np.asarray(pal_img.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    rgb[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], 1)  # PyAV wants ARGB rows
    out = []
    for img in frames:
        idx = np.asarray(Image.fromarray(img).quantize(palette=pal_img, dither=Image.Dither.NONE))
        out.append(av.VideoFrame.from_ndarray((idx, argb), format="pal8"))
    return out


def encode_file(path: Path, frames: np.ndarray, fps=25, codec: str = "h264", audio: bool = False,
                rotation: int | None = None, pts: list[int] | None = None, time_base: Fraction | None = None,
                options: dict | None = None, container_options: dict | None = None) -> Path:
    """Encode uint8 ``frames [T, H, W, C]`` to ``path`` with PyAV (test helper; no atomicity needed)."""
    enc, _, pix_fmt, opts = CODECS[codec]
    if codec == "hevc" and min(frames.shape[1:3]) < 64:
        # The libx265 4.2 bundled with PyAV 18.1 corrupts the heap (the process dies) on some frame
        # sizes below 64 px, e.g. 48x48 or 30x46; kinema.io refuses them too.
        raise ValueError(f"hevc test clips need both sides >= 64 px, got {frames.shape[1:3]}")
    gray = frames.shape[-1] == 1
    # libx264 takes "gray" input as limited-range luma (levels shift), so it gets yuv420p like most real files.
    if gray and "gray" in {f.name for f in av.codec.Codec(enc, "w").video_formats} and codec not in ("gif", "h264"):
        pix_fmt = "gray"
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(100000)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(enc, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {**opts, **(options or {})}
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = _add_audio(container, path.suffix.lower()) if audio else None
        if codec == "gif":
            video = _gif_frames(np.repeat(frames, 3, -1) if gray else frames)
        else:
            video = [av.VideoFrame.from_ndarray(img[..., 0] if gray else img, format="gray" if gray else "rgb24")
                     for img in frames]
        for i, frame in enumerate(video):
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if astream is not None:
            for packet in _audio_frames(astream, len(frames) / float(rate)):
                container.mux(packet)
    return path


def _huge_gif(width: int, height: int) -> bytes:
    """A valid GIF whose logical screen is ``width x height`` but whose only image is 1x1 pixel.

    Costs a few bytes on disk, yet any decoder must allocate the full canvas: the cheap way to test
    that readers refuse absurd frame sizes before decoding.
    """
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW min code size 2; one sub-block (clear, pixel 0, end); terminator
    return header + image + data + b"\x3b"


@pytest.fixture
def synth_frames():
    return make_frames


@pytest.fixture
def counter_index():
    return counter_index_of


@pytest.fixture
def video_factory(tmp_path):
    def make(name: str, frames: int | np.ndarray = 16, size: tuple[int, int] = (64, 64), fps=25,
             codec: str = "h264", content: str = "ramp", gray: bool = False, audio: bool = False,
             rotation: int | None = None, **kwargs) -> Path:
        """``frames`` is a count (content made by ``make_frames``) or your own uint8 [T, H, W, C]."""
        path = tmp_path / name
        if not path.suffix:
            path = path.with_name(path.name + CODECS[codec][1])
        video = frames if isinstance(frames, np.ndarray) else make_frames(content, frames, size, gray)
        return encode_file(path, video, fps=fps, codec=codec, audio=audio, rotation=rotation, **kwargs)

    return make


@pytest.fixture
def frame_folder_factory(tmp_path):
    def make(name: str, frames: int = 16, size: tuple[int, int] = (64, 64), ext: str = "png",
             content: str = "ramp", gray: bool = False, pattern: str = "{}") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(make_frames(content, frames, size, gray), start=1):
            Image.fromarray(img[..., 0] if gray else img).save(folder / f"{pattern.format(i)}.{ext}", quality=95)
        return folder

    return make


@pytest.fixture
def bad_file_factory(tmp_path):
    def make(kind: str, name: str | None = None) -> Path:
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        ext = {"audio_only": ".mp4", "huge": ".gif"}.get(kind, ".mp4")
        path = folder / (name or f"{kind}{ext}")
        ramp = make_frames("ramp", 16, (32, 32))
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_text("this is not a video, just text with a video extension\n")
        elif kind in ("truncated", "truncated_moov"):
            # "truncated": index (moov) at the front, so the first half still decodes and the rest
            # is missing; "truncated_moov": index at the end and cut off, so nothing is readable.
            full = folder / f".full-{kind}.mp4"
            opts = {"movflags": "faststart"} if kind == "truncated" else None
            # Noise makes every frame about the same size, so half the bytes hold about half the frames.
            encode_file(full, make_frames("noise", 32, (32, 32)), codec="h264", container_options=opts)
            data = full.read_bytes()
            full.unlink()
            path.write_bytes(data[: len(data) // 2])
        elif kind == "audio_only":
            with av.open(str(path), "w") as container:
                stream = _add_audio(container, ".mp4")
                for packet in _audio_frames(stream, 0.5):
                    container.mux(packet)
        elif kind == "one_frame":
            encode_file(path, ramp[:1], codec="h264")
        elif kind == "vfr":
            # Irregular presentation times in milliseconds: 40, 40, 120, 20, ... ms between frames.
            steps = [40, 40, 120, 20, 40, 80, 40, 10]
            pts = [int(v) for v in np.cumsum([0] + [steps[i % len(steps)] for i in range(15)])]
            encode_file(path, ramp, codec="h264", pts=pts, time_base=Fraction(1, 1000))
        elif kind == "huge":
            path.write_bytes(_huge_gif(10000, 10000))
        else:
            raise ValueError(f"unknown bad file kind {kind!r}; known: {BAD_KINDS}")
        return path

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: tiny convolutions run faster on one thread than on
    two OpenMP threads contending for the 2 shared cores of a CI box."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """An untrained tiny dcgan export (32x32x16, 1 channel, width 8, weights from seed 0)."""
    import torch

    from kinema.models import build, save_generator

    torch.manual_seed(0)
    ms = build("dcgan", resolution=32, frames=16, channels=1, width=8)
    path = tmp_path_factory.mktemp("exp") / "export-000001k.safetensors"
    save_generator(path, ms.G.eval(), "dcgan", ms.kwargs, {"kimg": 1})
    return path


@pytest.fixture(scope="module")
def bars_archive(tmp_path_factory):
    """An archive of 32 clips of 4 frames, 32x32 gray: a noisy moving bar, so batches differ."""
    from kinema.data import prepare
    from kinema.io import write_video

    root = tmp_path_factory.mktemp("bars")
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = rng.integers(0, 40, (64, 32, 32, 1), dtype=np.uint8)
        for t in range(64):
            frames[t, :, (t + 7 * i) % 32] = 230
        write_video(root / "src" / f"bar{i}.mp4", frames, fps=8)
    return prepare(root / "src", root / "archive", resolution=32, frames=4, channels=1, workers=1, verbose=False)


# Comparing training runs (tests/test_runtime.py, tests/test_gpu.py).

def run_weights(result) -> dict:
    """The float tensors of G and D in a training result's state, as stored (dtype kept)."""
    from kinema.train.checkpoint import load_state

    state = load_state(result.state)
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items() if v.is_floating_point()}


def drift(a: dict, b: dict, start: dict) -> float:
    """How far run b ended from run a, relative to how far a moved from the initial weights."""
    import math

    moved = math.sqrt(sum(float(((a[k] - start[k]) ** 2).sum()) for k in a))
    apart = math.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))
    return apart / moved


def random_vgg(seed: int = 0):
    """kinema's VGG-19 feature network with seeded He-initialised weights (no download): for
    checking the style path's plumbing and speed, not its looks."""
    import torch

    from kinema.edit.style import VGG19Features

    torch.manual_seed(seed)
    net = VGG19Features()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
            torch.nn.init.normal_(m.bias, 0.0, 0.01)
    return net.eval()


# An independent Fréchet distance for metric tests (kinema's own uses two eigh calls).

def frechet_reference(x, y, ddof: int) -> float:
    """Fréchet distance between Gaussians fitted to features x [N, D] and y [M, D], covariances
    divided by N - ddof. tr (S1 S2)^(1/2) is the nuclear norm of A B^T, where S1 = A^T A and
    S2 = B^T B (A = centred x / sqrt(N - ddof)): the nonzero eigenvalues of S1 S2 are the squared
    singular values of A B^T. Exact for rank-deficient covariances (N << D)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a = (x - x.mean(0)) / np.sqrt(len(x) - ddof)
    b = (y - y.mean(0)) / np.sqrt(len(y) - ddof)
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum())
