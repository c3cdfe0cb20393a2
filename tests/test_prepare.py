"""prepare: real encoded videos in, archive out; bad files quarantined; atomic; fps resampling."""

import json
import math
import os

import numpy as np
import pytest

from kinema.cli import main as cli_main
from kinema.data import open_archive, prepare, resolve_source
from kinema.data.decode import clip_starts
from kinema.io import read_video, resample_times
from kinema.errors import KinemaError


def _litter(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith((".tmp-", ".old-")))


def _expected_clips(n_src, src_fps, fps, frames, stride):
    """Clips of a constant-rate video: n_src frames last n_src / src_fps seconds."""
    m = math.ceil(n_src * fps / src_fps - 1e-6)  # resampled frames
    return 0 if m < frames else (m - frames) // stride + 1


def test_prepare_folder_of_real_videos(tmp_path, tmp_path_factory, video_factory, frame_folder_factory,
                                       bad_file_factory):
    # SRC = tmp_path: class folders "cats ü" (spaces, non-ASCII), "dogs", "bad"; one file at the top.
    good = {  # relative name -> (frames, source fps); all have to give clips at 10 fps x 8 frames
        "cats ü/a.mp4": (48, 30), "cats ü/b ü é.webm": (40, 25), "dogs/c.avi": (36, 24),
        "dogs/frames_d": (24, 30), "loose.gif": (20, 10),
    }
    video_factory("cats ü/a.mp4", frames=48, size=(48, 64), fps=30, codec="h264", audio=True)
    video_factory("cats ü/b ü é.webm", frames=40, size=(64, 48), fps=25, codec="vp9")
    video_factory("dogs/c.avi", frames=36, size=(40, 40), fps=24, codec="mpeg4")
    frame_folder_factory("dogs/frames_d", frames=24, size=(36, 36))  # frame folders default to 30 fps
    video_factory("loose.gif", frames=20, size=(32, 32), fps=10, codec="gif")
    video_factory("cats ü/short.mkv", frames=12, size=(32, 32), fps=25, codec="ffv1")  # 5 frames at 10 fps
    bad = {kind: bad_file_factory(kind) for kind in ("empty", "text", "truncated", "truncated_moov", "audio_only",
                                                     "one_frame", "huge")}
    vfr = bad_file_factory("vfr")
    out = tmp_path_factory.mktemp("out") / "arch ü"
    archive = prepare(tmp_path, out, resolution=16, frames=8, fps=10, workers=2)

    expected = {k: _expected_clips(n, f, 10, 8, 8) for k, (n, f) in good.items()}
    assert min(expected.values()) >= 1
    by_path = {v["path"]: v for v in archive.videos}
    for name, count in expected.items():
        assert by_path[name]["clips"][1] == count, name
    # The VFR file (16 frames over 0.81 s of irregular timestamps) is resampled, noted, and kept.
    assert by_path["bad/vfr.mp4"]["variable_fps"] and by_path["bad/vfr.mp4"]["clips"][1] == 1
    assert "bad/vfr.mp4" in archive.report["variable_fps"]
    assert archive.num_clips == sum(expected.values()) + 1
    assert archive.class_names == ["bad", "cats ü", "dogs"]
    assert archive.clips(range(archive.num_clips)).shape == (archive.num_clips, 8, 16, 16, 3)
    labels = {v["path"]: v["label"] for v in archive.videos}
    assert labels["cats ü/a.mp4"] == 1 and labels["dogs/c.avi"] == 2 and labels["loose.gif"] == -1
    for v in archive.videos:  # each clip carries its video's label
        first, count = v["clips"]
        assert (archive.labels[first:first + count] == v["label"]).all()

    report = json.loads((out / "report.json").read_text())
    assert report["videos_found"] == len(good) + 1 + len(bad) + 1
    assert report["videos_used"] == len(good) + 1
    quarantined = {q["path"]: q["reason"] for q in report["quarantined"]}
    assert set(quarantined) == {f"bad/{p.name}" for p in bad.values()} | {"cats ü/short.mkv"}
    for path, reason in quarantined.items():
        assert os.path.basename(path) in reason and "\n" not in reason
    assert "too short" in quarantined["cats ü/short.mkv"] and "too short" in quarantined["bad/one_frame.mp4"]
    assert "empty" in quarantined["bad/empty.mp4"] and "audio" in quarantined["bad/audio_only.mp4"]
    assert "truncated" in quarantined["bad/truncated.mp4"] and "10000" in quarantined["bad/huge.gif"]
    assert report["fps_histogram"]["30.00"] == 2 and report["clips"] == archive.num_clips
    assert archive.verify()


