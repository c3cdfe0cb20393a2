"""Built-in extractor, protocols, sources, cache, CLI and the built-in dataset scores, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.data.builtin import generate_builtin
from kinema.errors import KinemaError

from conftest import frechet_reference


def clips(name, n, frames=16, size=32, seed=0):
    return np.stack([v for v, _, _ in generate_builtin(name, n, frames, size, seed)])


@pytest.fixture(scope="module")
def digits():
    return clips("moving_digits", 96, seed=11)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from kinema.data.prepare import prepare

    out = tmp_path_factory.mktemp("arch") / "digits"
    return prepare("builtin:moving_digits", out, resolution=32, frames=16, num_videos=40, seed=3, verbose=False)


def test_fvd_halves_small_corruptions_large(digits):
    from kinema.metrics.builtin import BuiltinExtractor
    from kinema.metrics.evaluate import features_of

    ext = BuiltinExtractor()
    feats = lambda v: features_of(ext, (v[i:i + 32] for i in range(0, len(v), 32)))  # noqa: E731
    a, b = digits[:48], digits[48:]
    ref = feats(a)
    fvd = lambda v: frechet_reference(ref, feats(v), ddof=0)  # noqa: E731  (computed in the test, not by kinema)
    rng = np.random.default_rng(0)
    halves = fvd(b)
    shuffled = fvd(np.stack([c[rng.permutation(16)] for c in b]))  # temporal corruption only
    frozen = fvd(np.repeat(b[:, :1], 16, axis=1))
    noisy = fvd(np.clip(b.astype(np.int16) + rng.integers(-40, 41, b.shape), 0, 255).astype(np.uint8))
    print(f"FVD builtin: halves {halves:.3f} shuffled {shuffled:.3f} frozen {frozen:.3f} noisy {noisy:.3f}")
    assert shuffled > 3 * halves, (halves, shuffled)
    # Measured: halves 0.82, shuffled 5.8, frozen 2.2, noisy 1.9 (deterministic on one machine).
    assert frozen > 2 * halves and noisy > 1.5 * halves, (halves, frozen, noisy)


def test_builtin_extractor_is_deterministic_and_identified(digits):
    from kinema.metrics.builtin import BuiltinExtractor

    x = torch.from_numpy(digits[:4])
    a, b = BuiltinExtractor(), BuiltinExtractor()
    assert a.weights_hash() == b.weights_hash() != BuiltinExtractor(seed=1).weights_hash()
    assert torch.equal(a(x), b(x)) and a(x).shape == (4, a.dim) and a(x).dtype == torch.float64
    # Gray and the same frames as RGB give the same features; one frame works (frame protocols).
    assert torch.equal(a(x), a(x.expand(-1, -1, -1, -1, 3)))
    assert a(x[:, :1]).shape == (4, a.dim)


def test_eval_cli_cache_hit_same_number_and_jsonl(tmp_path, archive, capsys):
    from kinema.io import write_video

    fake = tmp_path / "fake"
    for i, v in enumerate(clips("moving_digits", 16, frames=20, seed=99)):
        write_video(fake / f"v{i:02d}.mp4", v, fps=8, codec="h264", crf=10)
    out = tmp_path / "res.jsonl"
    args = ["eval", "--metric", "fvd128_16f", "--metric", "kvd256_16f", "--num", "16", "--real", str(archive.path),
            "--fake", str(fake), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "cache hit" not in first and "not comparable" in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert second.count("cache hit") == 2
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    assert len(lines) == 4
    r1, r2 = lines[0], lines[2]
    assert r1["value"] == r2["value"] and r1["value"] > 0 and lines[1]["value"] == lines[3]["value"]
    assert (r1["cache"], r2["cache"]) == ("miss", "hit")
    assert r1["protocol"]["real_sampling"] == "one_clip_per_video" and r1["overrides"] == {"num": 16}
    assert r1["real"]["content_hash"] == archive.content_hash and r1["real"]["count"] == 16
    assert r1["extractor"]["name"] == "builtin" and not r1["extractor"]["comparable"] and "warning" in r1
    assert r1["kinema_version"] and len(r1["extractor"]["sha256"]) == 64
    # The printed value has the same digits on both runs.
    row = lambda text: [ln for ln in text.splitlines() if ln.split()[0] == "fvd128_16f"][0]  # noqa: E731
    assert row(first).split()[1] == row(second).split()[1]


def test_eval_export_is_deterministic_and_seeded(tmp_path, archive, export):
    from kinema.metrics.evaluate import evaluate
    from kinema.metrics.sources import ExportSource, generate_clips

    kw = dict(num=16, seed=5, cache_dir=tmp_path, log=None)
    a = evaluate(["fvd128_16f", "is256_16f"], str(archive.path), str(export), **kw)
    b = evaluate(["fvd128_16f", "is256_16f"], str(archive.path), str(export), **kw)
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert a[0]["fake"]["seeds"] == "5..20" and a[1]["real"] is None
    G = ExportSource(export).G
    # Video of seed s does not depend on the batch it is generated in.
    assert np.array_equal(generate_clips(G, [7, 8, 9], 16)[1], generate_clips(G, [8], 16)[0])


def test_fid_frame_protocol_runs(tmp_path, archive, export):
    from kinema.metrics.evaluate import evaluate

    r = evaluate(["fid2k_frames"], str(archive.path), str(export), num=64, cache_dir=tmp_path, log=None)[0]
    assert r["protocol"]["unit"] == "frame" and r["real"]["count"] == 64 and r["fake"]["count"] == 64
    assert r["fake"]["seeds"] == "0..3"                 # 64 frames = all frames of 4 generated 16-frame videos
    # (Its value against a computation in the test: tests/test_metrics_e2e.py.)


def test_clear_errors(tmp_path, archive, export, capsys, monkeypatch):
    monkeypatch.delenv("KINEMA_WEIGHTS", raising=False)
    base = ["eval", "--real", str(archive.path), "--fake", str(export), "--cache-dir", str(tmp_path)]
    # Fewer videos than the protocol needs: says how many were found.
    assert main(base + ["--metric", "fvd256_16f"]) == 2
    err = capsys.readouterr().err
    assert "needs 256 videos" in err and "found 40" in err
    # Clips shorter than the protocol's frames.
    assert main(base + ["--metric", "fvd2048_128f", "--num", "8"]) == 2
    err = capsys.readouterr().err
    assert "at least 128 frames" in err and "longest 16 frames" in err
    # Missing weights: the expected file and where it is published.
    assert main(base + ["--metric", "fvd128_16f", "--extractor", "i3d", "--num", "8"]) == 2
    err = capsys.readouterr().err
    assert "i3d_torchscript.pt" in err and "i3d_pretrained_400.pt" in err
    # A generator that cannot extend its clips (videogan) cannot serve a 128-frame protocol.
    from kinema.metrics.protocols import get_protocol
    from kinema.metrics.sources import ExportSource
    from kinema.models import build, save_generator

    ms = build("videogan", resolution=32, frames=16, channels=1, width=8)
    path = save_generator(tmp_path / "vg.safetensors", ms.G, "videogan", ms.kwargs)
    with pytest.raises(KinemaError, match="16-frame clips and cannot extend them; protocol fvd2048_128f needs 128"):
        ExportSource(path).clips(get_protocol("fvd2048_128f"), 4, 0, 4)


@pytest.fixture
def one_thread():
    # Training on a loaded 2-core machine: one thread avoids OpenMP contention (3x faster here).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_digit_scores_separate_real_from_junk(tmp_path, one_thread):
    from kinema.metrics.digits import ClassifierSettings, load_classifier, motion_accel, score_digits

    # A deliberately short training run (the default one takes about a minute on 2 cores).
    s = ClassifierSettings(size=32, train_videos=200, test_videos=40, frames=2, steps=100)
    logs = []
    clf = load_classifier(settings=s, cache_dir=tmp_path, log=logs.append)
    assert logs and 0.3 < clf.accuracy <= 1  # well above 10-class chance, measured on held-out videos
    n_logs = len(logs)
    again = load_classifier(settings=s, cache_dir=tmp_path, log=logs.append)
    assert again.accuracy == clf.accuracy and len(logs) == n_logs  # loaded from the cache, not retrained
    real = clips("moving_digits", 20, seed=123)
    noise = np.random.default_rng(0).integers(0, 256, real.shape).astype(np.uint8)
    good, bad = score_digits(real, clf, threshold=0.5), score_digits(noise, clf, threshold=0.5)
    assert good["recognised_frac"] > 0.4 and bad["recognised_frac"] < 0.05
    assert good["consistent_frac"] > bad["consistent_frac"] and bad["histogram"]["none"] == 20
    assert sum(good["histogram"].values()) == 20
    rgb = score_digits(np.repeat(real, 3, axis=-1), clf, threshold=0.5)
    assert abs(rgb["recognised_frac"] - good["recognised_frac"]) < 0.05  # RGB -> gray is accepted
    # Motion: constant-velocity shapes are smooth, shuffled frames are not.
    shapes = clips("bouncing_shapes", 12, seed=5)
    rng = np.random.default_rng(1)
    assert motion_accel(shapes) < 0.5 * motion_accel(np.stack([c[rng.permutation(16)] for c in shapes]))
