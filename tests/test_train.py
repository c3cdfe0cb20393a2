"""Training: losses, augmentation, EMA, config, every model x loss on CPU, learning a trivial set, the demo."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema import dist
from kinema.train import augment, get_preset, losses, override, train
from kinema.train.config import PRESETS, from_dict, to_dict
from kinema.train.ema import ema_beta, make_ema, update_ema


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flat_archive(tmp_path_factory):
    """A trivially learnable archive: 24 clips of 4 frames, 32x32 gray, every pixel level 200."""
    from kinema.data import prepare
    from kinema.io import write_video

    root = tmp_path_factory.mktemp("flat")
    for i in range(3):
        write_video(root / "src" / f"flat{i}.mp4", np.full((32, 32, 32, 1), 200, np.uint8), fps=8, crf=0)
    archive = prepare(root / "src", root / "archive", resolution=32, frames=4, channels=1, workers=1, verbose=False)
    assert archive.num_clips == 24
    return archive


def tiny(archive, out, **sections):
    base = override(get_preset("tiny"), data={"source": str(archive.path)}, log={"out": str(out)})
    return override(base, **sections)


def quiet(*args):
    pass


# Losses.

def test_losses_known_values_and_heads():
    real, fake = [torch.tensor([2.0, -1.0])], [torch.tensor([0.5])]
    ns = losses.d_loss(real, fake, "ns")
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2 + math.log1p(math.exp(0.5))
    assert ns.item() == pytest.approx(expected, rel=1e-6)
    hinge = losses.d_loss(real, fake, "hinge")
    assert hinge.item() == pytest.approx((0 + 2) / 2 + 1.5)
    assert losses.g_loss(fake, "hinge").item() == pytest.approx(-0.5)
    assert losses.g_loss(fake, "ns").item() == pytest.approx(math.log1p(math.exp(-0.5)), rel=1e-6)
    # Two heads: averaged within each head, summed over heads, whatever their sizes.
    two = losses.g_loss([torch.zeros(1), torch.zeros(7)], "ns")
    assert two.item() == pytest.approx(2 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError):
        losses.g_loss(fake, "wasserstein")


def test_r1_is_squared_input_gradient():
    # D(x) = sum(w * x) per sample: the gradient is w, so R1 = ||w||^2 for every sample.
    w = torch.randn(1, 2, 3, 4, 4, requires_grad=True)  # D's "weights"
    x = torch.randn(5, 2, 3, 4, 4, requires_grad=True)
    logits = [(x * w).flatten(1).sum(1)]
    r1 = losses.r1_penalty(x, logits)
    assert r1.item() == pytest.approx(w.square().sum().item(), rel=1e-5)
    r1.backward()  # create_graph=True: the penalty reaches D's weights (d||w||^2/dw = 2w)
    assert torch.allclose(w.grad, 2 * w.detach())


def test_diversity_flags_collapse():
    real = torch.rand(8, 1, 4, 8, 8) * 2 - 1
    assert losses.diversity(real.clone(), real) == pytest.approx(1.0)
    collapsed = real[:1].expand(8, -1, -1, -1, -1)
    assert losses.diversity(collapsed, real).item() == pytest.approx(0.0, abs=1e-6)


# Augmentation of D inputs.

def test_augment_is_identical_across_frames_and_differentiable():
    frame = torch.rand(6, 3, 1, 16, 16) * 2 - 1
    video = frame.expand(-1, -1, 5, -1, -1).clone().requires_grad_(True)  # 6 clips of 5 equal frames
    gen = torch.Generator().manual_seed(1)
    out = augment.augment(video, gen, translation_ratio=0.25, cutout_ratio=0.5, use_color=True)
    assert out.shape == video.shape
    assert torch.equal(out, out[:, :, :1].expand_as(out)), "a clip's frames were augmented differently"
    assert not torch.allclose(out, video), "nothing changed"
    out.square().sum().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0
    # Same generator state -> same augmentation (needed for exact resume).
    again = augment.augment(video, torch.Generator().manual_seed(1), translation_ratio=0.25, cutout_ratio=0.5,
                            use_color=True)
    assert torch.equal(out, again)


def test_translation_shifts_whole_pixels_and_cutout_blanks_a_square():
    x = torch.arange(64.0).view(1, 1, 1, 8, 8).expand(3, 1, 2, 8, 8).contiguous()
    y = augment.translation(x, torch.Generator().manual_seed(0), ratio=0.25)
    for b in range(3):
        # Some (dy, dx) in [-2, 2]^2 reproduces the output exactly (zero fill outside).
        matches = 0
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros(8, 8)
                src = x[b, 0, 0]
                ys, xs = slice(max(dy, 0), 8 + min(dy, 0)), slice(max(dx, 0), 8 + min(dx, 0))
                yd, xd = slice(max(-dy, 0), 8 + min(-dy, 0)), slice(max(-dx, 0), 8 + min(-dx, 0))
                ref[ys, xs] = src[yd, xd]
                matches += torch.equal(y[b, 0, 0], ref) and torch.equal(y[b, 0, 1], ref)
        assert matches == 1
    ones = torch.ones(4, 1, 3, 16, 16)
    cut = augment.cutout(ones, torch.Generator().manual_seed(0), ratio=0.5)
    zeros = (cut == 0).sum(dim=(-1, -2))  # [B, 1, T] pixels blanked per frame
    assert (zeros > 0).all() and (zeros <= 64).all() and (zeros == zeros[:, :, :1]).all()


# EMA.

def test_ema_half_life_and_rampup():
    beta = ema_beta(batch=100, nimg=10**6, half_life_kimg=1.0)
    assert beta ** 10 == pytest.approx(0.5)  # 10 steps of 100 clips = one half-life of 1000
    assert ema_beta(100, nimg=200, half_life_kimg=1.0, rampup=0.5) == pytest.approx(0.5)  # capped at 100 clips
    assert ema_beta(100, nimg=0, half_life_kimg=1.0, rampup=0.5) == 0.0
    net = torch.nn.Linear(2, 2)
    ema = make_ema(net)
    with torch.no_grad():
        net.weight.add_(1.0)
    before = ema.weight.clone()
    update_ema(ema, net, 0.75)
    assert torch.allclose(ema.weight, 0.75 * before + 0.25 * net.weight)
    assert not ema.weight.requires_grad


# Config and dist.

def test_config_round_trip_presets_and_errors():
    for name in PRESETS:
        cfg = get_preset(name).validate()
        assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(KinemaError, match="unknown config keys"):
        from_dict({"schedule": {"kimgs": 3}})
    # Nested sections can be overridden field by field; the others keep their values.
    base = get_preset("default")
    cfg = override(base, loss={"augment": {"cutout": 0.5}}, optim={"betas": [0.5, 0.9]})
    assert cfg.loss.augment.cutout == 0.5 and cfg.loss.augment.translation == base.loss.augment.translation
    assert cfg.optim.betas == (0.5, 0.9) and cfg.loss.r1_gamma == base.loss.r1_gamma
    with pytest.raises(KinemaError, match="loss"):
        override(get_preset("tiny"), loss={"kind": "wgan"}).validate()
    with pytest.raises(KinemaError, match="preset"):
        get_preset("huge")


def test_dist_is_world_of_one_without_torchrun():
    assert (dist.world_size(), dist.rank(), dist.is_main()) == (1, 0, True)
    assert dist.rank_seed(7) == 7
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(dist.all_reduce_mean(x), x)


def test_cli_dry_run_and_refusal(tmp_path, capsys, flat_archive):
    from kinema.cli import main

    assert main(["train", str(flat_archive.path), "--preset", "tiny", "--model", "dcgan", "--loss", "hinge",
                 "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["name"] == "dcgan" and cfg["loss"]["kind"] == "hinge"
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
    assert main(["train", "--batch", "0", "--dry-run"]) == 2
    assert "batch" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--gpus", "3", "--dry-run"]) == 2   # batch 4 over 3 ranks
    assert "--gpus: global batch 4 is not divisible by 3 ranks" in capsys.readouterr().err
    # The torchrun child gets the same command without --gpus, however it was spelled.
    from kinema.cli.train import _without_gpus
    assert _without_gpus(["train", "x", "--gpus", "2", "--gpu=2", "--gp", "2", "--grad-clip", "1"]) == \
        ["train", "x", "--grad-clip", "1"]


# Every model and loss trains on CPU; on a flat-grey set G moves towards grey.

@pytest.mark.parametrize("model,kind", [("dcgan", "ns"), ("mocogan", "hinge"), ("videogan", "ns"),
                                        ("videogan", "hinge"), ("videovae", "ns")])
def test_every_model_and_loss_trains(tmp_path, flat_archive, model, kind):
    cfg = tiny(flat_archive, tmp_path / "run", model={"name": model}, loss={"kind": kind})
    result = train(cfg, log=quiet)
    assert result.nimg == 16 and result.steps == 4
    assert result.export.is_file() and result.state.is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    keys = set().union(*records)
    wanted = {"loss/VAE_total", "loss/VAE_kl"} if model == "videovae" else \
        {"loss/D", "loss/G", "loss/R1", "D/real", "D/fake", "gradnorm/D", "gradnorm/G", "diversity", "lr/G"}
    assert wanted <= keys
    assert all(math.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    assert (tmp_path / "run" / "samples" / "samples-000000k.png").is_file()
    assert (tmp_path / "run" / "samples" / "samples-000000k.mp4").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"] == model


def _grey_distance(G, target: float) -> float:
    from kinema.sample.generate import generate

    return (generate(G, list(range(8))) - target).abs().mean().item()


@pytest.mark.parametrize("model,kind", [("mocogan", "ns"), ("dcgan", "hinge"), ("videovae", "ns")])
def test_learns_a_flat_grey_set(tmp_path, flat_archive, model, kind):
    from kinema.models import build, load_generator
    from kinema.train.loop import model_kwargs

    target = 200 / 127.5 - 1  # the archive's pixel value in model units
    # Spectral norm on for the GANs: the option reaches the model and training still works.
    cfg = tiny(flat_archive, tmp_path / "run", model={"name": model, "spectral_norm": model != "videovae"},
               loss={"kind": kind}, optim={"g_lr": 2e-3, "d_lr": 2e-3}, schedule={"kimg": 0.16, "ema_kimg": 0.004})
    torch.manual_seed(cfg.schedule.seed)  # the loop seeds like this before building: same initial G
    d0 = _grey_distance(build(model, **model_kwargs(cfg, channels=1, num_classes=0)).G, target)
    result = train(cfg, log=quiet)
    d1 = _grey_distance(load_generator(result.export)[0], target)
    assert d1 < 0.5 * d0, f"{model}: output did not move towards the data ({d0:.3f} -> {d1:.3f})"
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    if model == "videovae":
        recon = [r["loss/VAE_recon"] for r in records if "loss/VAE_recon" in r]
        assert recon[-1] < 0.5 * recon[0]
    else:
        # D starts unable to tell real from fake and its loss must fall below where it started.
        d = [r["loss/D"] for r in records if "loss/D" in r]
        assert min(d[1:]) < d[0]


def test_nan_stops_without_saving(tmp_path, flat_archive, monkeypatch):
    from kinema.train import TrainingDiverged, list_states

    from kinema.train.status import read_status

    cfg = tiny(flat_archive, tmp_path / "run", model={"name": "dcgan"})
    train(cfg, log=quiet)
    assert read_status(tmp_path / "run")["state"] == "finished"
    (state,) = list_states(tmp_path / "run")
    before = state[1].read_bytes()
    real_g_loss = losses.g_loss
    monkeypatch.setattr(losses, "g_loss", lambda logits, kind="ns": real_g_loss(logits, kind) * float("nan"))
    with pytest.raises(TrainingDiverged, match="loss G is nan"):
        train(override(cfg, schedule={"kimg": 0.032}), resume="latest", log=quiet)
    assert list_states(tmp_path / "run") == [state] and state[1].read_bytes() == before
    status = read_status(tmp_path / "run")     # what kinema studio shows as "diverged"
    assert status["state"] == "diverged" and "loss G is nan" in status["message"]


def test_demo_writes_a_preview(tmp_path):
    from kinema.train.demo import run_demo

    lines = []
    result = run_demo(minutes=0.4, out=tmp_path / "demo", cache_dir=tmp_path / "cache", progress=False,
                      overrides={"model": {"width": 8}, "schedule": {"batch": 8}}, log=lines.append)
    assert result.preview_mp4.stat().st_size > 0 and result.preview_png.stat().st_size > 0
    assert result.kimg > 0 and result.seconds < 0.4 * 60 + 15
    assert any(str(result.preview_mp4) in line for line in lines)
    with pytest.raises(KinemaError, match="not from a kinema run"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "thesis.tex").write_text("keep me")
        run_demo(minutes=0.4, out=tmp_path / "other", cache_dir=tmp_path / "cache", log=quiet)
