"""Metric mathematics against independent computations, and the I3D architecture against its spec."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from kinema.errors import KinemaError
from kinema.metrics.frechet import FeatureStats, fit_gaussian, frechet_distance
from kinema.metrics.inception_score import inception_score
from kinema.metrics.mmd import kernel_distance, mmd2_unbiased


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# --- Fréchet distance -------------------------------------------------------------------------

def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    # For commuting (diagonal) covariances: |mu1-mu2|^2 + sum (sqrt v1 - sqrt v2)^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert rel(frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), expected) < 1e-6


def test_frechet_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(1)
    d = 32
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    assert rel(frechet_distance(mu1, s1, mu2, s2), expected) < 1e-6


def test_frechet_rank_deficient_is_exact():
    # 10 samples in 50 dimensions: covariance of rank 9. With equal covariances the trace terms
    # cancel exactly, so the distance must be |shift|^2 (sqrtm-based code goes complex here).
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 50))
    shift = rng.normal(size=50)
    mu, cov = fit_gaussian(x)
    assert np.linalg.matrix_rank(cov) == 9
    assert frechet_distance(mu, cov, mu, cov) < 1e-9
    assert rel(frechet_distance(mu, cov, mu + shift, cov), shift @ shift) < 1e-6


def test_feature_stats_stream_matches_numpy_cov():
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 2.0, size=(500, 16)).astype(np.float32)
    stats = FeatureStats(16)
    for i in range(0, 500, 64):
        stats.update(x[i:i + 64])
    for ddof in (0, 1):
        mean, cov = stats.mean_cov(ddof)
        np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False, ddof=ddof), rtol=1e-9, atol=1e-12)


def test_frechet_defaults_and_input_checks():
    from kinema.metrics.frechet import frechet_distance_from_features

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.5, 2.0, size=(25, 4))
    # Defaults are numpy's unbiased estimator (ddof 1); the distance of features is that of their Gaussians.
    mean, cov = fit_gaussian(x)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12)
    stats = FeatureStats(4)
    stats.update(x)
    np.testing.assert_allclose(stats.mean_cov()[1], np.cov(x, rowvar=False), rtol=1e-12)
    d = x.mean(0) - y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    want = d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert rel(frechet_distance_from_features(x, y), want) < 1e-8
    # Too few vectors for the estimator: n must exceed ddof.
    one = FeatureStats(4)
    one.update(x[:1])
    assert np.array_equal(one.mean_cov(0)[1], np.zeros((4, 4)))
    with pytest.raises(ValueError, match="need more than 1 feature vectors, have 1"):
        one.mean_cov(1)
    # Shapes: features must be [N, D]; means and covariances must agree.
    for bad in (np.zeros(4), np.zeros((3, 5))):
        with pytest.raises(ValueError, match="expected features"):
            stats.update(bad)
    mu, sig = np.zeros(4), np.eye(4)
    for args in ((mu, sig, np.zeros(3), sig), (mu, sig, mu, np.eye(3)), (mu, np.eye(3), mu, np.eye(3))):
        with pytest.raises(ValueError, match="shape mismatch"):
            frechet_distance(*args)


# --- KID / KVD ----------------------------------------------------------------------------------

def mmd_loop(x, y):
    """Unbiased MMD^2 with k(a,b) = (a.b/d + 1)^3, written as plain loops."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd_matches_loop():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.3, 1.2, size=(30, 8))
    assert rel(mmd2_unbiased(x, y), mmd_loop(x, y)) < 1e-6


def test_kernel_distance_subsets():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 8)), rng.normal(0.5, 1, size=(40, 8))
    # One subset of everything: a permutation of the full sample, which MMD does not see.
    mean, std = kernel_distance(x, y, num_subsets=1, subset_size=40, seed=0)
    assert rel(mean, mmd_loop(x, y)) < 1e-6 and std == 0
    # Subsets are seeded: same seed, same number (no hidden global RNG), another seed, other
    # subsets; each subset is an unbiased estimate, so the mean stays near the full-sample value.
    seeded = kernel_distance(x, y, 10, 20, seed=3)
    assert seeded == kernel_distance(x, y, 10, 20, seed=3) != kernel_distance(x, y, 10, 20, seed=4)
    assert abs(seeded[0] - mmd_loop(x, y)) < 3 * seeded[1] / np.sqrt(10) + 1e-3
    assert kernel_distance(x, y, 10, 20)[0] > kernel_distance(x, rng.normal(size=(40, 8)), 10, 20)[0]


# --- Inception Score ---------------------------------------------------------------------------

def is_reference(p, splits):
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_reference():
    import scipy.stats  # noqa: F401

    rng = np.random.default_rng(6)
    logits = rng.normal(size=(100, 20)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got, ref = inception_score(p, 10), is_reference(p, 10)
    assert rel(got[0], ref[0]) < 1e-6 and rel(got[1], ref[1]) < 1e-6
    # Confident and uniform over K classes -> IS = K; all the same class -> IS = 1.
    assert rel(inception_score(np.eye(20)[np.arange(100) % 20], 1)[0], 20.0) < 1e-9
    assert rel(inception_score(np.eye(20)[np.zeros(100, int)], 1)[0], 1.0) < 1e-9


# --- I3D ----------------------------------------------------------------------------------------

# The published InceptionI3d layout (piergiaj/pytorch-i3d, as used by VideoGPT/DIGAN/TATS for
# i3d_pretrained_400.pt): module -> (in channels, out channels, kernel). This table is the spec.
STEM = {"Conv3d_1a_7x7": (3, 64, 7), "Conv3d_2b_1x1": (64, 64, 1), "Conv3d_2c_3x3": (64, 192, 3)}
MIXED = {  # in, then (b0, b1a, b1b, b2a, b2b, b3b)
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32), "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64), "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64), "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128), "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}


