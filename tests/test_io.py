"""kinema.io: reading, writing, grids and ``kinema encode`` on real files made with PyAV (see conftest)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from kinema.cli import main
from kinema.errors import KinemaError
from kinema.io import (CODECS, VideoWriter, iter_frames, probe, read_video, resample_fps, tile, write_grid_png,
                       write_grid_video, write_video)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "av1", "gif", "mpeg4", "ffv1", "mjpeg"])
def test_read_every_container(video_factory, counter_index, codec):
    size = (64, 80) if codec == "hevc" else (30, 46)  # odd multiples of 2, and odd for gif/ffv1
    if codec in ("gif", "ffv1"):
        size = (31, 45)
    path = video_factory(f"sub dir/clip ü é {codec}", frames=12, size=size, fps=20, codec=codec, content="counter")
    info = probe(path)
    assert (info.height, info.width, info.num_frames, info.variable_fps) == (*size, 12, False)
    assert info.fps == pytest.approx(20)
    video = read_video(path)
    assert video.frames.shape == (12, *size, 3) and video.frames.dtype == np.uint8
    assert [counter_index(f) for f in video.frames] == list(range(12))


def test_range_and_times_stream(video_factory, counter_index):
    path = video_factory("count.mp4", frames=30, size=(32, 32), fps=25, content="counter")
    assert [counter_index(f) for f in read_video(path, start=5, num_frames=3).frames] == [5, 6, 7]
    assert len(read_video(path, start=28, num_frames=10).frames) == 2  # asking past the end: what exists
    times = [t for _, t in iter_frames(path)]
    assert times == pytest.approx([i / 25 for i in range(30)])


def test_rotation_metadata_applied(video_factory):
    # 32x64 (H x W) frames with a bright block in the top-left corner, stored with a display matrix
    # asking for a 90 degree counter-clockwise turn: upright they are 64x32, block bottom-left.
    frames = np.full((4, 32, 64, 3), 40, np.uint8)
    frames[:, :8, :16] = 230
    for rotation, corner in [(90, (slice(-16, None), slice(None, 8))), (-90, (slice(None, 16), slice(-8, None)))]:
        path = video_factory(f"rot{rotation}.mp4", frames=frames, rotation=rotation)
        info = probe(path)
        assert (info.width, info.height, info.rotation) == (32, 64, rotation % 360)
        got = read_video(path).frames
        assert got.shape == (4, 64, 32, 3)
        assert got[0][corner].mean() > 200 and got[0].mean() < 70
        assert np.allclose(got[0].astype(float), np.rot90(frames[0], rotation // 90).astype(float), atol=12)


@pytest.mark.parametrize("codec", ["hevc", "ffv1", "h264"])
def test_gray_sources_expand_to_rgb(video_factory, synth_frames, codec):
    path = video_factory(f"gray_{codec}", codec=codec, gray=True, size=(64, 64), frames=6)
    got = read_video(path).frames
    ref = synth_frames("ramp", 6, (64, 64), gray=True)
    assert got.shape == (6, 64, 64, 3)
    assert np.abs(got[..., 0].astype(int) - got[..., 2]).max() <= 3  # grey stays grey
    assert psnr(got[..., :1], ref) > (60 if codec == "ffv1" else 38)


@pytest.mark.parametrize("codec", ["h264", "vp9", "mpeg4"])
def test_audio_track_ignored(video_factory, codec):
    path = video_factory(f"with_audio_{codec}", codec=codec, audio=True, frames=10, size=(32, 48))
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1  # the fixture really muxed audio
    assert probe(path).has_audio
    assert read_video(path).frames.shape == (10, 32, 48, 3)


def test_frame_folders(frame_folder_factory, counter_index, tmp_path):
    folder = frame_folder_factory("frames ü", frames=12, content="counter", size=(24, 40))
    # 1.png .. 12.png: a plain string sort would put 10 before 2.
    video = read_video(folder, fps=12.5)
    assert [counter_index(f) for f in video.frames] == list(range(12)) and video.fps == 12.5
    assert probe(folder).num_frames == 12 and probe(folder).fps == 30  # default rate
    jpgs = frame_folder_factory("jpgs", frames=5, ext="jpg", gray=True, pattern="img_{:03d}")
    assert read_video(jpgs).frames.shape == (5, 64, 64, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KinemaError, match="no image frames"):
        read_video(tmp_path / "empty")


BAD = {
    "empty": "empty file", "text": "not a video file", "truncated": r"truncated or corrupt after frame \d+",
    "truncated_moov": r"truncated or corrupt mp4/mov \(index missing", "audio_only": r"no video stream \(audio only\)",
    "huge": "10000x10000 exceeds the limit of 8192",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_one_line_error_naming_the_file(bad_file_factory, kind):
    path = bad_file_factory(kind)
    calls = [read_video, lambda p: list(iter_frames(p))]
    if kind != "truncated":  # probe describes the intact head of a truncated file
        calls.append(probe)
    for call in calls:
        with pytest.raises(KinemaError, match=BAD[kind]) as err:
            call(path)
        message = str(err.value)
        assert "\n" not in message and str(path) in message


def test_truncated_file_modes(bad_file_factory):
    path = bad_file_factory("truncated")
    partial = read_video(path, strict=False)
    assert partial.truncated and 0 < len(partial.frames) < 32
    head = read_video(path, num_frames=2)  # the damage lies past the range: never decoded
    assert len(head.frames) == 2 and not head.truncated


def test_one_frame_vfr_and_size_limit(bad_file_factory, video_factory):
    assert read_video(bad_file_factory("one_frame")).frames.shape[0] == 1
    vfr = probe(bad_file_factory("vfr"))
    assert vfr.variable_fps and vfr.num_frames == 16
    assert vfr.fps == pytest.approx(16 / vfr.duration)  # average rate of the irregular stream
    assert not probe(video_factory("cfr.mp4", frames=8, size=(32, 32))).variable_fps
    with pytest.raises(KinemaError, match="exceeds the limit of 16"):
        probe(video_factory("small.mp4", frames=2, size=(32, 32)), max_side=16)


# ---- writing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec,target", [("lossless", "a.mkv"), ("lossless", "a.mp4"), ("png", "frames"),
                                          ("raw", "a.nut")])
def test_lossless_round_trip_is_exact(tmp_path, synth_frames, codec, target):
    frames = synth_frames("noise", 8, (33, 47))  # noise and odd sizes: nothing to hide behind
    write_video(tmp_path / target, frames, 24, codec=codec)
    assert np.array_equal(read_video(tmp_path / target, fps=24).frames, frames)


# Measured on the 64x64 "ramp" clip (default settings unless given): h264 crf 18 41.3 dB,
# hevc crf 20 40.7, vp9 crf 24 41.0, av1 crf 28 40.9. The ceiling is the 4:2:0 colour subsampling
# itself: h264 at crf 0 reaches only 43.0 dB. Thresholds sit ~0.5-1 dB below the measurements so
# that another CPU's SIMD paths cannot flip them.
@pytest.mark.parametrize("codec,crf,min_db", [("h264", 18, 40.0), ("hevc", None, 39.5), ("vp9", None, 39.5),
                                              ("av1", None, 39.5)])
def test_lossy_round_trip_psnr(tmp_path, synth_frames, codec, crf, min_db):
    frames = synth_frames("ramp", 16, (64, 64))
    path = write_video(tmp_path / f"out{CODECS[codec].ext}", frames, 25, codec=codec, crf=crf)
    got = read_video(path)
    assert got.frames.shape == frames.shape and got.fps == 25
    assert psnr(got.frames, frames) >= min_db
    assert probe(path).codec == {"h264": "h264", "hevc": "hevc", "vp9": "vp9", "av1": "av1"}[codec]


def test_gif_and_gray_input(tmp_path, synth_frames, counter_index):
    counter = synth_frames("counter", 20, (31, 45))
    gif = write_video(tmp_path / "c.gif", counter, 10)
    got = read_video(gif)
    assert got.frames.shape == (20, 31, 45, 3) and [counter_index(f) for f in got.frames] == list(range(20))
    assert psnr(read_video(write_video(tmp_path / "r.gif", synth_frames("ramp", 8, (32, 32)), 10)).frames,
                synth_frames("ramp", 8, (32, 32))) > 30
    gray = synth_frames("ramp", 6, (32, 32), gray=True)  # [T, H, W, 1]
    back = read_video(write_video(tmp_path / "g.mkv", gray, 10, codec="lossless")).frames
    assert np.array_equal(back, np.repeat(gray, 3, -1))


@pytest.mark.parametrize("fps,expected", [(Fraction(30000, 1001), Fraction(30000, 1001)),
                                          (29.97, Fraction(30000, 1001)), ("24000/1001", Fraction(24000, 1001)),
                                          (12.5, Fraction(25, 2))])
def test_fractional_fps_preserved(tmp_path, synth_frames, fps, expected):
    path = write_video(tmp_path / "f.mp4", synth_frames("ramp", 6, (32, 32)), fps, preset="ultrafast")
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == expected
    assert read_video(path).fps == pytest.approx(float(expected), abs=1e-9)


def test_odd_sizes_padded_or_refused(tmp_path, synth_frames):
    frames = synth_frames("ramp", 6, (33, 45))
    got = read_video(write_video(tmp_path / "pad.mp4", frames, 25, crf=10)).frames
    assert got.shape == (6, 34, 46, 3)  # padded to even by repeating the last row and column
    assert psnr(got[:, :33, :45], frames) > 38
    assert psnr(got[:, 33, :45], frames[:, 32]) > 35 and psnr(got[:, :33, 45], frames[:, :, 44]) > 35
    with pytest.raises(KinemaError, match=r"45x33 is odd.*even") as err:
        write_video(tmp_path / "refuse.mp4", frames, 25, odd="error")
    assert "refuse.mp4" in str(err.value)
    assert listing(tmp_path) == ["pad.mp4"]  # the refused write left nothing behind
    with pytest.raises(KinemaError, match="64"):
        write_video(tmp_path / "small_hevc.mp4", frames, 25, codec="hevc")  # libx265 crashes below 64 px


def test_atomic_writes(tmp_path, synth_frames):
    frames = synth_frames("ramp", 8, (32, 32))
    target = tmp_path / "v.mp4"
    # An exception in the middle of streaming: no target, no temporary left.
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 25) as writer:
            writer.write(frames[:4])
            raise RuntimeError("generator crashed")
    assert listing(tmp_path) == []
    # An existing target is refused, and survives a failed overwrite byte for byte.
    write_video(target, frames, 25)
    before = target.read_bytes()
    with pytest.raises(KinemaError, match="already exists"):
        write_video(target, frames, 25)
    with pytest.raises(KinemaError, match="uint8"):
        write_video(target, frames.astype(np.float32), 25, overwrite=True)
    with pytest.raises(KinemaError, match="differs|but the video is"):
        with VideoWriter(target, 25, overwrite=True) as writer:
            writer.write(frames)
            writer.write(synth_frames("ramp", 2, (16, 16)))
    assert target.read_bytes() == before and listing(tmp_path) == ["v.mp4"]
    with pytest.raises(KinemaError, match="unknown codec 'mpeg2'.*h264, hevc, vp9, av1, gif, lossless"):
        write_video(tmp_path / "x.mp4", frames, 25, codec="mpeg2")
    # png folders are replaced whole or not at all, too.
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "pngs", 25, codec="png") as writer:
            writer.write(frames)
            raise RuntimeError
    assert listing(tmp_path) == ["v.mp4"]


def test_streaming_writer_to_file_objects(tmp_path, synth_frames, counter_index):
    frames = synth_frames("counter", 40, (32, 32))
    buf = io.BytesIO()
    with VideoWriter(buf, 25, "h264", format="mpegts", preset="ultrafast") as writer:
        for f in frames:  # one frame at a time, as a sampler streams them
            writer.write(f)
    buf.seek(0)
    with av.open(buf, format="mpegts") as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [counter_index(f) for f in got] == list(range(40))
    raw = io.BytesIO()
    write_video(raw, frames, 25, codec="raw", format="nut")
    raw.seek(0)
    with av.open(raw, format="nut") as c:
        assert np.array_equal(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]), frames)


# ---- grids --------------------------------------------------------------------------------------

def test_grids(tmp_path, synth_frames):
    videos = np.stack([synth_frames("counter", 4, (8, 10))] * 5)  # [5, 4, 8, 10, 3]
    videos[3] = 0
    grid = tile(videos, pad=2)  # 3 columns x 2 rows
    assert grid.shape == (4, 2 + 2 * 10, 2 + 3 * 12, 3)
    assert np.array_equal(grid[:, 12:20, 2:12], videos[3]) and np.array_equal(grid[:, 2:10, 14:24], videos[1])
    assert grid[:, 12:20, 26:36].max() == 0  # the empty sixth cell
    png = write_grid_png(tmp_path / "g.png", videos)  # rows = videos, columns = frames
    assert Image.open(png).size == (2 + 4 * 12, 2 + 5 * 10)
    assert Image.open(write_grid_png(tmp_path / "one.png", videos, frame=-1, cols=5)).size == (62, 12)
    model_out = torch.rand(2, 3, 4, 16, 16) * 2 - 1  # generator output [B, C, T, H, W] in [-1, 1]
    mp4 = write_grid_video(tmp_path / "g.mp4", model_out, fps=8, preset="ultrafast")
    assert read_video(mp4).frames.shape == (4, 2 + 18, 2 + 2 * 18, 3)


def test_resample_fps():
    times = [0.0, 0.04, 0.08, 0.12, 0.16, 0.20]
    timed = [(np.full((1, 1, 3), i, np.uint8), t) for i, t in enumerate(times)]
    assert [int(f[0, 0, 0]) for f in resample_fps(iter(timed), 25)] == [0, 1, 2, 3, 4, 5]
    assert [int(f[0, 0, 0]) for f in resample_fps(iter(timed), 50)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    vfr = [(np.full((1, 1, 3), i, np.uint8), t) for i, t in enumerate([0.0, 0.1, 0.15, 0.4])]
    # The last frame lasts the median interval (0.1 s), not the 0.25 s gap before it.
    assert [int(f[0, 0, 0]) for f in resample_fps(iter(vfr), 10)] == [0, 1, 2, 2, 3]
    assert [int(f[0, 0, 0]) for f in resample_fps(iter(timed), 12.5)] == [0, 2, 4]


# ---- kinema encode ------------------------------------------------------------------------------

def test_encode_cli(tmp_path, video_factory, frame_folder_factory, counter_index, capsys):
    src = video_factory("in put ü.mp4", frames=20, size=(32, 48), fps=25, content="counter")
    out = tmp_path / "out.webm"
    assert main(["encode", str(src), str(out)]) == 0
    assert probe(out).codec == "vp9" and [counter_index(f) for f in read_video(out).frames] == list(range(20))
    assert main(["encode", str(src), str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    # Halving the rate keeps every other frame; --start/--frames pick the range.
    assert main(["encode", str(src), str(tmp_path / "half.gif"), "--fps", "12.5", "--start", "4",
                 "--frames", "8", "--force"]) == 0
    assert [counter_index(f) for f in read_video(tmp_path / "half.gif").frames] == [4, 6, 8, 10]
    folder = frame_folder_factory("pngs", frames=6, size=(31, 33))
    assert main(["encode", str(folder), str(tmp_path / "f.mkv"), "--codec", "lossless", "--fps", "24000/1001"]) == 0
    assert read_video(tmp_path / "f.mkv").fps == pytest.approx(24000 / 1001)
    assert main(["encode", str(tmp_path / "nope.mp4"), str(tmp_path / "x.mp4")]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err
    # Streaming to stdout in a real process: bytes a decoder reads back.
    proc = subprocess.run([sys.executable, "-m", "kinema", "encode", str(src), "-", "--codec", "raw",
                           "--format", "nut"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    with av.open(io.BytesIO(proc.stdout), format="nut") as c:
        assert sum(1 for _ in c.decode(video=0)) == 20
