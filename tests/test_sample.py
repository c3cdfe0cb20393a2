"""kinema.sample: seeded generation, extension, interpolation, looping, streaming, the API and CLI.

Tiny random-weight models exported with ``save_generator``: the tests check procedure
(determinism, shapes, continuity, memory), which random weights exercise as well as trained ones.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.errors import KinemaError
from kinema.io import read_video, to_uint8
from kinema.models import build
from kinema.models.export import save_generator
from kinema.sample import load, parse_seeds, save_video
from kinema.sample.generate import generate
from kinema.sample.interpolate import interpolate, interpolation_path, slerp, walk_loop
from kinema.sample.stream import frame_chunks

TINY = dict(resolution=32, frames=8, channels=3, width=8)


def _contrasty(ms):
    """Freshly initialised generators output near-flat grey and ignore the class (identity
    norms); noise on every weight gives videos whose seeds and classes visibly differ."""
    with torch.no_grad():
        for p in ms.G.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ms


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> export path for tiny dcgan, mocogan (can extend) and videogan (cannot)."""
    root = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    paths = {}
    for name in ("dcgan", "mocogan", "videogan"):
        ms = _contrasty(build(name, **TINY))
        paths[name] = save_generator(root / f"{name}.safetensors", ms.G, name, ms.kwargs, {"fps": 8})
    ms = _contrasty(build("mocogan", num_classes=3, **TINY))
    paths["mocogan-cond"] = save_generator(root / "cond.safetensors", ms.G, "mocogan", ms.kwargs,
                                           {"fps": 8, "class_names": ["a", "b", "c"]})
    return paths


def test_parse_seeds():
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    assert parse_seeds(5) == [5] and parse_seeds(range(2)) == [0, 1]
    for bad in ["", "3-1", "a", "1,,2", "-4"]:
        with pytest.raises(KinemaError):
            parse_seeds(bad)


# ---------------------------------------------------------------------------------------------
# Generation.

@pytest.mark.parametrize("name", ["dcgan", "mocogan", "videogan"])
def test_same_seed_same_bytes_and_batch_invariance(exports, name):
    model = load(exports[name])
    a = model.generate(seeds="0-4", batch=5)
    b = model.generate(seeds="0-4", batch=5)
    assert a.dtype == np.uint8 and a.shape == (5, 8, 32, 32, 3)
    assert a.tobytes() == b.tobytes()                                   # same seed -> same bytes
    assert all((a[i] != a[j]).any() for i in range(5) for j in range(i))  # different seeds differ
    # Batch size changes no latent; only the summation order inside BLAS/conv kernels, which
    # can flip a rounding in a handful of values (measured: <= 4e-5 of them, by one grey level).
    for batch in (2, 1):
        c = model.generate(seeds="0-4", batch=batch).astype(int)
        diff = np.abs(a.astype(int) - c)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_longer_than_trained_and_clear_refusal(exports):
    for name in ("dcgan", "mocogan"):
        long = load(exports[name]).generate(seeds=[1, 2], frames=20)
        assert long.shape == (2, 20, 32, 32, 3)
        assert (long[:, 19] != long[:, 0]).any()                       # it keeps moving past frame 8
    vg = load(exports["videogan"])
    with pytest.raises(KinemaError, match="videogan.*8 frames.*cannot"):
        vg.generate(seeds=0, frames=12)
    assert vg.generate(seeds=0, frames=5).shape[1] == 5                # shorter is a cut


def test_class_labels_and_truncation(exports):
    model = load(exports["mocogan-cond"])
    a = model.generate(seeds=0, class_="b")
    assert (a == model.generate(seeds=0, class_=1)).all()
    assert not (a == model.generate(seeds=0, class_=2)).all()
    with pytest.raises(KinemaError, match="no class named"):
        model.generate(seeds=0, class_="z")
    with pytest.raises(KinemaError, match="out of range"):
        model.generate(seeds=0, class_=3)
    with pytest.raises(KinemaError, match="unconditional"):
        load(exports["dcgan"]).generate(seeds=0, class_=0)
    t0 = load(exports["dcgan"]).generate(seeds=[0, 1], truncation=0.0, output="tensor")
    assert torch.equal(t0[0], t0[1])                                    # psi = 0: every seed is the mean


