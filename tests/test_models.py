"""kinema.models: every model's shapes, ranges, conditioning, lengths, seeds, export round trip.

All configurations are tiny (width 2-4) so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import json

import pytest
import torch

from kinema.errors import KinemaError
from kinema.models import MODELS, build, count_params, flops_per_clip, load_generator, save_generator
from kinema.models.dcgan import latent_walk
from kinema.models.videovae import reconstruct, vae_loss

NAMES = ["dcgan", "mocogan", "videogan", "videovae", "ctgan"]
TINY = dict(width=2, frames=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from a second thread; when other processes hold the cores, each
    # parallel region would wait for a busy one. Restored after this module.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def run_heads(ms, video, labels=None):
    """D's logits for a GAN, E's (mu, logvar) for the VAE, as a list of tensors."""
    return ms.D(video, labels) if ms.D is not None else list(ms.E(video))


def test_registry_and_bad_options():
    assert set(MODELS) == set(NAMES) | {"flow"}   # the flow model has its own tests (test_flow.py)
    with pytest.raises(KinemaError, match="unknown model"):
        build("stylegan")
    with pytest.raises(KinemaError, match="unknown option.*colour"):
        build("dcgan", colour=3)
    for bad in (dict(resolution=48), dict(resolution=512), dict(frames=3), dict(frames=33), dict(channels=2),
                dict(upsample="bilinear")):
        with pytest.raises(KinemaError, match="model videogan"):
            build("videogan", **bad)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_range_heads_and_backward(name):
    ms = build(name, **TINY)
    assert ms.name == name and ms.kind == ("vae" if name == "videovae" else "gan")
    assert (ms.D is None) == (ms.kind == "vae") and (ms.E is None) == (ms.kind == "gan")
    json.dumps(ms.kwargs)  # resolved kwargs are JSON-able and rebuild the same model
    assert count_params(build(name, **ms.kwargs).G) == count_params(ms.G) > 0
    G = ms.G
    assert (G.resolution, G.frames, G.channels, G.num_classes) == (32, 8, 1, 0)
    latents = G.make_latents(3, generator=seeded())
    assert all(v.shape[0] == 3 and v.device.type == "cpu" for v in latents.values())
    video = G(latents)
    assert video.shape == (3, 1, 8, 32, 32)
    assert video.min() >= -1 and video.max() <= 1 and video.std() > 0
    heads = run_heads(ms, video)
    assert len(heads) == {"mocogan": 2, "videovae": 2, "ctgan": 2}.get(name, 1) and all(h.shape[0] == 3 for h in heads)
    if ms.kind == "vae":
        out = vae_loss(ms.E, G, video.detach(), beta=0.5)
        loss = out["total"]
        assert out["kl"] >= 0 and out["recon"] > 0 and torch.allclose(loss, out["recon"] + 0.5 * out["kl"])
    else:
        loss = sum(h.mean() for h in heads)
    loss.backward()
    for net in (G, ms.D or ms.E):
        for pname, p in net.named_parameters():
            if pname.endswith("gamma"):  # attention starts switched off; absent here anyway
                continue
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_conditional(name):
    ms = build(name, num_classes=3, channels=3, **TINY)
    G, labels = ms.G, torch.tensor([0, 1, 2])
    with pytest.raises(KinemaError, match="labels"):
        G(G.make_latents(3))
    latents = G.make_latents(3, generator=seeded())
    video = G(latents, labels)
    assert video.shape == (3, 3, 8, 32, 32)
    heads = ms.D(video, labels) if ms.D is not None else list(ms.E(video, labels))
    assert all(h.shape[0] == 3 for h in heads)
    sum(h.float().mean() for h in heads).backward()
    # Labels reach the pixels: class gains/biases (conditional BN) change the output.
    gains = [m.gain for m in G.modules() if hasattr(m, "gain")]
    assert gains and all(g.weight.grad is not None for g in gains)
    G.eval()
    same = G({k: v[:1].repeat(2, *[1] * (v.dim() - 1)) for k, v in latents.items()}, torch.tensor([0, 1]))
    assert not torch.allclose(same[0], same[1])  # the class code differs from the first step
    with torch.no_grad():
        for g in gains:
            g.weight[1] += 0.5
    moved = G({k: v[:1].repeat(2, *[1] * (v.dim() - 1)) for k, v in latents.items()}, torch.tensor([0, 1]))
    assert torch.equal(same[0], moved[0]) and not torch.allclose(same[1], moved[1])
    if ms.D is not None:  # projection discriminator: the label changes the logit
        d0 = ms.D(video[:1], torch.tensor([0]))
        d1 = ms.D(video[:1], torch.tensor([1]))
        assert not torch.allclose(d0[-1], d1[-1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frames", [4, 12, 16])
def test_clip_lengths(name, frames):
    ms = build(name, width=2, frames=frames)
    video = ms.G(ms.G.make_latents(2, generator=seeded()))
    assert video.shape == (2, 1, frames, 32, 32)
    assert all(h.shape[0] == 2 for h in run_heads(ms, video))


def test_32_frames_and_nearest_upsampling():
    ms = build("videogan", width=2, frames=32, upsample="nearest")
    video = ms.G(ms.G.make_latents(2, generator=seeded()))
    assert video.shape == (2, 1, 32, 32, 32)
    assert ms.D(video)[0].shape == (2,)


def test_attention_in_both_networks():
    ms = build("videogan", attention=True, **TINY)
    assert ms.kwargs["attention_res"] == 8
    ms.D(ms.G(ms.G.make_latents(2, generator=seeded())))[0].sum().backward()
    assert ms.G.trunk.attn.gamma.grad is not None and ms.D.net.attn.gamma.grad is not None


@pytest.mark.parametrize("name", NAMES)
def test_resolution_64(name):
    ms = build(name, resolution=64, width=2, frames=4, channels=3)
    video = ms.G(ms.G.make_latents(2, generator=seeded()))
    assert video.shape == (2, 3, 4, 64, 64)
    assert all(h.shape[0] == 2 for h in run_heads(ms, video))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("res", [128, 256])
def test_large_resolutions_build_and_run(name, res):
    ms = build(name, resolution=res, width=1, frames=4)
    ms.G.eval()
    with torch.no_grad():
        video = ms.G(ms.G.make_latents(1, generator=seeded()))
        assert video.shape == (1, 1, 4, res, res)
        assert all(h.shape[0] == 1 for h in run_heads(ms, video))


@pytest.mark.parametrize("name", ["dcgan", "mocogan", "ctgan"])
def test_extendable_generators_make_longer_clips(name):
    G = build(name, **TINY).G
    assert G.can_extend
    video = G(G.make_latents(2, frames=20, generator=seeded()))
    assert video.shape == (2, 1, 20, 32, 32)


@pytest.mark.parametrize("name", ["videogan", "videovae"])
def test_fixed_length_generators_refuse_other_lengths(name):
    G = build(name, **TINY).G
    assert not G.can_extend
    with pytest.raises(KinemaError, match="exactly 8 frames"):
        G.make_latents(2, frames=20)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_latents_and_video(name):
    G = build(name, **TINY).G.eval()
    a, b, c = (G.make_latents(2, generator=seeded(s)) for s in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a[next(iter(a))], c[next(iter(c))])
    with torch.no_grad():
        assert torch.equal(G(a), G(b)) and not torch.equal(G(a), G(c))
        # In eval mode a video does not depend on the rest of its batch.
        one = G({k: v[:1] for k, v in a.items()})
        assert torch.allclose(one, G(a)[:1], atol=1e-5)


def test_dcgan_walk_is_smooth_and_gaussian():
    z = latent_walk(256, 16, 64, anchor_every=4, walk_angle=0.5, generator=seeded())  # [n, T, Z]
    step = (z[:, 1:] - z[:, :-1]).norm(dim=-1).mean()
    far = (z[:, 0] - z[:, -1]).norm(dim=-1).mean()
    assert step < 0.5 * far
    assert abs(z.std().item() - 1) < 0.1 and abs(z.mean().item()) < 0.05


def test_mocogan_image_frames_option():
    ms = build("mocogan", image_frames=0, **TINY)
    image_logits, video_logits = ms.D(torch.zeros(2, 1, 8, 32, 32))
    assert image_logits.shape == (2, 8) and video_logits.shape == (2,)
    ms = build("mocogan", image_frames=3, **TINY)
    assert ms.D(torch.zeros(2, 1, 8, 32, 32))[0].shape == (2, 3)


def test_videovae_grid_latent_and_reconstruct():
    ms = build("videovae", latent="grid", grid_res=8, z_dim=3, width=4, frames=12)
    z = ms.G.make_latents(2, generator=seeded())["z"]
    assert z.shape == (2, 3, 3, 8, 8)  # t' = ceil(12 / (32 / 8))
    video = ms.G({"z": z})
    mu, logvar = ms.E(video)
    assert mu.shape == logvar.shape == z.shape
    assert reconstruct(ms.E, ms.G, video).shape == video.shape
    with pytest.raises(KinemaError, match="grid_res"):
        build("videovae", latent="grid", grid_res=16)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast(name):
    ms = build(name, **TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        video = ms.G(ms.G.make_latents(2, generator=seeded()))
        heads = run_heads(ms, video)
    assert video.shape == (2, 1, 8, 32, 32) and torch.isfinite(video.float()).all()
    assert all(torch.isfinite(h.float()).all() for h in heads)


def test_flops_and_params():
    small, big = build("videogan", width=2), build("videogan", width=2, resolution=64)
    fs, fb = flops_per_clip(small), flops_per_clip(big)
    assert fs["G"] > 0 and fs["D"] > 0 and fs["E"] == 0 and fs["total"] == fs["G"] + fs["D"]
    assert fb["G"] > 3 * fs["G"]  # 4x the pixels
    assert small.G.training  # modes restored
    moco = build("mocogan", **TINY)
    state = torch.get_rng_state()
    assert flops_per_clip(moco)["D"] > 0 and torch.equal(torch.get_rng_state(), state)  # RNG untouched
    vae = flops_per_clip(build("videovae", width=2))
    assert vae["E"] > 0 and vae["D"] == 0
    assert count_params(None) == 0


@pytest.mark.parametrize("name", NAMES)
def test_export_round_trip(tmp_path, name):
    ms = build(name, num_classes=2, **TINY)
    # Train-mode forward moves BatchNorm running stats away from their initial values.
    ms.G(ms.G.make_latents(4, generator=seeded()), torch.tensor([0, 1, 0, 1]))
    # A torch.compile wrapper (prefix "_orig_mod.") is unwrapped on save; one model shows it.
    wrapped = torch.compile(ms.G) if name == "dcgan" else ms.G
    path = save_generator(tmp_path / "export-000012k.safetensors", wrapped, name, ms.kwargs,
                          {"kimg": 12, "fps": 8.0, "class_names": ["a", "b"]})
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(tmp_path.glob(".tmp-*"))
    for given in (path, path.with_suffix(".json")):
        G2, config = load_generator(given)
        assert config["name"] == name and config["kwargs"] == ms.kwargs
        assert config["meta"]["kimg"] == 12 and "kinema_version" in config["meta"]
        assert not G2.training
    ms.G.eval()
    latents = ms.G.make_latents(2, generator=seeded(3))
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        assert torch.equal(ms.G(latents, labels), G2(latents, labels))


def test_export_errors_name_the_file(tmp_path):
    from kinema.models.export import config_checksum

    ms = build("dcgan", **TINY)
    path = save_generator(tmp_path / "exp.safetensors", ms.G, "dcgan", ms.kwargs, {})
    sidecar = path.with_suffix(".json")
    good_weights, good_config = path.read_bytes(), json.loads(sidecar.read_text())

    def expect(pattern, target=path):
        with pytest.raises(KinemaError, match=pattern) as err:
            load_generator(target)
        assert "exp." in str(err.value) and "\n" not in str(err.value)

    def write(**changes):  # a sidecar edited by someone who also recomputed its checksum
        config = {**good_config, **changes}
        sidecar.write_text(json.dumps({**config, "checksum": config_checksum(config)}))

    path.write_bytes(good_weights[: len(good_weights) // 2])  # truncated
    expect("checksum")
    # Without a recorded weights checksum the export is refused outright.
    write(sha256=None)
    expect("no sha256")
    path.write_bytes(good_weights)
    # An edited sidecar whose checksum was not recomputed is reported as edited.
    sidecar.write_text(json.dumps({**good_config, "kwargs": {**good_config["kwargs"], "width": 8}}))
    expect("edited after export")
    # Weights of another shape (the config says a wider model): the header comparison names the option.
    write(kwargs={**good_config["kwargs"], "width": 8})
    expect("option width=8 does not fit the weights of model dcgan")
    write(kwargs={**good_config["kwargs"], "resolution": 48})
    expect("option resolution must be one of")
    write(name="nosuchmodel")
    expect("unknown model name")
    sidecar.write_text("{not json")
    expect("export config is not valid JSON")
    sidecar.unlink()
    expect("export config not found")
    sidecar.write_text(json.dumps(good_config))
    load_generator(path)  # restored: loads again
    # A version-1 sidecar (weights hash only, no checksum) still loads.
    v1 = {k: v for k, v in good_config.items() if k != "checksum"}
    sidecar.write_text(json.dumps({**v1, "format_version": 1}))
    load_generator(path)
    path.unlink()
    expect("export weights not found")


def test_mocogan_unroll_continues_seamlessly():
    G = build("mocogan", **TINY).G.eval()
    lat = G.make_latents(1, frames=12, generator=seeded())
    with torch.no_grad():
        whole = G(lat)
        m1, h = G.unroll(lat["motion"][:, :5])
        m2, _ = G.unroll(lat["motion"][:, 5:], h)
        pieces = torch.cat([G.render(lat["content"], m1), G.render(lat["content"], m2)], 2)
    assert torch.allclose(whole, pieces, atol=1e-6)


@pytest.mark.parametrize("name,options", [("dcgan", {}), ("mocogan", {"num_classes": 2}),
                                          ("videogan", {"attention": True, "spectral_norm": True})])
def test_r1_double_backward_through_discriminators(name, options):
    """The training loop's R1 penalty differentiates D's input gradient; every D must allow it."""
    ms = build(name, **TINY, **options)
    labels = torch.tensor([0, 1]) if ms.G.num_classes else None
    real = torch.rand(2, 1, 8, 32, 32).mul(2).sub(1).requires_grad_()
    (grad,) = torch.autograd.grad(sum(h.sum() for h in ms.D(real, labels)), real, create_graph=True)
    penalty = grad.square().sum(dim=[1, 2, 3, 4]).mean()
    penalty.backward()
    assert penalty > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ms.D.parameters())