def test_workers_do_not_change_the_archive(tmp_path, video_factory):
    for i, fps in enumerate((25, 30, 25)):
        video_factory(f"src/v{i}.mp4", frames=30, size=(40, 56), fps=fps)
    one = prepare(tmp_path / "src", tmp_path / "one", resolution=16, frames=4, workers=1, crop="random")
    two = prepare(tmp_path / "src", tmp_path / "two", resolution=16, frames=4, workers=2, crop="random")
    assert one.content_hash == two.content_hash
    assert open_archive(tmp_path / "one").content_hash == one.content_hash  # stored, stable
    assert one.fps == 25  # no --fps: the most common source rate
    three = prepare(tmp_path / "src", tmp_path / "three", resolution=16, frames=4, workers=1, crop="random", seed=1)
    assert three.content_hash != one.content_hash  # another random crop offset


def test_fps_resampling_picks_the_right_frames(tmp_path, video_factory, counter_index):
    video_factory("src/count.mp4", frames=60, size=(32, 32), fps=30, content="counter")
    down = prepare(tmp_path / "src", tmp_path / "down", resolution=16, frames=4, fps=10, workers=1)
    assert down.videos[0]["resampled_frames"] == 20 and down.num_clips == 5
    got = [counter_index(f) for f in down.frames]
    assert got == list(range(0, 60, 3))  # every third frame
    up = prepare(tmp_path / "src", tmp_path / "up", resolution=16, frames=8, fps=60, workers=1)
    assert up.videos[0]["resampled_frames"] == 120
    assert [counter_index(f) for f in up.frames] == [i // 2 for i in range(120)]
    # Variable frame rate: frames at 0, 0.1, 0.15, 0.4 s; 20 fps targets every 0.05 s show the frame
    # on screen (sample and hold); the last frame lasts the median interval, 0.1 s.
    times = np.array([0.0, 0.1, 0.15, 0.4])
    assert resample_times(times, 20).tolist() == [0, 0, 1, 2, 2, 2, 2, 2, 3, 3]
    assert resample_times([0.0, 0.1, 0.1, 0.2], 10).tolist() == [0, 1, 3]  # a repeated timestamp is skipped


def test_encode_and_prepare_pick_the_same_frames(tmp_path, video_factory, counter_index):
    # 30 -> 9 fps: targets at 0, 3.33, 6.67, 10, ... source frames; sample and hold takes 0, 3, 6, 10
    # (a nearest-frame rule would take 7 for the third), the same in `encode --fps` and `prepare --fps`.
    src = video_factory("src/count.mp4", frames=60, size=(32, 32), fps=30, content="counter")
    assert cli_main(["encode", str(src), str(tmp_path / "enc.mkv"), "--codec", "lossless", "--fps", "9"]) == 0
    encoded = [counter_index(f) for f in read_video(tmp_path / "enc.mkv").frames]
    archive = prepare(tmp_path / "src", tmp_path / "arch", resolution=16, frames=2, fps=9, workers=1)
    prepared = [counter_index(f) for f in archive.frames]
    expected = [int(k * 30 / 9 + 1e-6) for k in range(18)]
    assert encoded == prepared == expected
    assert resample_times(np.arange(60) / 30, 9).tolist() == expected


def test_stride_and_max_clips_share_frames(tmp_path, video_factory, counter_index):
    video_factory("src/count.mp4", frames=40, size=(32, 32), fps=10, content="counter")
    arch = prepare(tmp_path / "src", tmp_path / "a", resolution=16, frames=8, stride=4, workers=1)
    assert arch.num_clips == 9 and arch.num_frames == 40  # overlapping clips stored once
    assert [counter_index(arch.clip(i)[0]) for i in range(9)] == list(range(0, 33, 4))
    assert [counter_index(f) for f in arch.clip(3)] == list(range(12, 20))
    capped = prepare(tmp_path / "src", tmp_path / "b", resolution=16, frames=8, stride=4, max_clips_per_video=3,
                     workers=1)
    assert [counter_index(capped.clip(i)[0]) for i in range(3)] == [0, 16, 32]  # spread over the video
    assert capped.num_frames == 24
    gapped = prepare(tmp_path / "src", tmp_path / "c", resolution=16, frames=8, stride=12, workers=1)
    assert [counter_index(gapped.clip(i)[0]) for i in range(3)] == [0, 12, 24] and gapped.num_frames == 24
    assert clip_starts(7, 8, 8, None).tolist() == [] and clip_starts(16, 8, 8, 1).tolist() == [0]


def test_out_exists_refused_force_replaces_whole(tmp_path, video_factory):
    video_factory("src/v.mp4", frames=16, size=(32, 32))
    out = tmp_path / "out"
    prepare(tmp_path / "src", out, resolution=16, frames=8, workers=1)
    (out / "stray.txt").write_text("from before")
    with pytest.raises(KinemaError, match="already exists"):
        prepare(tmp_path / "src", out, resolution=16, frames=8, workers=1)
    arch = prepare(tmp_path / "src", out, resolution=16, frames=4, workers=1, force=True)
    assert not (out / "stray.txt").exists() and arch.frames_per_clip == 4
    assert _litter(tmp_path) == []


def test_failure_mid_prepare_leaves_nothing(tmp_path, video_factory):
    for i in range(3):
        video_factory(f"src/v{i}.mp4", frames=16, size=(32, 32))

    def crash(done, total):
        if done == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        prepare(tmp_path / "src", tmp_path / "out", resolution=16, frames=8, workers=2, progress=crash)
    assert not (tmp_path / "out").exists() and _litter(tmp_path) == []


def test_bad_sources_give_clear_errors_and_write_nothing(tmp_path, bad_file_factory):
    (tmp_path / "empty dir").mkdir()
    with pytest.raises(KinemaError, match="no video files"):
        prepare(tmp_path / "empty dir", tmp_path / "o1")
    with pytest.raises(KinemaError, match="no such file"):
        prepare(tmp_path / "missing", tmp_path / "o2")
    bad_file_factory("text")
    bad_file_factory("one_frame")
    with pytest.raises(KinemaError, match="none of the 2 videos"):
        prepare(tmp_path / "bad", tmp_path / "o3", workers=1, verbose=False)
    with pytest.raises(KinemaError, match="unknown built-in"):
        prepare("builtin:nope", tmp_path / "o4")
    assert sorted(os.listdir(tmp_path)) == ["bad", "empty dir"]


def test_builtin_source_is_cached_and_archives_are_checked(tmp_path):
    first = resolve_source("builtin:bouncing_shapes", 16, 4, cache_dir=tmp_path, num_videos=40, workers=1)
    assert (first.num_clips, first.frames_per_clip, first.resolution, first.channels) == (40, 4, (16, 16), 3)
    stamp = (first.path / "index.json").stat().st_mtime_ns
    again = resolve_source("builtin:bouncing_shapes", 16, 4, cache_dir=tmp_path, num_videos=40)
    assert again.path == first.path and (again.path / "index.json").stat().st_mtime_ns == stamp
    assert again.content_hash == first.content_hash
    assert resolve_source(first.path, 16, 4).content_hash == first.content_hash
    with pytest.raises(KinemaError, match="4 frames of 16x16"):
        resolve_source(first.path, 32, 4)
    with pytest.raises(KinemaError, match="not a kinema archive"):
        resolve_source(tmp_path, 16, 4)
    labels = np.bincount(first.labels, minlength=5)
    assert first.class_names[:3] == ["circle", "square", "triangle"] and labels.sum() == 40


def test_cli_prepare_and_info(tmp_path, video_factory, capsys):
    video_factory("src/class a/v.mp4", frames=24, size=(32, 32), fps=24)
    out = tmp_path / "arch"
    assert cli_main(["prepare", str(tmp_path / "src"), str(out), "--resolution", "16", "--frames", "8",
                     "--channels", "1", "--workers", "1"]) == 0
    assert cli_main(["prepare", str(tmp_path / "src"), str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    arch = open_archive(out)
    assert arch.channels == 1 and arch.num_clips == 3
    assert "3 x 8 frames of 16x16, 1 channel" in text and arch.content_hash in text
    assert "class a: 3" in text


def test_crop_and_pad_geometry(tmp_path, video_factory):
    # A 32x64 (H x W) video: crop keeps the central square, pad letterboxes the whole frame.
    video_factory("src/wide.mp4", frames=8, size=(32, 64), fps=8, codec="ffv1")
    crop = prepare(tmp_path / "src", tmp_path / "crop", resolution=16, frames=8, workers=1)
    pad = prepare(tmp_path / "src", tmp_path / "pad", resolution=16, frames=8, workers=1, resize="pad")
    rect = prepare(tmp_path / "src", tmp_path / "rect", resolution=(16, 32), frames=8, workers=1)
    f_crop, f_pad, f_rect = crop.clip(0)[0].astype(int), pad.clip(0)[0].astype(int), rect.clip(0)[0].astype(int)
    assert f_pad.shape == f_crop.shape == (16, 16, 3) and f_rect.shape == (16, 32, 3)
    assert f_pad[:4].max() == 0 and f_pad[-4:].max() == 0 and f_pad[4:12].mean() > 20  # black bars
    assert f_crop.min() > 0  # no bars when cropping
    # The crop is the middle of the full-width (pad / rect) picture: compare red channel ramps.
    assert abs(f_crop[8, :, 0].mean() - f_rect[8, 8:24, 0].mean()) < 6