# ---------------------------------------------------------------------------------------------
# Interpolation and looping.

def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 64, generator=g), torch.randn(2, 64, generator=g)
    assert torch.equal(slerp(a, b, 0), a) and torch.equal(slerp(a, b, 1), b)
    mid = slerp(a, b, 0.5)
    assert (mid.norm(dim=1) > 0.9 * torch.minimum(a.norm(dim=1), b.norm(dim=1))).all()


def test_slerp_rows_samples_and_fractions():
    from kinema.models.latents import slerp as slerp_any

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    # Whole samples ([2, 24] vectors) vs rows ([2, 3] vectors of 8): both against a direct formula.
    for start_dim, fa, fb in ((1, a.reshape(2, 24), b.reshape(2, 24)), (-1, a.reshape(6, 8), b.reshape(6, 8))):
        fa64, fb64 = fa.double(), fb.double()
        theta = torch.acos((fa64 * fb64).sum(1, keepdim=True) / (fa64.norm(dim=1, keepdim=True) * fb64.norm(dim=1, keepdim=True)))
        want = (torch.sin(0.7 * theta) * fa64 + torch.sin(0.3 * theta) * fb64) / torch.sin(theta)
        got = slerp_any(a, b, 0.3, start_dim=start_dim)
        assert got.shape == a.shape and torch.allclose(got.reshape(want.shape).double(), want, atol=1e-6)
    # The sampling API's slerp mixes whole samples (each seed's latents as one vector).
    assert torch.equal(slerp(a, b, 0.3), slerp_any(a, b, 0.3, start_dim=1))
    # One fraction per row; exact endpoints inside a tensor of fractions.
    t = torch.tensor([[0.0, 0.5, 1.0], [0.25, 1.0, 0.0]])
    rows = slerp_any(a, b, t, start_dim=-1)
    for i in range(2):
        for j in range(3):
            assert torch.equal(rows[i, j], slerp_any(a[i, j:j + 1], b[i, j:j + 1], float(t[i, j]))[0])
    assert torch.equal(rows[0, 0], a[0, 0]) and torch.equal(rows[0, 2], b[0, 2])
    # Antiparallel vectors: the great circle is undefined, the straight line is used.
    assert torch.allclose(slerp_any(a[:1, 0], -a[:1, 0], 0.25), 0.5 * a[:1, 0])


@pytest.mark.parametrize("name", ["mocogan", "videogan"])
def test_interpolation_endpoints_equal_seed_videos(exports, name):
    model = load(exports[name])
    # batch=1 on both sides: the same latents through the same kernels give the same bytes
    # (other batch sizes agree to one grey level, see the batch-invariance test).
    clips = model.interpolate(seeds=[3, 9], steps=4, batch=1)
    assert clips.shape == (5, 8, 32, 32, 3)
    ends = model.generate(seeds=[3, 9], batch=1)
    assert clips[0].tobytes() == ends[0].tobytes() and clips[-1].tobytes() == ends[1].tobytes()
    # The path moves gradually: neighbouring clips are closer than the two ends.
    d = lambda x, y: np.abs(x.astype(int) - y.astype(int)).mean()
    assert max(d(clips[i], clips[i + 1]) for i in range(4)) < d(clips[0], clips[-1])
    with pytest.raises(KinemaError, match="cannot interpolate"):
        model.interpolate(seeds=[0, 1], space="nonexistent")


def test_content_only_interpolation_keeps_motion_latents(exports):
    G = load(exports["mocogan"]).G
    clips = interpolate(G, [3, 9], steps=2, space="content", batch=1)
    # Content moves, motion noise stays seed 3's: so the end clip is not seed 9's video.
    assert clips.shape[0] == 3
    assert (to_uint8(clips[-1]) != to_uint8(generate(G, [9])[0])).any()
    assert (to_uint8(clips[0]) == to_uint8(generate(G, [3])[0])).all()


