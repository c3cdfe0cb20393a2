"""Evaluation end to end, against computations written here from the features: each protocol's
covariance convention through ``evaluate``, StyleGAN-V's TorchScript I3D calling convention, the
pytorch-fid Inception forward pass, and reuse of real statistics (counted extractor calls, real
data replaced after caching, damaged cache files)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from conftest import frechet_reference

pytestmark = pytest.mark.usefixtures("one_thread")

# Covariance convention of each protocol family, written here from the reference each reproduces
# (not read from kinema's protocol table): FVD as StyleGAN-V (metric_utils.FeatureStats.get_mean_cov
# divides by N); FID as pytorch-fid / clean-fid (np.cov: divides by N - 1).
CONVENTION = {"fvd": 0, "fid": 1}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from kinema.data.prepare import prepare

    out = tmp_path_factory.mktemp("arch") / "digits"
    return prepare("builtin:moving_digits", out, resolution=32, frames=16, num_videos=24, seed=3, verbose=False)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """Other videos of the same kind: real and fake then differ in covariance more than in mean,
    so the covariance convention shows in the distance."""
    from kinema.data.prepare import prepare

    out = tmp_path_factory.mktemp("other") / "digits"
    return prepare("builtin:moving_digits", out, resolution=32, frames=16, num_videos=24, seed=8, verbose=False)


def features(extractor, source, protocol, num, seed, batch=16):
    """Features of the clips a source gives for a protocol, extracted here batch by batch."""
    with torch.no_grad():
        return np.concatenate([extractor(torch.from_numpy(np.ascontiguousarray(b))).double().numpy()
                               for b in source.clips(protocol, num, seed, batch)])


def test_reference_formula_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)), rng.normal(1, 2, size=(150, 6))
    for ddof in (0, 1):
        s1, s2 = np.cov(x, rowvar=False, ddof=ddof), np.cov(y, rowvar=False, ddof=ddof)
        d = x.mean(0) - y.mean(0)
        want = d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
        assert rel(frechet_reference(x, y, ddof), want) < 1e-8


@pytest.mark.parametrize("name", ["fvd128_16f", "fid2k_frames"])
def test_evaluate_equals_the_reference_computation(tmp_path, archive, other, name):
    from kinema.metrics.builtin import BuiltinExtractor
    from kinema.metrics.evaluate import evaluate
    from kinema.metrics.protocols import get_protocol
    from kinema.metrics.sources import open_source

    num, seed = 12, 3
    r = evaluate([name], str(archive.path), str(other.path), num=num, seed=seed, cache_dir=tmp_path, log=None)[0]
    p = get_protocol(name).with_num(num)
    ext = BuiltinExtractor()
    real = features(ext, open_source(str(archive.path), "real"), p, num, seed)
    fake = features(ext, open_source(str(other.path), "fake"), p, num, seed)
    assert real.shape == fake.shape == (num, ext.dim)
    ddof = CONVENTION[p.metric]
    want = frechet_reference(real, fake, ddof)
    assert rel(r["value"], want) < 1e-6, (r["value"], want)
    assert rel(frechet_reference(real, fake, 1 - ddof), want) > 1e-3   # the other convention is told apart
    # A cache hit gives the same number (the cached statistics carry the same convention).
    again = evaluate([name], str(archive.path), str(other.path), num=num, seed=seed, cache_dir=tmp_path, log=None)[0]
    assert again["cache"] == "hit" and rel(again["value"], want) < 1e-6


class _Detector(torch.nn.Module):
    """A small stand-in with the signature of StyleGAN-V's ``i3d_torchscript.pt``: uint8
    [B, 3, T, H, W] in, 400 numbers out, and every keyword changes the result, so a call that drops
    one (or passes other input) gives other numbers."""

    def __init__(self):
        super().__init__()
        self.register_buffer("proj", torch.linspace(-1, 1, 12 * 400).reshape(12, 400).sin())

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.dim() == 5 and x.shape[1] == 3
        y = x.float()
        if rescale:
            y = y / 127.5 - 1
        if resize:
            y = F.interpolate(y, size=(int(y.shape[2]), 8, 8), mode="trilinear", align_corners=False)
        stats = torch.cat([y.mean(dim=(2, 3, 4)), y.std(dim=(2, 3, 4)), y[:, :, :, :4].mean(dim=(2, 3, 4)),
                           (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=(2, 3, 4))], 1)     # [B, 12]
        logits = stats @ self.proj
        return logits if return_features else torch.softmax(logits, 1)


def save_scripted(module, path):
    """torch.jit.save, with every zip record then rewritten stored: kinema reads only stored
    (uncompressed) records, as in the published files, and torch 2.13 deflates the code records."""
    import zipfile

    torch.jit.save(torch.jit.script(module), str(path))
    with zipfile.ZipFile(path) as z:
        records = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in records:
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, data)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save, used only to make the file
def test_torchscript_i3d_gets_stylegan_v_arguments(tmp_path, archive, export, monkeypatch):
    from kinema.metrics.evaluate import evaluate
    from kinema.metrics.protocols import get_protocol
    from kinema.metrics.sources import open_source
    from kinema.metrics.weights import is_torchscript, load_video_extractor, sha256_file

    monkeypatch.delenv("KINEMA_WEIGHTS", raising=False)
    det = _Detector()
    path = tmp_path / "w" / "i3d_torchscript.pt"
    path.parent.mkdir()
    save_scripted(det, path)
    assert is_torchscript(path)
    ext, found, sha = load_video_extractor(str(path.parent))
    assert found == path and sha == sha256_file(path)
    videos = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 6, 20, 28, 3), dtype=np.uint8))
    x = videos.permute(0, 4, 1, 2, 3)                      # [B, C, T, H, W] uint8, as StyleGAN-V passes it
    want = det(x, rescale=True, resize=True, return_features=True).double()
    assert torch.allclose(ext(videos), want, rtol=1e-5, atol=1e-6)
    for other in ({}, dict(resize=True, return_features=True), dict(rescale=True, return_features=True),
                  dict(rescale=True, resize=True)):
        assert not torch.allclose(det(x, **other).double(), want, rtol=1e-3)   # each keyword matters
    gray = videos[..., :1]
    assert torch.allclose(ext(gray), det(gray.permute(0, 4, 1, 2, 3).repeat(1, 3, 1, 1, 1), rescale=True, resize=True,
                                         return_features=True).double(), rtol=1e-5, atol=1e-6)
    # Through evaluate: FVD between real and generated clips from those features.
    num, seed = 8, 1
    r = evaluate(["fvd128_16f"], str(archive.path), str(export), extractor="i3d", weights=str(path), num=num,
                 seed=seed, cache_dir=tmp_path, log=None)[0]
    p = get_protocol("fvd128_16f").with_num(num)

    def scripted(v):
        return det(v.permute(0, 4, 1, 2, 3).repeat(1, 3 // v.shape[-1], 1, 1, 1), rescale=True, resize=True,
                   return_features=True)

    real = features(scripted, open_source(str(archive.path), "real"), p, num, seed)
    fake = features(scripted, open_source(str(export), "fake"), p, num, seed)
    assert rel(r["value"], frechet_reference(real, fake, CONVENTION["fvd"])) < 1e-5
    assert r["extractor"]["comparable"] and r["extractor"]["file"] == str(path) and "warning" not in r
    assert r["extractor"]["sha256"] == sha


def test_fid_inception_forward_follows_the_fid_graph(tmp_path):
    from kinema.metrics.inception import FIDInceptionV3
    from kinema.metrics.weights import load_frame_extractor

    torch.manual_seed(0)
    net = FIDInceptionV3()
    with torch.no_grad():  # BN statistics away from 0 / 1, so loading and using them shows
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")},
               tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    ext, _, _ = load_frame_extractor(str(tmp_path))
    seen = {}
    hooks = [ext.net.register_forward_pre_hook(lambda m, a: seen.__setitem__("input", a[0])),
             ext.net.Mixed_5b.register_forward_hook(lambda m, a, o: seen.update(in5b=a[0], out5b=o)),
             ext.net.Mixed_7c.register_forward_hook(lambda m, a, o: seen.update(in7c=a[0], out7c=o))]
    frames = np.random.default_rng(1).integers(0, 256, (2, 1, 37, 45, 3), dtype=np.uint8)
    feats = ext(torch.from_numpy(frames))
    probs = ext.probs_from_videos(torch.from_numpy(frames))
    for h in hooks:
        h.remove()
    # pytorch-fid's preprocessing: / 255, bilinear to 299x299 (align_corners=False), then 2x - 1.
    x = torch.from_numpy(frames[:, 0]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(seen["input"], 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1,
                          atol=1e-6)
    assert seen["in5b"].shape == (2, 192, 35, 35) and seen["out7c"].shape == (2, 2048, 8, 8)
    # Features: the global average pool of the last block; probabilities: softmax of the 1008-way fc.
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    assert torch.allclose(feats, seen["out7c"].mean(dim=(2, 3)).double(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits = ext.net.fc(seen["out7c"].mean(dim=(2, 3)))
        assert torch.allclose(probs, torch.softmax(logits.double(), 1), rtol=1e-5, atol=1e-8)
        # The FID graph's pools: average pools ignore the padding (Mixed_5b's pool branch), and the
        # last block's pool branch is a max pool (pytorch-fid's FIDInceptionA / FIDInceptionE_2).
        b5 = ext.net.Mixed_5b.branch_pool(F.avg_pool2d(seen["in5b"], 3, 1, 1, count_include_pad=False))
        assert torch.allclose(seen["out5b"][:, -32:], b5, atol=1e-5)
        assert not torch.allclose(b5, ext.net.Mixed_5b.branch_pool(F.avg_pool2d(seen["in5b"], 3, 1, 1)), atol=1e-5)
        b7 = ext.net.Mixed_7c.branch_pool(F.max_pool2d(seen["in7c"], 3, 1, 1))
        assert torch.allclose(seen["out7c"][:, -192:], b7, atol=1e-5)


def test_proxy_fvd_computes_real_statistics_once(archive, export, monkeypatch):
    from kinema.metrics import proxy
    from kinema.metrics.builtin import BuiltinExtractor
    from kinema.metrics.sources import ExportSource

    monkeypatch.setattr(proxy, "_PROXIES", {})
    calls = []
    forward = BuiltinExtractor.forward

    def counting(self, videos):
        out = forward(self, videos)
        calls.append(out.numpy().copy())
        return out

    monkeypatch.setattr(BuiltinExtractor, "forward", counting)
    G = ExportSource(export).G.train()
    a = proxy.proxy_fvd(G, archive, num=12, seed=0)
    assert len(calls) == 2 and G.training                     # one real batch, one fake batch; mode restored
    real, fake = calls
    assert rel(a, frechet_reference(real, fake, CONVENTION["fvd"])) < 1e-6
    b = proxy.proxy_fvd(G, archive, num=12, seed=0)
    assert len(calls) == 3 and b == a                         # the second call extracted the fake side only
    proxy.proxy_fvd(G, archive, num=12, seed=1)               # another draw of real clips: a new real pass
    assert len(calls) == 5
    # Real clips given as an array (the first 12 archive clips, permuted by the seed): same reuse.
    mine = BuiltinExtractor()(torch.from_numpy(archive.clips(np.arange(12)))).numpy()
    del calls[:]
    p = proxy.ProxyFVD(archive.clips(np.arange(12)), num=12)
    assert len(calls) == 1 and np.allclose(np.sort(calls[0].sum(1)), np.sort(mine.sum(1)), rtol=1e-9)
    value = p(G)
    assert len(calls) == 2 and rel(value, frechet_reference(calls[0], calls[1], CONVENTION["fvd"])) < 1e-6
    assert p(G) == value and len(calls) == 3


def _evaluate(real, fake, cache, log=None):
    from kinema.metrics.evaluate import evaluate

    return evaluate(["fvd128_16f"], str(real), str(fake), num=8, seed=2, cache_dir=cache, log=log)[0]


def test_cached_real_statistics_are_used_and_damaged_ones_recomputed(tmp_path, archive, export):
    real = tmp_path / "real"
    shutil.copytree(archive.path, real)
    first = _evaluate(real, export, tmp_path / "cache")
    (stats_file,) = (tmp_path / "cache").glob("real-*.npz")
    # Replace every real frame by black (same size, same index): the cache is keyed by the archive's
    # content hash, so a hit must give the first number; a real pass would see black frames.
    frames = real / "frames.u8"
    frames.write_bytes(bytes(frames.stat().st_size))
    hit = _evaluate(real, export, tmp_path / "cache")
    assert hit["cache"] == "hit" and hit["value"] == first["value"]
    assert _evaluate(real, export, tmp_path / "other-cache")["value"] != first["value"]   # black frames differ
    shutil.rmtree(real)
    shutil.copytree(archive.path, real)
    # A torn cache file and a foreign one: reported as a miss, recomputed, rewritten whole.
    good = stats_file.read_bytes()
    for damage in (good[: len(good) // 2], b"not a zip file"):
        stats_file.write_bytes(damage)
        messages = []
        again = _evaluate(real, export, tmp_path / "cache", log=messages.append)
        assert again["cache"] == "miss" and again["value"] == first["value"]
        assert any("real pass" in m for m in messages) and not any("cache hit" in m for m in messages)
        with np.load(stats_file, allow_pickle=False) as z:            # rewritten whole
            assert int(z["n"]) == 8 and z["cov"].shape == (720, 720)
