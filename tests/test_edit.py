"""kinema.edit: every operation on content with a known answer, and the `kinema edit` CLI.

The test video is a frame counter: frame i is filled with grey level 10 * i (plus a fixed
gradient in the green channel so resizes have something to do). A frame's number is read back
as round(mean(red) / 10), exact after lossless encoding.
"""

import numpy as np
import pytest

from kinema.cli import main
from kinema.edit import (brightness_contrast, caption, change_fps, concat, crop, crossfade, fade, fit,
                         frame_counter, grayscale, interpolate_frames, loop, pad, resize, reverse, sepia,
                         speed, trim)
from kinema.errors import KinemaError

FPS = 10.0


def counter(n=20, h=24, w=32):
    """uint8 [n, h, w, 3]: red = 10 * frame index, green = a horizontal ramp, blue = 0."""
    v = np.zeros((n, h, w, 3), np.uint8)
    v[..., 0] = (10 * np.arange(n, dtype=np.uint8))[:, None, None]
    v[..., 1] = np.linspace(0, 255, w).astype(np.uint8)[None, None, :]
    return v


def ids(frames):
    return [int(round(f[..., 0].mean() / 10)) for f in frames]


# ---------------------------------------------------------------------------------------------
# Time operations on arrays.

def test_trim_by_time_and_by_frame():
    v = counter(20)
    assert ids(trim(v, FPS, 0.5, 1.2)) == [5, 6, 7, 8, 9, 10, 11]           # 0.5 <= i/10 < 1.2
    assert ids(trim(v, FPS, 0.5)) == list(range(5, 20))
    assert ids(trim(v, FPS, 3, 7, unit="frame")) == [3, 4, 5, 6]
    assert ids(trim(v, FPS, 1.5, 99)) == list(range(15, 20))               # end clipped
    for bad in [dict(start=-1), dict(start=1.0, end=0.5), dict(start=1.0, end=1.0), dict(start=5.0)]:
        with pytest.raises(KinemaError):
            trim(v, FPS, **bad)
    with pytest.raises(KinemaError, match="fps"):
        trim(v, 0, 0, 1)


