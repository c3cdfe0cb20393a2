"""The flow model: ODE solvers, guidance, the training objective, latents of a frozen VAE, exact resume,
seeded sampling and streams (tiny models on the 32x32x4 bars archive)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.models import build
from kinema.models.flow import guided_velocity
from kinema.sample.ode import integrate
from kinema.train import get_preset, load_state, override, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_FLOW = {"name": "flow", "width": 32, "extra": {"depth": 1, "heads": 2, "patch": [1, 8, 8], "steps": 4}}


def quiet(*args):
    pass


def tiny(archive, out, **sections):
    base = override(get_preset("tiny"), data={"source": str(archive.path)}, log={"out": str(out)},
                    model=TINY_FLOW, optim={"g_lr": 2e-3, "betas": (0.9, 0.99)})
    return override(base, **sections)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere (adaLN-Zero starts with v = 0, which would make comparisons vacuous)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


# ODE solvers on a field whose answer is known.

def gaussian_velocity(mu: torch.Tensor, sigma: torch.Tensor):
    """The exact rectified-flow velocity from N(0, I) to N(mu, diag(sigma^2)) (independent coupling):
    x_t ~ N(t mu, s_t^2), s_t^2 = (1-t)^2 + t^2 sigma^2, and E[x1 - x0 | x_t] is linear in x_t."""
    def v(x, t):
        var = (1 - t) ** 2 + t ** 2 * sigma ** 2
        return mu + (t * sigma ** 2 - (1 - t)) / var * (x - t * mu)
    return v


@pytest.mark.parametrize("solver,steps,tol", [("euler", 200, 0.1), ("heun", 20, 0.02)])
def test_ode_transports_noise_to_the_gaussian_target(solver, steps, tol):
    mu, sigma = torch.tensor([1.5, -0.5]), torch.tensor([0.5, 2.0])
    x0 = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    x1 = integrate(gaussian_velocity(mu, sigma), x0, steps, solver)
    # The flow map of this field is x0 -> mu + sigma * x0, sample by sample ...
    assert (x1 - (mu + sigma * x0)).abs().max() < tol
    # ... so the samples have the target's mean and standard deviation.
    assert torch.allclose(x1.mean(0), mu, atol=0.05)
    assert torch.allclose(x1.std(0), sigma, rtol=0.03)


def test_heun_is_second_order():
    mu, sigma = torch.tensor([1.0]), torch.tensor([3.0])
    x0 = torch.linspace(-2, 2, 101)[:, None]
    exact = mu + sigma * x0
    err = {(s, n): float((integrate(gaussian_velocity(mu, sigma), x0, n, s) - exact).abs().max())
           for s in ("euler", "heun") for n in (8, 16)}
    assert err["euler", 16] / err["euler", 8] > 0.35        # first order: halving h about halves the error
    assert err["heun", 16] / err["heun", 8] < 0.35          # second order: about a quarter
    assert err["heun", 8] < err["euler", 16]                 # and better at equal network evaluations


# Guidance.

def test_guidance_at_scale_one_is_the_conditional_model():
    G = build("flow", num_classes=3, width=32, depth=2, heads=2, patch=[2, 8, 8]).G.eval()
    net = randomise(G.net)
    x = torch.randn(4, 1, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        v_c, v_u = net(x, t, y), net(x, t, torch.full_like(y, 3))
        assert (v_c - v_u).abs().max() > 1e-2                        # the class matters to this net
        assert torch.allclose(guided_velocity(net, x, t, y, 1.0), v_c, atol=1e-5)
        assert torch.allclose(guided_velocity(net, x, t, y, 0.0), v_u, atol=1e-5)
        assert torch.allclose(guided_velocity(net, x, t, y, 3.0), v_u + 3 * (v_c - v_u), atol=1e-4)
        # and the sampler at cfg 1 is the conditional ODE
        noise = torch.randn(2, *G.latent_shape, generator=torch.Generator().manual_seed(2))
        plain = integrate(lambda a, s: net(a, s.expand(2), y[:2]), noise, 3)
        assert torch.allclose(G.sample(noise, y[:2], steps=3, cfg=1.0), plain, atol=1e-6)


def test_sampler_options_are_checked():
    G = build("flow", width=32, depth=1, heads=2).G
    with pytest.raises(KinemaError, match="unconditional"):
        G.sample(torch.zeros(1, *G.latent_shape), None, steps=2, cfg=2.0)
    with pytest.raises(KinemaError, match="solver"):
        build("flow", solver="rk45")
    with pytest.raises(KinemaError, match="patch"):
        build("flow", patch=[3, 4, 4])


# Training.

def _losses(out) -> list[float]:
    return [r["loss/flow"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss/flow" in r]


def test_appended_images_are_independent_of_the_clip_and_of_each_other():
    # Joint training: frames after the clip skip temporal attention and carry their own time and class.
    net = randomise(build("flow", num_classes=3, width=32, depth=2, heads=2, patch=[1, 8, 8]).G.net)
    gen = torch.Generator().manual_seed(1)
    clip, images = torch.randn(2, 1, 4, 32, 32, generator=gen), torch.randn(2, 1, 3, 32, 32, generator=gen)
    t_clip, t_img = torch.rand(2, generator=gen), torch.rand(2, 3, generator=gen)
    y_clip, y_img = torch.tensor([0, 2]), torch.tensor([[1, 3, 0], [2, 2, 1]])   # 3 = the null class

    def joint(clip, images, t_img=t_img, y_img=y_img):
        t = torch.cat([t_clip[:, None].expand(2, 4), t_img], 1)
        y = torch.cat([y_clip[:, None].expand(2, 4), y_img], 1)
        with torch.no_grad():
            return net(torch.cat([clip, images], 2), t, y, video=4)

    with torch.no_grad():
        alone = net(clip, t_clip, y_clip)
    v = joint(clip, images)
    assert torch.allclose(v[:, :, :4], alone, atol=1e-5)                    # the clip does not see the images
    other = joint(torch.randn_like(clip), images)
    assert torch.allclose(v[:, :, 4:], other[:, :, 4:], atol=1e-5)         # nor the images the clip
    changed = images.clone()
    changed[:, :, 0] = torch.randn_like(changed[:, :, 0])
    w = joint(clip, changed)
    assert torch.allclose(v[:, :, 5:], w[:, :, 5:], atol=1e-5) and not torch.allclose(v[:, :, 4], w[:, :, 4])
    t2 = t_img.clone()
    t2[:, 1] = 1 - t2[:, 1]
    w = joint(clip, images, t_img=t2)                                      # each image has its own time
    assert torch.allclose(v[:, :, [4, 6]], w[:, :, [4, 6]], atol=1e-5) and not torch.allclose(v[:, :, 5], w[:, :, 5])
    with pytest.raises(KinemaError, match="time patches of 1"):
        build("flow", width=32, depth=1, heads=2, patch=[2, 8, 8]).G.net(torch.zeros(1, 1, 6, 32, 32),
                                                                        torch.zeros(1, 6), None, video=4)


def test_flow_loss_falls(tmp_path, bars_archive):
    # 40 steps on the bars: most of a dark, faintly noisy frame with one bright bar is quickly learnt.
    cfg = tiny(bars_archive, tmp_path / "run", schedule={"kimg": 0.16, "ema_kimg": 0.01})
    train(cfg, log=quiet)
    losses = _losses(tmp_path / "run")
    assert losses[0] > 1.5                                  # zero-initialised output: E|x1 - x0|^2
    assert np.mean(losses[-5:]) < 0.75 * losses[0]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, bars_archive):
    """A (barely trained) videovae with a spatial latent grid on the bars: [4, 1, 8, 8] latents."""
    out = tmp_path_factory.mktemp("vae") / "run"
    cfg = override(get_preset("tiny"), data={"source": str(bars_archive.path)}, log={"out": str(out)},
                   model={"name": "videovae", "width": 8, "extra": {"latent": "grid", "grid_res": 8, "z_dim": 4}},
                   loss={"kl_weight": 1e-3}, schedule={"kimg": 0.008})
    train(cfg, log=quiet)
    return out


def assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("latent,images", [(False, 0), (True, 0), (True, 2)],
                         ids=["pixels", "latents", "latents+images"])
def test_resume_is_exact(tmp_path, bars_archive, vae_run, latent, images, monkeypatch):
    monkeypatch.setenv("KINEMA_CACHE", str(tmp_path / "cache"))
    model = dict(TINY_FLOW, vae=str(vae_run) if latent else None)
    cfg = tiny(bars_archive, tmp_path / "a", model=model, schedule={"kimg": 0.028}, loss={"joint_images": images})
    straight = train(cfg, log=quiet)
    train(override(cfg, log={"out": str(tmp_path / "b")}, schedule={"kimg": 0.012}), log=quiet)
    ran = []
    resumed = train(override(cfg, log={"out": str(tmp_path / "b")}), resume="latest", log=quiet, on_step=ran.append)
    # Only the 4 remaining steps ran: a resume that loaded nothing would have trained all 7 from scratch
    # (and, with the same seeds, would also have ended on the same weights).
    assert ran == [4, 5, 6, 7] and straight.steps == resumed.steps == 7
    a, b = load_state(straight.state), load_state(resumed.state)
    for key in ("G", "G_ema", "opt", "counters", "loader", "ranks", "model"):
        assert_same(a[key], b[key], key)
    assert any(k.startswith("decoder.") for k in a["G"]) == latent
    from safetensors.torch import load_file
    assert_same(load_file(straight.export), load_file(resumed.export), "export")


def test_latents_are_cached_once_per_archive_and_vae(tmp_path, bars_archive, vae_run):
    from kinema.data import ClipLoader
    from kinema.io.convert import from_uint8
    from kinema.train import flow as ft

    E, _, spec, digest, _ = ft.load_vae(vae_run)
    assert spec["kwargs"]["latent"] == "grid"
    logs = []
    a = ft.cached_latents(bars_archive, E, digest, folder=tmp_path, log=logs.append)
    b = ft.cached_latents(bars_archive, E, digest, folder=tmp_path, log=logs.append)
    assert "encoded" in logs[0] and "cached" in logs[1] and np.array_equal(a, b)
    assert a.shape == (bars_archive.num_clips, 4, 1, 8, 8)
    with torch.no_grad():                                          # posterior means, in clip order
        mu, _ = E(from_uint8(torch.from_numpy(bars_archive.clips(np.array([0, 5])))))
    assert np.allclose(a[[0, 5]], mu.numpy(), atol=1e-5)
    # Other weights or another archive: another key. A torn file: encoded again.
    assert ft.cache_key(bars_archive.content_hash, digest) != ft.cache_key(bars_archive.content_hash, digest[::-1])
    assert ft.cache_key(bars_archive.content_hash, digest) != ft.cache_key("0" * 32, digest)
    (cached,) = tmp_path.glob("latents-*.npz")
    cached.write_bytes(cached.read_bytes()[:100])
    assert np.array_equal(ft.cached_latents(bars_archive, E, digest, folder=tmp_path, log=logs.append), a)
    assert "encoded" in logs[-1]
    # The loader of latents gives the latents of the clips the pixel loader gives, batch for batch.
    lat = ft.LatentLoader(ClipLoader(bars_archive, 4, seed=3), torch.from_numpy(a))
    twin = ClipLoader(bars_archive, 4, seed=3)
    for _ in range(9):   # crosses an epoch (32 clips = 8 batches)
        (z, y), (video, y2) = next(lat), next(twin)
        with torch.no_grad():
            assert torch.allclose(z, E(video)[0], atol=1e-5) and torch.equal(y, y2)
    assert lat.state_dict() == twin.state_dict()


def test_load_vae_refuses_other_models(tmp_path, bars_archive):
    from kinema.train import flow as ft

    out = tmp_path / "vec"
    train(override(get_preset("tiny"), data={"source": str(bars_archive.path)}, log={"out": str(out)},
                   model={"name": "videovae", "width": 8}, schedule={"kimg": 0.004}), log=quiet)
    with pytest.raises(KinemaError, match="latent='grid'"):
        ft.load_vae(out)
    with pytest.raises(KinemaError, match="no training-state"):
        ft.load_vae(tmp_path)


# Sampling.

def test_one_seed_one_video_whatever_the_batch():
    from kinema.sample.generate import generate

    G = build("flow", num_classes=3, width=32, depth=2, heads=2, patch=[2, 8, 8], steps=3, cfg=2.0).G.eval()
    randomise(G.net)
    together = generate(G, [0, 1, 2, 3, 4], batch=5)
    alone = torch.cat([generate(G, [s], batch=1) for s in (4, 2)])
    # Same noise and class per seed; only the kernels' summation order differs with the batch.
    assert (together[[4, 2]] - alone).abs().max() < 1e-4
    assert (together[0] - together[1]).abs().max() > 0.1


def test_export_samples_on_its_own(tmp_path, bars_archive, vae_run, monkeypatch):
    import kinema

    monkeypatch.setenv("KINEMA_CACHE", str(tmp_path / "cache"))
    cfg = tiny(bars_archive, tmp_path / "run", model=dict(TINY_FLOW, vae=str(vae_run)), schedule={"kimg": 0.008})
    result = train(cfg, log=quiet)
    model = kinema.load(result.export)
    assert model.G.decoder is not None and model.frames == 4 and model.set_sampler()["steps"] == 4
    state = load_state(result.state)
    assert_same({k: v for k, v in model.G.state_dict().items()}, state["G_ema"], "G_ema")
    model.set_sampler(steps=2, solver="heun")
    video = model.generate(seeds=[0, 1], output="tensor")
    assert video.shape == (2, 1, 4, 32, 32) and video.abs().max() <= 1
    with pytest.raises(KinemaError, match="unconditional"):
        model.set_sampler(cfg=2.0)


def test_stream_continues_the_last_frames():
    from kinema.sample.generate import generate
    from kinema.sample.stream import frame_chunks, pick_strategy
    from kinema.io import to_uint8

    G = build("flow", width=32, depth=1, heads=2, patch=[1, 8, 8], steps=3).G.eval()
    randomise(G.net)
    assert pick_strategy(G) == "continue"
    parts = list(frame_chunks(G, 40, seed=5, overlap=12))
    assert [len(p) for p in parts] == [16, 4, 4, 4, 4, 4, 4]
    assert np.array_equal(parts[0], to_uint8(generate(G, [5]))[0])     # the first window is seed 5's video
    # Known entries are held on their path and end exactly on their values.
    noise = torch.randn(1, *G.latent_shape)
    values, mask = torch.randn_like(noise), torch.zeros_like(noise)
    mask[:, :, :12] = 1
    with torch.no_grad():
        z = G.sample(noise, None, steps=3, known=(values, mask))
    assert torch.equal(z[:, :, :12], values[:, :, :12]) and not torch.equal(z[:, :, 12:], values[:, :, 12:])
    with pytest.raises(KinemaError, match="overlap"):
        next(frame_chunks(G, 40, seed=5, overlap=16))


def test_cli_rejects_guidance_without_classes(tmp_path, capsys):
    from kinema.cli import main
    from kinema.models import save_generator

    ms = build("flow", width=32, depth=1, heads=2, steps=2)
    save_generator(tmp_path / "export-000000k.safetensors", ms.G, ms.name, ms.kwargs, {})
    assert main(["generate", str(tmp_path), "--num", "1", "--cfg", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unconditional" in err[0]


def test_torchrun_two_ranks_match_one_process(tmp_path, bars_archive, vae_run):
    # World-invariant: 2 ranks x 2 clips see the global batches, noise, times and class drops of
    # 1 process x 4 clips; rank 0 fills the latent cache, rank 1 reads it; the decoder stays frozen
    # under DDP. States agree to float tolerance (other summation order of the gradient all-reduce).
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "KINEMA_CACHE": str(tmp_path / "cache")}
    args = ["kinema", "train", str(bars_archive.path), "--preset", "tiny", "--model", "flow", "--vae", str(vae_run),
            "--width", "32", "--model-opt", "depth=1", "--model-opt", "heads=2", "--model-opt", "patch=[1,8,8]",
            "--model-opt", "steps=2", "--kimg", "0.012", "--world-invariant", "--device", "cpu"]
    launches = {"one": [sys.executable, "-m", *args],
                "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", *args]}
    states = {}
    for name, cmd in launches.items():
        for _ in range(2):  # gloo may abort at interpreter exit after finishing (PyTorch teardown): once more
            proc = subprocess.run(cmd + ["--out", str(tmp_path / name)], env=env, capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode == 0 or "terminate called without an active exception" not in proc.stderr:
                break
            import shutil
            shutil.rmtree(tmp_path / name, ignore_errors=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        states[name] = load_state(sorted((tmp_path / name).glob("training-state-*.pt"))[-1])
    a, b = states["one"], states["two"]
    assert a["counters"]["nimg"] == b["counters"]["nimg"] == 12
    torch.manual_seed(0)                     # the loop's initial weights (seed 0)
    start = build("flow", **a["model"]["kwargs"]).G.state_dict()
    moved = 0.0
    for k, v in a["G"].items():
        assert torch.allclose(v, b["G"][k], atol=1e-5), k
        moved = max(moved, float((v - start[k]).abs().max())) if not k.startswith("decoder.") else moved
    assert moved > 1e-4                      # the runs trained (the comparison is not between two inits)


def test_eval_samples_with_the_given_ode_settings(tmp_path, capsys):
    from kinema.cli import main
    from kinema.metrics.protocols import get_protocol
    from kinema.metrics.sources import open_source
    from kinema.models import save_generator

    ms = build("flow", width=32, depth=1, heads=2, patch=[1, 8, 8], steps=4)
    randomise(ms.G.net)
    save_generator(tmp_path / "export-000000k.safetensors", ms.G, ms.name, ms.kwargs, {})
    protocol = get_protocol("motion256_16f").with_num(2)

    def clips(**sampler):
        src = open_source(tmp_path, "fake")
        src.set_sampler(**sampler)
        return np.concatenate(list(src.clips(protocol, 2, 0, 2))), src.describe()["sampler"]

    default, s4 = clips()
    same, _ = clips(steps=4, solver="euler")
    fewer, s2 = clips(steps=2, solver="heun")
    assert s4["steps"] == 4 and s2 == {**s4, "steps": 2, "solver": "heun"}
    assert np.array_equal(default, same) and not np.array_equal(default, fewer)
    with pytest.raises(KinemaError, match="unconditional"):
        clips(cfg=2.0)
    # The command line: the flags reach the sampler; a folder of videos has no sampler to set.
    assert main(["eval", "--metric", "motion256_16f", "--fake", str(tmp_path), "--cfg", "2"]) == 2
    assert "unconditional" in capsys.readouterr().err
    from kinema.io import write_video

    write_video(tmp_path / "videos" / "a.mp4", np.zeros((4, 32, 32, 3), np.uint8), fps=8)
    assert main(["eval", "--metric", "motion256_16f", "--fake", str(tmp_path / "videos"), "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flow model's export" in err[0]


def test_eval_prepares_a_builtin_real_set_at_the_exports_clip_size(tmp_path, bars_archive, monkeypatch):
    import kinema.data
    from kinema.metrics.sources import open_source
    from kinema.models import save_generator

    ms = build("flow", width=32, depth=1, heads=2, patch=[1, 8, 8], frames=4, steps=2)
    save_generator(tmp_path / "export-000000k.safetensors", ms.G, ms.name, ms.kwargs, {})
    asked = []

    def resolve(spec, resolution, frames, **kw):   # stands in for preparing the 2,000-video built-in set
        asked.append((spec, resolution, frames, kw.get("channels")))
        return bars_archive
    monkeypatch.setattr(kinema.data, "resolve_source", resolve)
    fake = open_source(tmp_path, "fake")
    real = open_source("builtin:moving_digits", "real", like=fake)
    assert asked == [("builtin:moving_digits", 32, 4, 1)] and real.kind == "archive"
    assert real.path == str(bars_archive.path)
    from kinema.io import write_video

    write_video(tmp_path / "videos" / "a.mp4", np.zeros((4, 32, 32, 3), np.uint8), fps=8)
    with pytest.raises(KinemaError, match="built-in --real dataset takes its clip size from an export"):
        open_source("builtin:moving_digits", "real", like=open_source(tmp_path / "videos", "fake"))
