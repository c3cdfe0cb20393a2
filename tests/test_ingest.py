"""prepare's decode path: FFmpeg's scaler resizes while decoding, and the frames stay those of the
Pillow path (the one frame folders and rotated videos take) to within coding noise."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.data.decode import DecodeSettings, decode_video


@pytest.mark.parametrize("resolution,channels,resize,crop", [
    ((32, 32), 3, "crop", "center"), ((24, 40), 1, "crop", "random"), ((32, 32), 3, "pad", "center")])
def test_scaler_path_matches_the_pillow_path(video_factory, resolution, channels, resize, crop, monkeypatch):
    import kinema.data.decode as decode

    path = video_factory("wide.mp4", frames=12, size=(90, 160), content="ramp")
    kw = dict(resolution=resolution, frames=8, fps=25, stride=4, channels=channels, resize=resize, crop=crop,
              seed=3, threads=1)
    calls = []
    real = decode.iter_frames
    monkeypatch.setattr(decode, "iter_frames", lambda *a, **k: calls.append(k.get("size")) or real(*a, **k))
    fast = decode_video(path, "wide.mp4", DecodeSettings(**kw))
    slow = decode_video(path, "wide.mp4", DecodeSettings(**kw, scaler=False))
    assert calls[0] is not None and calls[1] is None  # the default resizes in the decoder
    a, b = fast["frames"].astype(np.float64), slow["frames"].astype(np.float64)
    assert a.shape == b.shape == (len(b), *resolution, channels)
    assert np.array_equal(fast["starts"], slow["starts"])
    psnr = 10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-9))
    assert psnr > 35, psnr
    if resize == "pad":  # the letterbox bars are exactly black on both paths
        assert not a[:, :4].any() and not b[:, :4].any()


def test_rotated_videos_take_the_pillow_path(video_factory, monkeypatch):
    import kinema.data.decode as decode

    path = video_factory("phone.mp4", frames=10, size=(48, 64), rotation=90)
    calls = []
    real = decode.iter_frames
    monkeypatch.setattr(decode, "iter_frames", lambda *a, **k: calls.append(k.get("size")) or real(*a, **k))
    out = decode_video(path, "phone.mp4", DecodeSettings(resolution=(32, 16), frames=8, fps=25, stride=8, threads=1))
    assert calls == [None] and out["frames"].shape[1:] == (32, 16, 3)