def published_layout() -> dict[str, tuple]:
    spec = {}

    def unit(name, cin, cout, k):
        spec[f"{name}.conv3d.weight"] = (cout, cin, k, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            spec[f"{name}.bn.{p}"] = (cout,)

    for name, (cin, cout, k) in STEM.items():
        unit(name, cin, cout, k)
    for name, (cin, b0, b1a, b1b, b2a, b2b, b3b) in MIXED.items():
        unit(f"{name}.b0", cin, b0, 1)
        unit(f"{name}.b1a", cin, b1a, 1)
        unit(f"{name}.b1b", b1a, b1b, 3)
        unit(f"{name}.b2a", cin, b2a, 1)
        unit(f"{name}.b2b", b2a, b2b, 3)
        unit(f"{name}.b3b", cin, b3b, 1)
    spec["logits.conv3d.weight"] = (400, 1024, 1, 1, 1)
    spec["logits.conv3d.bias"] = (400,)
    return spec


def test_i3d_state_dict_matches_published_layout():
    from kinema.metrics.i3d import InceptionI3d

    sd = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sd == published_layout()


def test_i3d_forward_400_logits_and_state_dict_loading(tmp_path):
    from kinema.metrics.i3d import InceptionI3d, load_i3d_state_dict

    torch.manual_seed(0)
    net = InceptionI3d().eval()
    with torch.no_grad():
        for p in net.state_dict().values():  # random BN statistics too, so loading is really checked
            if p.dtype.is_floating_point:
                p.copy_(torch.rand_like(p) * 0.5 + 0.5 if p.dim() == 1 else torch.randn_like(p) * 0.05)
    # The published file comes from an old PyTorch: no num_batches_tracked, saved from DataParallel.
    state = {"module." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    loaded = load_i3d_state_dict(tmp_path / "i3d_pretrained_400.pt")
    ours = {k: v for k, v in loaded.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(v, state["module." + k]) for k, v in ours.items()) and len(ours) == len(state)
    with torch.no_grad():
        logits = loaded(torch.randn(1, 3, 16, 224, 224))
    assert logits.shape == (1, 400) and torch.isfinite(logits).all() and logits.std() > 0


def test_i3d_rejects_foreign_state_dict(tmp_path):
    from kinema.metrics.i3d import load_i3d_state_dict

    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(KinemaError, match="not the published InceptionI3d state dict layout"):
        load_i3d_state_dict(tmp_path / "x.pt")


def test_videogpt_preprocess_resizes_short_side_and_centres():
    from kinema.metrics.i3d import videogpt_preprocess

    v = torch.zeros(2, 3, 32, 48, 1, dtype=torch.uint8)
    v[..., 16:32, :] = 255  # middle third of the width white
    x = videogpt_preprocess(v)
    assert x.shape == (2, 3, 3, 224, 224)
    assert x.min() >= -1 and x.max() <= 1  # VideoGPT's fvd.py doubles data.py's [-0.5, 0.5]
    assert x[0, 0, 0, 112, 112] == 1 and x[0, 0, 0, 112, 0] == -1


def test_missing_weights_error_names_file_and_place(tmp_path, monkeypatch):
    from kinema.metrics.weights import find_weights

    monkeypatch.delenv("KINEMA_WEIGHTS", raising=False)
    with pytest.raises(KinemaError) as err:
        find_weights("i3d", tmp_path)
    msg = str(err.value)
    assert "i3d_torchscript.pt" in msg and "i3d_pretrained_400.pt" in msg and "dropbox.com" in msg
    assert "\n" not in msg
    with pytest.raises(KinemaError, match="inception-2015-12-05.pt"):
        find_weights("inception", None)
    (tmp_path / "i3d_pretrained_400.pt").write_bytes(b"x")
    monkeypatch.setenv("KINEMA_WEIGHTS", str(tmp_path))
    assert find_weights("i3d").name == "i3d_pretrained_400.pt"


def test_fid_inception_layout_and_state_dict_loading(tmp_path):
    from kinema.metrics.inception import FIDInceptionV3, load_fid_inception_state_dict

    net = FIDInceptionV3()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    # Spot checks against pytorch-fid's pt_inception-2015-12-05 layout (torchvision names, 1008 classes).
    expected = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
                "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5), "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
                "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3), "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
                "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7), "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
                "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
                "fc.weight": (1008, 2048), "fc.bias": (1008,)}
    assert {k: shapes[k] for k in expected} == expected
    assert not any(k.startswith("AuxLogits") for k in shapes)
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")},
               tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    loaded = load_fid_inception_state_dict(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    assert torch.equal(loaded.fc.weight, net.fc.weight)


def test_protocol_names_state_the_protocol():
    from kinema.metrics.protocols import get_protocol

    p = get_protocol("fvd32_8f")
    assert (p.metric, p.num_real, p.num_fake, p.frames, p.unit) == ("fvd", 32, 32, 8, "clip")
    assert get_protocol("is64_4f").num_real == 0 and get_protocol("is64_4f").num_fake == 64
    k = get_protocol("kid5k_frames")
    assert (k.metric, k.num_real, k.unit, k.real_sampling) == ("kid", 5000, "frame", "random_frames")
    assert get_protocol("fvd2048_16f") is get_protocol("fvd2048_16f")  # the table's own entry
    for bad in ("fvd1_8f", "fvd32_0f", "fvd32", "lpips256_16f"):
        with pytest.raises(KinemaError, match="unknown protocol"):
            get_protocol(bad)