def test_looping_returns_to_the_start(exports):
    model = load(exports["mocogan"])
    path = interpolation_path(3, 4, loop=True)
    assert len(path) == 12 and path[-1][:2] == (2, 0)                   # last segment heads back to seed 0
    clips = model.interpolate(seeds=[1, 2, 3], steps=4, loop=True, batch=1)
    assert clips.shape[0] == 12
    seeds_videos = model.generate(seeds=[1, 2, 3], batch=1)
    for k in range(3):
        assert clips[4 * k].tobytes() == seeds_videos[k].tobytes()
    # The clip after the last is the first: the last step is as close to clip 0 as any step.
    d = lambda x, y: np.abs(x.astype(int) - y.astype(int)).mean()
    steps = [d(clips[i], clips[i + 1]) for i in range(11)]
    assert d(clips[-1], clips[0]) <= 1.5 * max(steps)
    assert d(clips[-1], clips[0]) < d(clips[4], clips[0])


def test_walk_loop_frame_after_last_is_first(exports):
    model = load(exports["dcgan"])
    video = to_uint8(walk_loop(model.G, [4, 5, 6], 30, closed=False))      # 31 frames: the 31st is the repeat
    assert video.shape == (31, 32, 32, 3)
    assert np.abs(video[30].astype(int) - video[0].astype(int)).max() <= 1   # the seam closes (batch rounding)
    step = np.abs(np.diff(video.astype(int), axis=0)).mean(axis=(1, 2, 3))
    assert step[-1] <= 2 * np.median(step)                                 # last -> first is an ordinary step
    first = model.generate(seeds=[4, 5, 6], batch=1)[:, 0].astype(int)     # it passes through each seed's frame 0
    assert np.abs(video[[0, 10, 20]].astype(int) - first).max() <= 1
    assert model.walk_loop([4, 5], 12).shape == (12, 32, 32, 3)
    with pytest.raises(KinemaError, match="per-frame latent"):
        load(exports["videogan"]).walk_loop([0, 1], 12)


# ---------------------------------------------------------------------------------------------
# Streaming.

def test_recurrent_stream_equals_one_unroll(exports):
    G = load(exports["mocogan"]).G
    chunks = list(frame_chunks(G, 30, seed=5, chunk=8))
    assert [len(c) for c in chunks] == [8, 8, 8, 6]
    # The same noise drawn the way the stream draws it, unrolled in one call.
    gen = torch.Generator().manual_seed(5)
    first = G.make_latents(1, 8, generator=gen)
    motion = [first["motion"]] + [G.make_latents(1, 8, generator=gen)["motion"] for _ in range(3)]
    with torch.no_grad():
        whole = to_uint8(G({"content": first["content"], "motion": torch.cat(motion, 1)}))[0, :30]
    diff = np.abs(np.concatenate(chunks).astype(int) - whole.astype(int))
    assert diff.max() <= 1                                              # float order only


def test_walk_stream_is_continuous(exports):
    model = load(exports["dcgan"])
    frames = np.concatenate(list(frame_chunks(model.G, 50, seed=0, chunk=7)))
    assert frames.shape == (50, 32, 32, 3)
    step = np.abs(np.diff(frames.astype(int), axis=0)).mean(axis=(1, 2, 3))  # [49] frame-to-frame change
    videos = model.generate(seeds=[0, 1]).astype(int)
    between_seeds = np.abs(videos[0] - videos[1]).mean()
    assert step.max() < between_seeds / 3                               # no cut at chunk boundaries


def test_clip_stream_crossfades_drifting_clips(exports):
    """Fixed-length model: the stream is the documented assembly of drifting, cross-faded clips."""
    G = load(exports["videogan"]).G
    T, o, drift = 8, 2, 4
    frames = np.concatenate(list(frame_chunks(G, 50, seed=7, chunk=10, overlap=o, drift=drift)))
    assert frames.shape == (50, 32, 32, 3)
    gen = torch.Generator().manual_seed(7)
    keys = [G.make_latents(1, generator=gen), G.make_latents(1, generator=gen)]
    clips = []
    for c in range(9):
        if c % drift == 0 and c > 0:
            keys = [keys[1], G.make_latents(1, generator=gen)]
        with torch.no_grad():
            clips.append(G({"z": slerp(keys[0]["z"], keys[1]["z"], (c % drift) / drift)})[0])  # [C, T, H, W]
    w = torch.tensor([1 / 3, 2 / 3]).view(1, o, 1, 1)
    parts = [clips[0][:, :T - o]]
    for prev, nxt in zip(clips, clips[1:]):
        parts += [prev[:, T - o:] * (1 - w) + nxt[:, :o] * w, nxt[:, o:T - o]]
    expected = to_uint8(torch.cat(parts, 1))[:50]
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(KinemaError, match="overlap"):
        next(frame_chunks(G, 10, overlap=8))


