"""Small things a user trips over: clip lengths, output files, codecs, captions, sizes, rates, messages."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch

from kinema.cli import main


@pytest.fixture(scope="module")
def dcgan_export(tmp_path_factory):
    """A frame-per-latent model trained on 4-frame clips whose preview showed 16 frames."""
    from kinema.models import build, save_generator

    torch.manual_seed(0)
    ms = build("dcgan", resolution=32, frames=4, channels=1, width=8)
    folder = tmp_path_factory.mktemp("run")
    save_generator(folder / "export-0000001000.safetensors", ms.G.eval(), "dcgan", ms.kwargs,
                   {"kimg": 1, "fps": 8, "preview_frames": 16})
    plain = tmp_path_factory.mktemp("plain") / "export-0000001000.safetensors"
    save_generator(plain, ms.G.eval(), "dcgan", ms.kwargs, {"kimg": 1, "fps": 8})
    return folder, plain


def _video(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.name, s.width, s.height, sum(1 for _ in c.decode(video=0))


def test_generate_defaults_to_the_preview_length(dcgan_export, tmp_path, capsys):
    run, plain = dcgan_export
    assert main(["generate", str(run), "--num", "1", "--out", str(tmp_path / "a.mp4")]) == 0
    assert _video(tmp_path / "a.mp4")[3] == 16  # the run's preview length, not the 4 frames it trained on
    assert main(["generate", str(plain), "--num", "1", "--out", str(tmp_path / "b.mp4")]) == 0
    assert _video(tmp_path / "b.mp4")[3] == 4  # no preview length recorded: the trained length
    import kinema

    assert kinema.load(run).generate(seeds=0).shape[1] == 16


def test_generate_out_file_writes_one_file_with_the_extensions_codec(dcgan_export, tmp_path, capsys):
    run, _ = dcgan_export
    assert main(["generate", str(run), "--num", "1", "--out", str(tmp_path / "one.mp4")]) == 0
    assert (tmp_path / "one.mp4").is_file() and _video(tmp_path / "one.mp4")[:3] == ("h264", 32, 32)
    assert main(["generate", str(run), "--num", "4", "--out", str(tmp_path / "four.webm")]) == 0
    codec, w, h, _ = _video(tmp_path / "four.webm")
    assert (tmp_path / "four.webm").is_file() and codec == "vp9" and w > 64  # a 2x2 grid
    assert main(["generate", str(run), "--num", "4", "--grid", "--out", str(tmp_path / "g.webm")]) == 0
    assert _video(tmp_path / "g.webm")[0] == "vp9"
    assert main(["generate", str(run), "--num", "2", "--out", str(tmp_path / "folder")]) == 0
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["seed0000.mp4", "seed0001.mp4"]
    assert "wrote" in capsys.readouterr().err


def test_caption_refuses_characters_without_glyphs(monkeypatch, tmp_path, video_factory, capsys):
    from kinema.edit import look
    from kinema.errors import KinemaError

    frames = np.zeros((2, 48, 96, 3), np.uint8)
    assert look.caption(frames, "cafe").any()
    monkeypatch.setattr(look, "SYSTEM_FONTS", ())
    with pytest.raises(KinemaError, match="no glyphs for 'é'"):
        look.caption(frames, "café")
    src = video_factory("a.mp4", frames=4, size=(48, 96))
    assert main(["edit", "caption", str(src), str(tmp_path / "c.mp4"), "--text", "Жук"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Ж" in err and "\n" not in err


def test_caption_draws_non_ascii_with_a_font_that_has_it():
    from kinema.edit import look

    font = next((p for p in look.SYSTEM_FONTS if __import__("os").path.isfile(p)), None)
    if font is None:
        pytest.skip("no wide-coverage system font here")
    frames = np.zeros((1, 48, 96, 3), np.uint8)
    a, b = look.caption(frames, "é", box=False), look.caption(frames, "\u00e8", box=False)
    assert a.any() and not np.array_equal(a, b)  # two accents, two glyphs (not the same box)


def test_edit_prints_the_size_it_writes(tmp_path, video_factory, capsys):
    src = video_factory("a.mp4", frames=4, size=(32, 32))
    out = tmp_path / "r.mp4"
    assert main(["edit", "resize", str(src), str(out), "--width", "33", "--height", "21"]) == 0
    err = capsys.readouterr().err
    _, w, h, _ = _video(out)
    assert f"{w}x{h}" in err and (w, h) == (34, 22)


def test_save_video_and_write_video_agree(tmp_path):
    from kinema import save_video
    from kinema.errors import KinemaError
    from kinema.io import read_video, write_video

    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    save_video(frames, tmp_path / "a.mkv", fps=8, codec="lossless")
    write_video(tmp_path / "b.mkv", frames, 8, codec="lossless")
    save_video(tmp_path / "c.mkv", frames, fps=8, codec="lossless")   # the other order works too
    write_video(frames, tmp_path / "d.mkv", 8, codec="lossless")
    for name in "abcd":
        assert np.array_equal(read_video(tmp_path / f"{name}.mkv").frames, frames)
    for call in (lambda: save_video(frames, tmp_path / "a.mkv"), lambda: write_video(tmp_path / "a.mkv", frames, 8)):
        with pytest.raises(KinemaError, match="exists"):  # the same policy: refuse unless asked
            call()
    save_video(frames, tmp_path / "a.mkv", fps=8, codec="lossless", overwrite=True)
    write_video(tmp_path / "b.mkv", frames, 8, codec="lossless", force=True)


@pytest.mark.parametrize("fps", [30, 24, 12.5])
def test_gif_with_rounded_delays_reads_at_its_true_rate(tmp_path, fps):
    from kinema.io import probe, read_video, write_video

    frames = np.random.default_rng(1).integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    write_video(tmp_path / "a.gif", frames, fps)
    assert probe(tmp_path / "a.gif").fps == pytest.approx(fps, rel=1e-3)
    assert read_video(tmp_path / "a.gif").fps == pytest.approx(fps, rel=1e-3)


def test_progress_off_a_terminal_prints_plain_lines_with_a_capped_eta():
    from kinema.progress import Progress

    out = io.StringIO()
    p = Progress("train", total=1e9, unit="clips", deadline=time.monotonic() + 60, stream=out, interval=0.05)
    for _ in range(5):
        p.update(100)
        time.sleep(0.03)
    p.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and 2 <= len(lines) <= 6
    assert all(line.startswith("train: ") for line in lines)
    assert 50 <= p.remaining() <= 60 or p.remaining() == 0  # the deadline, not a billion clips away
    quiet = io.StringIO()
    q = Progress("x", total=10, stream=quiet, enabled=False)
    q.update(5)
    q.close()
    assert quiet.getvalue() == ""


def test_success_messages_go_to_stderr(tmp_path, video_factory, capsys):
    src = video_factory("a.mp4", frames=4, size=(16, 16))
    assert main(["encode", str(src), str(tmp_path / "b.webm")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "wrote" in captured.err