def test_speed_fps_reverse_loop():
    v = counter(20)
    assert ids(speed(v, 2)) == list(range(0, 20, 2))
    assert ids(speed(v, 3)) == [0, 3, 6, 9, 12, 15, 18]
    assert ids(speed(v, 0.5)) == [i // 2 for i in range(40)]
    assert ids(change_fps(v, 10, 5)) == list(range(0, 20, 2))               # same duration
    assert len(change_fps(v, 10, 30)) == 60
    assert ids(reverse(v)) == list(range(19, -1, -1))
    assert ids(loop(v[:4], 3)) == [0, 1, 2, 3] * 3
    assert ids(loop(v[:4], 2, pingpong=True)) == [0, 1, 2, 3, 2, 1] * 2
    with pytest.raises(KinemaError):
        speed(v, 0)
    with pytest.raises(KinemaError):
        change_fps(v, 10, 0)


def test_interpolate_frames_blends_between_neighbours():
    v = counter(5)
    up = interpolate_frames(v, 4)
    assert len(up) == 17
    red = up[:, 0, 0, 0].astype(int)
    assert list(red[::4]) == [0, 10, 20, 30, 40]                            # originals kept
    assert list(red[:5]) == [0, 2, 5, 8, 10]                                # linear in between (rounded)
    blended = change_fps(v, 10, 20, method="blend")
    assert blended[1, 0, 0, 0] == 5


def test_concat_lengths_and_mismatch():
    a, b = counter(7), counter(5)
    out, fps = concat([(a, FPS), (b, FPS)])
    assert len(out) == 12 and fps == FPS and ids(out) == list(range(7)) + list(range(5))
    small = counter(5, 12, 16)
    with pytest.raises(KinemaError, match="video 1.*--fit"):
        concat([(a, FPS), (small, FPS)])
    with pytest.raises(KinemaError, match="fps"):
        concat([(a, FPS), (b, 20.0)])
    out, fps = concat([(a, FPS), (small, FPS), (counter(10), 20.0)], mismatch="fit")
    assert out.shape[1:] == a.shape[1:] and fps == FPS
    assert len(out) == 7 + 5 + 5                                           # 10 frames at 20 fps = 0.5 s = 5 frames
    assert ids(out[12:]) == [0, 2, 4, 6, 8]


def test_crossfade_and_fades():
    a, b = counter(10), counter(10) + 100
    x = crossfade(a, b, 4)
    assert len(x) == 16
    assert ids(x[:6]) == ids(a[:6]) and ids(x[10:]) == ids(b[4:])
    red = x[:, 0, 0, 0].astype(int)
    # Overlap frames mix a[6..9] (60..90) with b[0..3] (100..130) at weights 1/5..4/5.
    assert list(red[6:10]) == [round(60 * 0.8 + 100 * 0.2), round(70 * 0.6 + 110 * 0.4),
                               round(80 * 0.4 + 120 * 0.6), round(90 * 0.2 + 130 * 0.8)]
    f = fade(counter(10) + 50, fade_in=3, fade_out=4)
    assert f[0].max() == 0 and f[-1].max() == 0                             # reaches black
    assert (f[3:6] == (counter(10) + 50)[3:6]).all()                        # untouched middle
    assert f[1, 0, 0, 0] < f[2, 0, 0, 0] < f[3, 0, 0, 0]
    white = fade(counter(4), fade_out=2, color=(255, 255, 255))
    assert (white[-1] == 255).all()
    with pytest.raises(KinemaError):
        fade(counter(4), fade_in=5)


# ---------------------------------------------------------------------------------------------
# Space operations, filters, overlays.

def test_resize_crop_pad_fit():
    v = counter(3, 24, 32)
    assert resize(v, 16).shape == (3, 12, 16, 3)                            # aspect kept
    assert resize(v, height=48).shape == (3, 48, 64, 3)
    assert resize(v, scale=0.5, filter="area").shape == (3, 12, 16, 3)
    # Area downscale of a constant frame keeps it; lanczos of the ramp stays near the ramp.
    assert ids(resize(v, 8, 6, filter="area")) == [0, 1, 2]
    c = crop(v, 10, 8, x=4, y=2)
    assert c.shape == (3, 8, 10, 3) and (c == v[:, 2:10, 4:14]).all()
    p = pad(v, 1, 2, 3, 4, color=(9, 9, 9))
    assert p.shape == (3, 24 + 6, 32 + 4, 3) and (p[:, 0] == 9).all() and (p[:, 2:26, 1:33] == v).all()
    assert fit(v, 64, 64).shape == (3, 64, 64, 3)
    for bad in [lambda: resize(v, 0, 5), lambda: crop(v, 40, 4), lambda: pad(v, -1),
                lambda: resize(v, 8, filter="magic")]:
        with pytest.raises(KinemaError):
            bad()
    with pytest.raises(KinemaError, match="empty"):
        resize(np.zeros((3, 0, 4, 3), np.uint8), 8, 8)


def test_colour_filters():
    v = counter(3)
    g = grayscale(v)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert abs(int(g[2, 0, -1, 0]) - round(0.299 * 20 + 0.587 * 255)) <= 1
    bc = brightness_contrast(np.full((1, 2, 2, 3), 100, np.uint8), brightness=0.1, contrast=2.0)
    assert int(bc[0, 0, 0, 0]) == round((100 - 128) * 2 + 128 + 25.5)
    s = sepia(np.full((1, 2, 2, 3), 100, np.uint8))
    assert s[0, 0, 0, 0] > s[0, 0, 0, 1] > s[0, 0, 0, 2]                     # warm: R > G > B
    with pytest.raises(KinemaError):
        brightness_contrast(v, brightness=2)


def test_caption_and_counter_draw_text():
    v = np.zeros((4, 48, 64, 3), np.uint8)
    cap = caption(v, "kinema", position="bottom")
    assert cap[:, :24].max() == 0 and cap[:, 24:].max() > 150               # text only at the bottom
    cnt = frame_counter(v, fps=FPS, position="top-left")
    assert cnt[:, 24:].max() == 0 and cnt[:, :24].max() > 150
    assert not (cnt[0] == cnt[1]).all()                                     # different numbers
    with pytest.raises(KinemaError):
        caption(v, "")


# ---------------------------------------------------------------------------------------------
# The CLI, through real files (lossless, so frames compare exactly).

@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from kinema.io import write_video
    path = tmp_path_factory.mktemp("edit") / "counter.mkv"
    write_video(path, counter(20), FPS, codec="lossless")
    return path


def _read(path):
    from kinema.io import read_video
    v = read_video(path)
    return v.frames, v.fps


def test_cli_edits_known_answers(clip_file, tmp_path):
    out = tmp_path / "trim.mkv"
    assert main(["edit", "trim", str(clip_file), str(out), "--start", "0.5", "--end", "1.2"]) == 0
    frames, fps = _read(out)
    assert ids(frames) == list(range(5, 12)) and fps == pytest.approx(FPS)
    assert main(["edit", "speed", str(clip_file), str(tmp_path / "fast.mkv"), "--factor", "2"]) == 0
    assert ids(_read(tmp_path / "fast.mkv")[0]) == list(range(0, 20, 2))
    assert main(["edit", "reverse", str(clip_file), str(tmp_path / "rev.mkv")]) == 0
    assert ids(_read(tmp_path / "rev.mkv")[0]) == list(range(19, -1, -1))
    assert main(["edit", "concat", str(clip_file), str(out), str(tmp_path / "cat.mkv")]) == 0
    assert ids(_read(tmp_path / "cat.mkv")[0]) == list(range(20)) + list(range(5, 12))
    assert main(["edit", "fps", str(clip_file), str(tmp_path / "fps.mkv"), "--to", "5"]) == 0
    frames, fps = _read(tmp_path / "fps.mkv")
    assert ids(frames) == list(range(0, 20, 2)) and fps == pytest.approx(5)
    assert main(["edit", "fade", str(clip_file), str(tmp_path / "fade.mkv"), "--out", "0.5"]) == 0
    assert _read(tmp_path / "fade.mkv")[0][-1].max() == 0
    assert main(["edit", "resize", str(clip_file), str(tmp_path / "r.mp4"), "--width", "16"]) == 0
    assert _read(tmp_path / "r.mp4")[0].shape == (20, 12, 16, 3)
    assert main(["edit", "counter", str(clip_file), str(tmp_path / "c.mp4")]) == 0


def test_cli_errors_are_one_line(clip_file, tmp_path, capsys):
    out = tmp_path / "o.mkv"
    cases = [
        (["edit", "trim", str(clip_file), str(out), "--start", "-1"], "negative"),
        (["edit", "trim", str(clip_file), str(out), "--start", "1", "--end", "0.5"], "after start"),
        (["edit", "fps", str(clip_file), str(out), "--to", "0"], "positive"),
        (["edit", "reverse", str(clip_file), str(out), "--codec", "nope"], "unknown codec"),
        (["edit", "reverse", str(tmp_path / "missing.mp4"), str(out)], "missing.mp4"),
        (["edit", "concat", str(clip_file), str(out)], "two inputs"),
    ]
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    cases.append((["edit", "reverse", str(tmp_path / "junk.mp4"), str(out)], "junk.mp4"))
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("kinema: error:") and msg in err and "\n" not in err, (argv, err)
        assert not out.exists()
    # Refuses to overwrite without --force, replaces with it.
    out.write_bytes(b"x")
    assert main(["edit", "reverse", str(clip_file), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"x"
    assert main(["edit", "reverse", str(clip_file), str(out), "--force"]) == 0
    assert ids(_read(out)[0]) == list(range(19, -1, -1))


def test_cli_every_other_op_runs(clip_file, tmp_path):
    """Shapes and lengths through the CLI for the ops not covered above (known answers are
    checked on arrays in the tests above)."""
    cases = {
        "loop": (["--times", "2", "--pingpong"], (2 * 38, 24, 32)),
        "crossfade": (["--seconds", "0.5"], (35, 24, 32)),
        "interpolate": (["--factor", "2"], (39, 24, 32)),
        "crop": (["--width", "16", "--height", "8"], (20, 8, 16)),
        "pad": (["--left", "2", "--right", "2", "--top", "4"], (20, 28, 36)),
        "caption": (["--text", "hello"], (20, 24, 32)),
        "grayscale": ([], (20, 24, 32)),
        "sepia": (["--amount", "0.5"], (20, 24, 32)),
        "color": (["--brightness", "0.1", "--contrast", "1.5"], (20, 24, 32)),
    }
    for op, (extra, shape) in cases.items():
        inputs = [str(clip_file)] * (2 if op == "crossfade" else 1)
        out = tmp_path / f"{op}.mkv"
        assert main(["edit", op, *inputs, str(out), *extra]) == 0, op
        assert _read(out)[0].shape[:3] == shape, op
    assert _read(tmp_path / "interpolate.mkv")[1] == pytest.approx(2 * FPS)