def test_stream_to_file_stdout_and_raw(exports, tmp_path):
    model = load(exports["dcgan"])
    stats = model.stream(tmp_path / "s.mp4", 40, seed=1, chunk=16)
    assert stats["frames"] == 40 and stats["generated_fps"] > 0 and stats["strategy"] == "walk"
    assert len(read_video(tmp_path / "s.mp4").frames) == 40
    with pytest.raises(KinemaError, match="already exists"):
        model.stream(tmp_path / "s.mp4", 10)
    buf = io.BytesIO()
    model.stream(buf, 24, fmt="raw")
    assert len(buf.getvalue()) == 24 * 32 * 32 * 3
    raw = np.frombuffer(buf.getvalue(), np.uint8).reshape(24, 32, 32, 3)
    assert (raw[:16] == np.concatenate(list(frame_chunks(model.G, 16, seed=0, chunk=16)))).all()
    # CLI to stdout: an MPEG-TS byte stream a player can decode.
    res = subprocess.run([sys.executable, "-m", "kinema", "stream", str(exports["dcgan"]), "--frames", "30",
                          "--out", "-"], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert b"generated" in res.stderr and res.stdout[:1] == b"\x47"      # TS sync byte
    ts = tmp_path / "s.ts"
    ts.write_bytes(res.stdout)
    assert len(read_video(ts).frames) == 30


def test_realtime_pacing_and_class_stream(exports):
    model = load(exports["mocogan-cond"])
    buf = io.BytesIO()
    stats = model.stream(buf, 12, fps=30, chunk=4, fmt="raw", realtime=True, class_="c")
    assert stats["seconds"] >= 11 / 30 and stats["realtime_factor"] <= 1.05   # never ahead of the clock
    with pytest.raises(KinemaError, match="drift"):
        model.stream(io.BytesIO(), 12, drift=0, fmt="raw")


_RSS_SCRIPT = """
import sys, torch
torch.set_num_threads(1)  # one thread: transient per-thread buffers would add noise to the peak
from kinema.sample import load
model = load(sys.argv[1])
stats = model.stream(sys.argv[2], int(sys.argv[3]), chunk=8, crf=30, preset="ultrafast")
for line in open('/proc/self/status'):
    if line.startswith('VmHWM'):
        print(int(line.split()[1]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_stream_memory_does_not_grow_with_length(tmp_path):
    # 128x128 frames: 49 KB each, so keeping 1,000 of them would add ~50 MB to the peak.
    # (bench/bench_generate.py --memory measures 1,000 vs 10,000 frames the same way.)
    torch.manual_seed(0)
    ms = build("dcgan", resolution=128, frames=8, channels=3, width=4, z_dim=16)
    export = save_generator(tmp_path / "big.safetensors", ms.G, "dcgan", ms.kwargs, {"fps": 25})
    peaks = []
    for n in (100, 1000):
        res = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(export), str(tmp_path / f"s{n}.mp4"), str(n)],
                             capture_output=True, text=True, timeout=170)
        assert res.returncode == 0, res.stderr
        peaks.append(int(res.stdout.split()[-1]) / 1024)                # MiB
    assert len(read_video(tmp_path / "s1000.mp4", start=990).frames) == 10
    assert peaks[1] - peaks[0] < 15, peaks                              # flat, not +50 MB


# ---------------------------------------------------------------------------------------------
# API and CLI.

def test_save_video_roundtrip(exports, tmp_path):
    model = load(exports["mocogan"])
    v = model.generate(seeds=[0, 1])
    save_video(v[0], tmp_path / "a.mkv", fps=model.fps, codec="lossless")
    back = read_video(tmp_path / "a.mkv")
    assert (back.frames == v[0]).all() and back.fps == pytest.approx(8)
    save_video(model.generate(seeds=[0, 1], output="tensor"), tmp_path / "grid.mp4", fps=8)  # batch -> grid
    assert read_video(tmp_path / "grid.mp4").frames.shape[0] == 8
    with pytest.raises(KinemaError, match="already exists"):
        save_video(v[0], tmp_path / "a.mkv", force=False)


def test_cli_generate_outputs(exports, tmp_path, capsys):
    exp = str(exports["mocogan"])
    assert main(["generate", exp, "--seeds", "0-2", "--out", str(tmp_path / "vids"), "--codec", "lossless",
                 "--jobs", "2"]) == 0
    files = sorted(os.listdir(tmp_path / "vids"))
    assert files == ["seed0000.mkv", "seed0001.mkv", "seed0002.mkv"]
    ref = load(exp).generate(seeds="0-2")[2]                          # same batch as the CLI
    assert (read_video(tmp_path / "vids" / "seed0002.mkv").frames == ref).all()
    assert main(["generate", exp, "--num", "4", "--grid", "--out", str(tmp_path / "g.mp4"), "--frames", "12"]) == 0
    assert read_video(tmp_path / "g.mp4").frames.shape[0] == 12
    assert main(["generate", exp, "--num", "2", "--png-grid", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["generate", exp, "--seeds", "5", "--frames-dir", "--out", str(tmp_path / "fr")]) == 0
    assert len(os.listdir(tmp_path / "fr" / "seed0005")) == 8
    assert main(["generate", exp, "--seeds", "0,1", "--interpolate", "3", "--loop", "--out",
                 str(tmp_path / "loop.mp4")]) == 0
    assert read_video(tmp_path / "loop.mp4").frames.shape[0] == 6 * 8
    assert main(["generate", str(exports["dcgan"]), "--seeds", "0-2", "--walk-loop", "24", "--out",
                 str(tmp_path / "walk.mp4")]) == 0
    assert read_video(tmp_path / "walk.mp4").frames.shape[0] == 24
    # Refusals: existing output, unknown codec, impossible length, bad export.
    capsys.readouterr()
    for argv, msg in [(["--seeds", "0", "--out", str(tmp_path / "vids")], "already exists"),
                      (["--seeds", "0", "--out", str(tmp_path / "x"), "--codec", "mpeg9"], "unknown codec"),
                      (["--seeds", "0", "--out", str(tmp_path / "y"), "--fps", "0"], "fps"),
                      (["--seeds", "9-1", "--out", str(tmp_path / "z")], "seeds")]:
        assert main(["generate", exp, *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["generate", str(exports["videogan"]), "--frames", "16", "--out", str(tmp_path / "v")]) == 2
    assert "cannot extend" in capsys.readouterr().err and not (tmp_path / "v").exists()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "nope"}))
    assert main(["generate", str(bad), "--out", str(tmp_path / "w")]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_a_run_folder_means_its_newest_export(tmp_path):
    """kinema.load, kinema generate and kinema eval accept a training run folder."""
    from kinema.metrics.sources import ExportSource, open_source
    from kinema.models import build
    from kinema.models.export import find_export, save_generator
    from kinema.sample import load

    ms = build("videogan", resolution=32, frames=4, channels=1, width=8)
    for kimg in (1, 12):  # zero-padded tags: name order is training order
        save_generator(tmp_path / f"export-{kimg:06d}k.safetensors", ms.G, "videogan", ms.kwargs, {"kimg": kimg})
    newest = tmp_path / "export-000012k.safetensors"
    assert find_export(tmp_path) == newest
    assert load(tmp_path).path == str(newest)
    src = open_source(tmp_path, "fake")
    assert isinstance(src, ExportSource) and src.path == str(newest)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KinemaError, match="no export"):
        find_export(empty)


def test_generators_declare_how_they_stream():
    from kinema.models import MODELS, build
    from kinema.sample.stream import pick_strategy

    expected = {"dcgan": "walk", "mocogan": "recurrent", "videogan": "clips", "videovae": "clips",
                "ctgan": "continuous", "flow": "continue"}
    for name in MODELS:
        G = build(name, resolution=32, frames=4, channels=1, width=8).G   # flow: 4 heads of an even size
        assert pick_strategy(G) == G.streaming == expected.get(name, G.streaming)
    assert pick_strategy(torch.nn.Identity()) == "clips"   # declares nothing: fixed-length clips

    class Teleporting(torch.nn.Identity):
        streaming = "teleport"
    with pytest.raises(KinemaError, match="unknown streaming strategy 'teleport'"):
        pick_strategy(Teleporting())
