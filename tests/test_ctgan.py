"""ctgan, the continuous-time video GAN: time is continuous, clips extend and stream seamlessly,
the discriminator hears the time gaps, and training on moving squares learns to move."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.models import build
from kinema.models.ctgan import anchor_count
from kinema.models.latents import draw_times

pytestmark = pytest.mark.usefixtures("one_thread")


def moving(G, scale=0.5):
    """An untrained G whose window visibly moves (the warp starts near the identity)."""
    torch.nn.init.normal_(G.to_shift.weight, 0.0, scale)
    return G.eval()


def centroid_speed(video: np.ndarray) -> np.ndarray:
    """uint8 [B, T, H, W, C] -> mean per-frame displacement of the brightness centroid [B] (pixels)."""
    x = video.astype(np.float64).mean(-1)
    x = np.clip(x - x.min(axis=(2, 3), keepdims=True) - 10, 0, None)
    h, w = x.shape[2:]
    mass = x.sum((2, 3)) + 1e-9
    cy = (x * np.arange(h)[:, None]).sum((2, 3)) / mass
    cx = (x * np.arange(w)[None, :]).sum((2, 3)) / mass
    pos = np.stack([cy, cx], -1)
    return np.linalg.norm(np.diff(pos, axis=1), axis=-1).mean(1)


def test_draw_times_are_sorted_distinct_and_cover_the_clip():
    t = draw_times(2000, 16, 3, torch.Generator().manual_seed(0))
    assert t.shape == (2000, 3) and t.dtype == torch.long
    assert (t.diff(dim=1) > 0).all() and t.min() == 0 and t.max() == 15
    # Uniform over 3-subsets: each frame index is picked with probability 3/16.
    freq = torch.bincount(t.flatten(), minlength=16).float() / 2000
    assert (freq - 3 / 16).abs().max() < 0.04
    with pytest.raises(Exception, match="sparse frames"):
        draw_times(1, 4, 5)


def test_continuous_time_any_length_and_prefix():
    G = moving(build("ctgan", width=4, frames=8, anchor_every=4, flow_grid=2).G)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    short = G.make_latents(1, generator=gen())
    long = G.make_latents(1, frames=37, generator=gen())
    assert long["motion"].shape[1] == anchor_count(37, 4) == 11
    with torch.no_grad():
        a, b = G(short), G(long)
        # A longer clip of the same seed starts with the shorter clip's frames.
        assert b.shape[2] >= 37 and torch.equal(a, b[:, :, :8])
        # Any real time: frame 3 rendered alone equals frame 3 of the clip; t = 3.5 lies between.
        f3 = G(long, times=torch.tensor([[3.0]]))
        assert torch.allclose(f3[:, :, 0], b[:, :, 3], atol=1e-6)
        mid = G(long, times=torch.tensor([[3.5]]))[:, :, 0]
        d_neighbours = (b[:, :, 3] - b[:, :, 4]).abs().mean()
        assert d_neighbours > 0
        assert (mid - b[:, :, 3]).abs().mean() < d_neighbours and (mid - b[:, :, 4]).abs().mean() < d_neighbours


def test_stream_equals_generate_for_any_chunking():
    from kinema.io import to_uint8
    from kinema.sample.generate import generate
    from kinema.sample.stream import frame_chunks, pick_strategy

    G = moving(build("ctgan", width=4, frames=8, num_classes=3).G)
    assert pick_strategy(G) == "continuous"
    whole = to_uint8(generate(G, [5], frames=45))[0]                           # [45, H, W, C]
    # A seed's class and frames do not depend on the length asked for (conditional model).
    assert np.abs(to_uint8(generate(G, [5], frames=16))[0].astype(int) - whole[:16]).max() <= 1
    for chunk in (1, 7, 16):
        parts = list(frame_chunks(G, 45, seed=5, chunk=chunk))
        streamed = np.concatenate(parts)
        assert streamed.shape == whole.shape
        # Same draws; only the float summation order differs with the batch shape.
        assert np.abs(streamed.astype(int) - whole).max() <= 1


def test_discriminator_hears_time_gaps_and_takes_whole_clips():
    ms = build("ctgan", width=4, frames=16, num_classes=2)
    D = ms.D
    frames = torch.randn(2, 1, 3, 32, 32)
    y = torch.tensor([0, 1])
    near = D(frames, y, times=torch.tensor([[0, 1, 2], [0, 1, 2]]))[0]
    far = D(frames, y, times=torch.tensor([[0, 7, 15], [0, 7, 15]]))[0]
    assert not torch.allclose(near, far)  # the same pictures over a longer time are another clip
    whole = D(torch.randn(2, 1, 16, 32, 32), y)[0]
    assert whole.shape == (2,)
    with pytest.raises(Exception, match="built for 3 frames"):
        D(torch.randn(2, 1, 4, 32, 32), y, times=torch.tensor([[0, 1, 2, 3]] * 2))


def test_identity_is_the_canvas():
    # Frames are warps of one canvas: with the warp switched off every frame is the same picture,
    # whatever the motion codes say (identity cannot drift while the codes move).
    G = build("ctgan", width=4, frames=8, flow_grid=2).G.eval()
    lat = G.make_latents(2, generator=torch.Generator().manual_seed(0))
    for lin in (G.to_shift, G.to_flow, G.to_gain):
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    with torch.no_grad():
        still = G(lat)
    assert torch.allclose(still, still[:, :, :1].expand_as(still), atol=1e-6)


@pytest.fixture(scope="module")
def squares_archive(tmp_path_factory):
    """24 clips of 8 frames, 32x32 grey: a bright 8x8 square moving at 2 px/frame (bouncing)."""
    from kinema.data import prepare
    from kinema.io import write_video

    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for i in range(24):
        frames = np.zeros((8, 32, 32, 1), np.uint8)
        pos = rng.uniform(0, 24, 2)
        angle = rng.uniform(0, 2 * np.pi)
        vel = 2.0 * np.array([np.sin(angle), np.cos(angle)])
        for t in range(8):
            y, x = np.round(pos).astype(int)
            frames[t, y:y + 8, x:x + 8] = 230
            pos = pos + vel
            for a in range(2):  # bounce off the walls
                if not 0 <= pos[a] <= 24:
                    vel[a] = -vel[a]
                    pos[a] = np.clip(pos[a], 0, 24)
        write_video(root / "src" / f"sq{i:02d}.mkv", frames, fps=8, codec="lossless")
    return prepare(root / "src", root / "archive", resolution=32, frames=8, channels=1, workers=1, verbose=False)


def test_training_on_moving_squares_learns_motion_that_extension_keeps(tmp_path, squares_archive):
    from kinema.io import to_uint8
    from kinema.models import load_generator
    from kinema.sample.generate import generate
    from kinema.train import get_preset, override, train

    cfg = override(get_preset("tiny"), data={"source": str(squares_archive.path), "frames": 8},
                   model={"name": "ctgan", "width": 8},
                   loss={"kind": "hinge", "r1_interval": 16, "augment": {"translation": 0.0, "cutout": 0.0, "color": False}},
                   optim={"g_lr": 2e-3, "d_lr": 2e-3, "betas": (0.5, 0.9)},
                   schedule={"kimg": 2.4, "batch": 16, "ema_kimg": 0.2},
                   log={"out": str(tmp_path / "run")})
    result = train(cfg, log=lambda *a: None)
    G, config = load_generator(result.export)
    fake = to_uint8(generate(G, range(32), config=config))          # [32, 8, 32, 32, 1]
    speed = centroid_speed(fake)
    # Real squares move 2 px per frame; an untrained ctgan stands still (~0.1 px).
    assert np.median(speed) > 0.6, speed
    # Extension: 4x the trained length keeps moving to the end.
    long = to_uint8(generate(G, range(16), frames=32, config=config))
    first, last = centroid_speed(long[:, :8]), centroid_speed(long[:, -8:])
    assert last.mean() > 0.5 * first.mean() and last.mean() > 0.4


def test_interpolation_in_content_or_motion():
    from kinema.sample.generate import generate
    from kinema.sample.interpolate import interpolate

    G = moving(build("ctgan", width=4, frames=8).G)
    ends = generate(G, [1, 2])
    path = interpolate(G, [1, 2], steps=4)                         # seed 1, 3 steps between, seed 2
    assert path.shape == (5, 1, 8, 32, 32)
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)
    # Content only: the motion stays the first seed's, so the window moves along the same path
    # while the picture changes; motion only: the reverse.
    content = interpolate(G, [1, 2], steps=4, space="content")
    motion = interpolate(G, [1, 2], steps=4, space="motion")
    assert not torch.allclose(content[-1], ends[1], atol=1e-3) and not torch.allclose(motion[-1], ends[1], atol=1e-3)
    assert not torch.allclose(content[-1], motion[-1], atol=1e-3)
