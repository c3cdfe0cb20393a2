"""Style transfer (look and neural) and motion-compensated interpolation, on clips with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.edit import interpolate_frames
from kinema.edit.motion import estimate_motion, interpolate_motion
from kinema.edit.style import VGG19Features, flicker, flicker_ratio, limit_change, load_vgg19, look_transfer, neural_style
from kinema.errors import KinemaError
from kinema.io import read_video, write_video

from conftest import random_vgg


def psnr(x, y) -> float:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def held_out(frames, method):
    """Every second frame removed and rebuilt from its neighbours: (rebuilt, truth)."""
    kept = frames[::2]
    rebuilt = interpolate_frames(kept, 2, method)[1::2]
    return rebuilt, frames[1::2][: len(rebuilt)]


def moving_square(n=9, size=48, step=(2, 4)):
    """A 12x12 red, checkered square moving ``step`` px per frame over a fixed noisy background:
    frame t is the exact answer for the in-between of frames t-1 and t+1."""
    rng = np.random.default_rng(0)
    bg = (rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)
    square = np.empty((12, 12, 3), np.uint8)
    square[:] = (230, 80, 40)
    square[(np.add.outer(np.arange(12), np.arange(12)) // 3) % 2 == 1] = (250, 160, 60)
    v = np.repeat(bg[None], n, 0)
    for t in range(n):
        y, x = 6 + step[0] * t, 4 + step[1] * t
        v[t, y:y + 12, x:x + 12] = square
    return v


# ---------------------------------------------------------------------------------------------
# Motion-compensated interpolation.

def test_motion_interpolation_beats_blending_on_a_moving_square():
    clip = moving_square()
    motion, truth = held_out(clip, "motion")
    blend, _ = held_out(clip, "blend")
    p_motion, p_blend = psnr(motion, truth), psnr(blend, truth)
    assert p_motion > p_blend + 4 and p_motion > 27, (p_motion, p_blend)
    # The estimated vector inside the square is the true motion between the kept frames (4, 8).
    flow = estimate_motion(clip[2], clip[4])
    y, x = 6 + 2 * 3, 4 + 4 * 3                                   # square's corner in the middle frame
    assert np.allclose(np.median(flow[y + 3:y + 9, x + 3:x + 9].reshape(-1, 2), 0), (4, 8), atol=0.5)


def test_motion_interpolation_on_an_encoded_clip(video_factory):
    frames = read_video(video_factory("ramp", frames=13, size=(48, 48))).frames
    motion, truth = held_out(frames, "motion")
    blend, _ = held_out(frames, "blend")
    assert psnr(motion, truth) > psnr(blend, truth) + 1


def test_motion_interpolation_keeps_originals_and_lengths():
    clip = moving_square(n=4, size=32, step=(1, 2))
    up = interpolate_motion(clip, 3)
    assert up.shape == (10,) + clip.shape[1:]
    assert np.array_equal(up[::3], clip)
    static = np.repeat(clip[:1], 3, 0)
    assert np.array_equal(interpolate_frames(static, 2, "motion"), np.repeat(clip[:1], 5, 0))
    with pytest.raises(KinemaError, match="method"):
        interpolate_frames(clip, 2, "optical")


def test_cli_interpolate_motion(tmp_path):
    src = tmp_path / "sq.mkv"
    write_video(src, moving_square(n=5, size=32), fps=10, codec="lossless")
    out = tmp_path / "up.mkv"
    assert main(["edit", "interpolate", str(src), str(out), "--method", "motion", "--codec", "lossless"]) == 0
    v = read_video(out)
    assert len(v.frames) == 9 and v.fps == pytest.approx(20)


# ---------------------------------------------------------------------------------------------
# Look transfer.

def _reference(h=20, w=30):
    """A warm, fairly saturated reference picture (mean far from the test clips' grey-blue)."""
    rng = np.random.default_rng(3)
    img = np.empty((h, w, 3), np.float64)
    img[..., 0] = 200 + 40 * rng.random((h, w))
    img[..., 1] = np.linspace(60, 140, w)[None]
    img[..., 2] = 30 + 20 * rng.random((h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_look_transfer_moves_mean_colour_to_the_reference(synth_frames):
    clip = synth_frames("ramp", 8, (32, 32))
    ref = _reference()
    out = look_transfer(clip, ref)
    before = np.abs(clip.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0))
    after = np.abs(out.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0))
    assert before.max() > 60 and after.max() < 4, (before, after)
    # The spread follows too: per-channel standard deviations move to the reference's.
    assert np.allclose(out.reshape(-1, 3).std(0), ref.reshape(-1, 3).std(0), atol=6)
    half = look_transfer(clip, ref, strength=0.5)
    mid = half.reshape(-1, 3).mean(0)
    assert np.all(np.abs(mid - clip.reshape(-1, 3).mean(0)) < before * 0.8)
    assert np.abs(look_transfer(clip, ref, strength=0.0).astype(int) - clip).max() <= 1


def test_look_transfer_is_identical_across_frames_of_a_static_clip(synth_frames):
    still = np.repeat(synth_frames("ramp", 1, (24, 24)), 6, 0)
    out = look_transfer(still, _reference())
    assert all(np.array_equal(out[0], f) for f in out[1:])
    assert not np.array_equal(out[0], still[0])
    gray = look_transfer(still[..., :1], _reference())               # 1-channel input -> RGB out
    assert gray.shape == still.shape


def test_cli_style_look_and_bad_reference(tmp_path, video_factory, capsys):
    from PIL import Image

    src = video_factory("clip", frames=4, size=(32, 32))
    Image.fromarray(_reference()).save(tmp_path / "ref.png")
    out = tmp_path / "look.mkv"
    assert main(["edit", "style", str(src), str(out), "--reference", str(tmp_path / "ref.png"),
                 "--codec", "lossless"]) == 0
    assert len(read_video(out).frames) == 4
    (tmp_path / "junk.png").write_text("not an image")
    assert main(["edit", "style", str(src), str(tmp_path / "x.mkv"), "--reference", str(tmp_path / "junk.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("kinema: error:") and "junk.png" in err


# ---------------------------------------------------------------------------------------------
# Neural style with random weights in torchvision's published VGG-19 layout.

@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    state = dict(random_vgg().state_dict())
    state["classifier.6.bias"] = torch.zeros(1000)           # the published file has a classifier too
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path


def test_vgg19_layout_is_torchvisions():
    keys = {k: tuple(v.shape) for k, v in VGG19Features().state_dict().items()}
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert sorted(keys) == sorted([f"features.{i}.{p}" for i in convs for p in ("weight", "bias")])
    assert keys["features.0.weight"] == (64, 3, 3, 3) and keys["features.34.weight"] == (512, 512, 3, 3)
    assert keys["features.10.weight"] == (256, 128, 3, 3)


def test_neural_style_changes_frames_and_stays_within_the_flicker_bound(vgg_file, one_thread):
    from kinema.data.builtin import make_builtin_video

    vgg, path = load_vgg19(vgg_file)
    assert path == vgg_file
    clip = make_builtin_video("photo_pans", 0, 3, 24, 0)[0]   # a slow camera pan over a photograph
    out = neural_style(clip, _reference(), vgg, iterations=3)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - clip).mean() > 8      # visibly stylised
    assert flicker_ratio(out, clip) <= 1.5


def test_limit_change_bounds_each_pixel_by_the_sources_change():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    src[:, :4] = src[0, :4]                                     # a band that never changes
    out = [rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)]  # a stylisation that flickers wildly
    for t in range(1, 5):
        out.append(limit_change(out[-1], rng.integers(0, 256, (16, 16, 3)).astype(np.uint8), src[t - 1], src[t], 1.5))
    out = np.stack(out)
    assert flicker_ratio(out, src) <= 1.5 and flicker(out) > 0
    assert np.array_equal(out[:, :4], np.broadcast_to(out[0, :4], out[:, :4].shape))   # still where the source is
    change = np.abs(np.diff(out.astype(float), axis=0)).mean(-1)
    assert (change <= 1.5 * np.abs(np.diff(src.astype(float), axis=0)).mean(-1) + 1e-9).all()
    moved = np.abs(src[1].astype(int) - src[0]).mean(-1) >= 1      # a change within the allowance is kept as is
    small = np.clip(out[-1].astype(int) + 1, 0, 255)
    kept = limit_change(out[-1], small.astype(np.uint8), src[0], src[1], 1.5)
    assert moved[4:].all() and np.array_equal(kept[moved], small[moved]) and np.array_equal(kept[:4], out[-1][:4])
    with pytest.raises(KinemaError, match="max_flicker"):
        neural_style(src, src[0], VGG19Features(), iterations=1, max_flicker=0.5)


def test_vgg_weight_files_are_checked(tmp_path, monkeypatch, video_factory, capsys):
    monkeypatch.delenv("KINEMA_WEIGHTS", raising=False)
    with pytest.raises(KinemaError, match="vgg19-dcbb9e9d.pth.*download.pytorch.org"):
        load_vgg19(tmp_path)                                       # folder without the file
    with pytest.raises(KinemaError, match="not found"):
        load_vgg19(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(KinemaError, match="garbage.pth: unreadable torchvision VGG-19 state dict"):
        load_vgg19(garbage)
    # VGG-16's layout: same key style, other indices and shapes.
    vgg16 = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
             "features.17.weight": torch.zeros(512, 256, 3, 3)}
    torch.save(vgg16, tmp_path / "vgg16.pth")
    with pytest.raises(KinemaError, match="vgg16.pth: not the published torchvision VGG-19 state dict layout") as err:
        load_vgg19(tmp_path / "vgg16.pth")
    assert "\n" not in str(err.value)
    src = video_factory("clip", frames=2, size=(16, 16))
    (tmp_path / "ref.png").write_bytes(b"")
    from PIL import Image
    Image.fromarray(_reference()).save(tmp_path / "ref.png")
    assert main(["edit", "style", str(src), str(tmp_path / "o.mp4"), "--reference", str(tmp_path / "ref.png"),
                 "--method", "neural", "--weights", str(garbage)]) == 2
    assert "garbage.pth" in capsys.readouterr().err


def test_cli_neural_style(tmp_path, vgg_file, video_factory, one_thread):
    from PIL import Image

    src = video_factory("clip", frames=2, size=(16, 16))
    Image.fromarray(_reference()).save(tmp_path / "ref.png")
    out = tmp_path / "styled.mkv"
    assert main(["edit", "style", str(src), str(out), "--reference", str(tmp_path / "ref.png"), "--method", "neural",
                 "--weights", str(vgg_file), "--iterations", "2", "--codec", "lossless"]) == 0
    assert read_video(out).frames.shape == (2, 16, 16, 3)
