"""Motion measures (kinema.metrics.motion): object trajectories, bounces, identity, and the generic
motion distance ranking corrupted variants of real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.data.builtin import generate_builtin
from kinema.errors import KinemaError
from kinema.metrics import motion as M


def clips(name, n, frames=16, size=32, seed=0):
    return np.stack([v for v, _, _ in generate_builtin(name, n, frames, size, seed)])


def variants(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """From two independent real sets of 32-frame clips: real (a's first 16 frames) and, made from
    b, held-out real, slowed down 2x (each of 8 frames shown twice), frozen, shuffled frames."""
    held = b[:, :16]
    rng = np.random.default_rng(0)
    return {"real": a[:, :16], "held": held, "slowed": np.repeat(b[:, :8], 2, axis=1),
            "frozen": np.repeat(b[:, :1], 16, axis=1), "shuffled": np.stack([c[rng.permutation(16)] for c in held])}


@pytest.mark.parametrize("name,size", [("moving_digits", 32), ("bouncing_shapes", 64), ("photo_pans", 32)])
def test_motion_distance_ranks_corruptions(name, size, one_thread):
    v = variants(clips(name, 32, 32, size, seed=1), clips(name, 32, 32, size, seed=2))
    ref = M.MotionReference(v["real"], None)  # generic measures only: no object assumed
    d = {k: ref.report(v[k])["generic"]["motion_distance"] for k in ("held", "slowed", "frozen", "shuffled")}
    print(name, {k: round(x, 4) for k, x in d.items()})
    assert d["held"] < d["slowed"] < d["frozen"], d
    assert d["held"] < d["shuffled"], d
    assert d["held"] < 0.02 and d["frozen"] > 0.3 and d["frozen"] <= 1  # JS base 2 is bounded by 1
    static = {k: ref.report(v[k])["generic"]["static_frac"]["fake"] for k in ("frozen", "shuffled")}
    assert static == {"frozen": 1.0, "shuffled": 0.0}


def test_object_measures_real_frozen_and_model_tensors(one_thread):
    v = variants(clips("moving_digits", 48, 32, 32, seed=3), clips("moving_digits", 48, 32, 32, seed=4))
    ref = M.MotionReference(v["real"], "moving_digits", classifier=False)
    held = ref.report(v["held"])
    o = held["object"]
    for k in ("speed", "travel", "bounce_rate"):
        assert 0.85 < o[k]["ratio"] < 1.15, (k, o[k])
    assert 0.04 < o["speed"]["real"] < 0.08  # the dataset's speeds: 4-8% of the side per frame
    assert o["static_frac"]["fake"] == 0 and held["generic"]["static_frac"]["fake"] == 0
    verdict = M.check_targets(M.summary(held))
    assert verdict["speed_ratio"] and verdict["travel_ratio"] and verdict["static_frac"], verdict
    assert verdict["identity_held"] is None  # not measured without a classifier
    frozen = ref.report(v["frozen"])["object"]
    assert frozen["static_frac"]["fake"] == 1.0 and frozen["speed"]["ratio"] < 0.01 and frozen["travel"]["fake"] == 0
    assert M.check_targets(M.summary(ref.report(v["frozen"])))["static_frac"] is False
    slowed = ref.report(v["slowed"])["object"]
    assert 0.4 < slowed["speed"]["ratio"] < 0.55  # half the speed
    # Model tensors [B, C, T, H, W] in [-1, 1] give the same numbers as their uint8 frames.
    from kinema.io import from_uint8

    assert ref.report(from_uint8(v["held"]))["object"] == o
    with pytest.raises(KinemaError):
        M.as_videos(np.zeros((2, 16, 8, 8), np.uint8))


def _square_clip(frames, size, start, velocity, side=6, background=0, level=230, noise=0, seed=0):
    """A bright square moving at constant velocity (pixels/frame) on a flat background, with
    optional noise; uint8 [T, size, size, 1] and the true centre per frame [T, 2] in pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out, centres = [], []
    for t in range(frames):
        cy, cx = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        # Anti-aliased coverage of the square [c - side/2, c + side/2]^2.
        cov = (np.clip(side / 2 + 0.5 - np.abs(yy - cy), 0, 1) * np.clip(side / 2 + 0.5 - np.abs(xx - cx), 0, 1))
        img = background + (level - background) * cov + noise * rng.standard_normal((size, size))
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8)[..., None])
        centres.append((cy, cx))
    return np.stack(out), np.array(centres)


@pytest.mark.parametrize("background,noise", [(0, 0), (90, 6)])
def test_constant_velocity_square_has_known_speed(background, noise):
    v = (0.75, 1.25)  # pixels per frame
    clip, _ = _square_clip(16, 32, (6.0, 5.0), v, background=background, noise=noise)
    got = M.object_motion(clip[None], "moving_digits", classifier=False)
    want = np.hypot(*v) / 32
    assert got["speed"][0] == pytest.approx(want, rel=0.05)
    assert got["travel"][0] == pytest.approx(15 * want, rel=0.05)
    assert got["bounces"][0] == 0 and not got["static"][0]
    # The generic block-matching displacement sees the same speed.
    assert M.generic_motion(clip[None])["displacement"][0] == pytest.approx(want, rel=0.15)


def test_bounces_count_reversals_not_jitter():
    # x: right 2 px/frame for 6 frames, left for 6, right for 4 -> 2 reversals; y: still + jitter.
    x = np.concatenate([4 + 2 * np.arange(6), 14 - 2 * np.arange(1, 7), 2 + 2 * np.arange(1, 5)]).astype(float)
    jitter = 0.3 * (-1) ** np.arange(16)  # +-0.3 px (1% of 32): below the 2% dead-band
    c = np.stack([16 + jitter, x], -1)[None] / 32
    assert M.count_bounces(c)[0] == 2
    assert M.count_bounces(np.stack([c[0, :, 0], c[0, :, 0]], -1)[None])[0] == 0  # jitter alone: none
    # The same through pixels: a square drawn along that path.
    frames = np.concatenate([_square_clip(1, 32, (16 + j, xi), (0, 0))[0] for j, xi in zip(jitter, x + 6)])
    assert M.object_motion(frames[None], "moving_digits", classifier=False)["bounces"][0] == 2


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory, one_thread):
    from kinema.metrics.digits import ClassifierSettings, load_classifier

    # A deliberately short training run (the default one takes minutes; cached outside tests).
    s = ClassifierSettings(size=32, train_videos=300, test_videos=40, frames=2, steps=150)
    return load_classifier(settings=s, cache_dir=tmp_path_factory.mktemp("clf"), log=None)


def test_identity_held_drops_when_digits_morph(small_classifier):
    real, held = clips("moving_digits", 32, 16, 32, seed=5), clips("moving_digits", 32, 16, 32, seed=6)
    ref = M.MotionReference(real, "moving_digits", classifier=small_classifier)
    same = ref.report(held)["object"]
    # Two real sets agree (a weak classifier: its absolute numbers are low, the comparison holds).
    assert abs(same["identity_held"]["fake"] - same["identity_held"]["real"]) < 0.25, same
    # Morphing: frame t of clip i comes from clip (i + t) % B, a different digit every frame, each
    # frame still a clean digit (recognised stays), the clip's identity does not.
    morph = np.stack([held[(i + np.arange(16)) % 32, np.arange(16)] for i in range(32)])
    m = ref.report(morph)["object"]
    assert m["identity_held"]["fake"] < 0.2 < same["identity_held"]["fake"]
    assert m["recognised"]["fake"] > 0.7 * same["recognised"]["fake"]
    per = M.object_motion(held, "moving_digits", classifier=small_classifier)
    assert per["identity_held"].dtype == bool and per["recognised"].shape == (32,)


def test_eval_cli_reports_motion(tmp_path, capsys, one_thread):
    from kinema.cli import main
    from kinema.data.prepare import prepare
    from kinema.metrics.protocols import get_protocol
    from kinema.models import build, save_generator

    archive = prepare("builtin:photo_pans", tmp_path / "pans", resolution=32, frames=4, num_videos=16, seed=1,
                      verbose=False)
    torch.manual_seed(0)
    ms = build("dcgan", resolution=32, frames=4, channels=3, width=8)
    export = tmp_path / "export-000001k.safetensors"
    save_generator(export, ms.G.eval(), "dcgan", ms.kwargs, {"kimg": 1})
    assert get_protocol("motion16_4f").metric == "motion"
    out = tmp_path / "m.jsonl"
    assert main(["eval", "--metric", "motion16_4f", "--real", str(archive.path), "--fake", str(export),
                 "--out", str(out)]) == 0
    import json

    r = json.loads(out.read_text().splitlines()[0])
    assert r["metric"] == "motion16_4f" and r["real"]["count"] == 16 and r["fake"]["count"] == 16
    assert 0 <= r["value"] <= 1 and r["value"] == r["scores"]["motion_distance"]
    assert r["scores"]["report"]["object"] is None  # photo pans: no single object, generic measures only
    assert "motion16_4f: motion_distance" in capsys.readouterr().out


def test_training_log_has_motion_at_snapshots(tmp_path, one_thread):
    import json

    from kinema.data.prepare import prepare
    from kinema.train import get_preset, override
    from kinema.train.loop import train

    archive = prepare("builtin:moving_digits", tmp_path / "digits", resolution=32, frames=4, num_videos=24, seed=3,
                      verbose=False)
    cfg = override(get_preset("tiny"), data={"source": str(archive.path)},
                   log={"out": str(tmp_path / "run"), "motion_clips": 8})
    lines = []
    train(cfg, log=lines.append)
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    motion = [r for r in records if "motion/speed_ratio" in r]
    assert len(motion) == 1 and motion[0]["kimg"] == records[-1]["kimg"]  # one snapshot: the final one
    assert 0 <= motion[0]["motion/static_frac"] <= 1 and 0 <= motion[0]["motion/motion_distance"] <= 1
    # Off for other data, and with motion_clips 0.
    from kinema.metrics.motion import TrainingProbe
    assert TrainingProbe.for_run(str(tmp_path), 32, 1, object(), 8) is None
    assert TrainingProbe.for_run("builtin:moving_digits", 32, 1, object(), 0) is None


def test_score_generator_lengths_and_extension(one_thread):
    from kinema.models import build

    torch.manual_seed(0)
    fixed = build("videogan", resolution=32, frames=4, channels=1, width=8).G.eval()
    got = M.score_generator(fixed, "moving_digits", num=8, frames=16, classifier=False)
    assert got["frames"] == 4 and "tail_ratio" not in got["values"]  # cannot extend: its own length
    assert got["report"]["num_fake"] == got["report"]["num_real"] == 8
    walk = build("dcgan", resolution=32, frames=4, channels=1, width=8).G.eval()
    got = M.score_generator(walk, "moving_digits", num=8, frames=16, extension_frames=32, classifier=False)
    v = got["values"]
    assert got["frames"] == 16 and got["extension_frames"] == 32
    assert {"speed_ratio_64", "tail_ratio", "static_frac_64"} <= set(v) and 0 <= v["static_frac_64"] <= 1
    assert v["real_speed"] > 0.04 and v["speed"] == pytest.approx(v["speed_ratio"] * v["real_speed"])
