"""Hostile files of every kind kinema reads, run through the CLI under a small address-space limit.

Each case must end with exit status 2 and one line on stderr (``kinema: error: ...`` naming the
file and the problem). The cases run in one child process whose address space is capped with
RLIMIT_AS a little above what importing kinema and generating a few videos takes; that process
imports kinema once and forks one process per case, which runs ``kinema.cli.main(argv)`` and
exits with its status (a fresh process per case, without paying for the imports 40 times). An
allocation sized by a hostile number fails there with a traceback and another status instead of
the expected line, and positive controls (a real export, archive, cache) must still succeed under
the same limit, so the limit is not what produces the errors.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.data.archive import ArchiveWriter
from kinema.models import build, save_generator
from kinema.models.export import config_checksum

REPO = Path(__file__).resolve().parents[1]
# Address-space cap of the process running the cases. Measured VmPeak (2-core x86-64 Linux,
# torch 2.13 CPU): 0.68 GiB after importing torch and kinema, at most 0.94 GiB in any case or
# positive control; the hostile numbers ask for terabytes, so 2 GiB separates the two clearly.
AS_LIMIT = 2 << 30
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "KINEMA_WEIGHTS": "",
       "PYTHONWARNINGS": "ignore"}

RUNNER = r"""
import json, os, sys, traceback
cases = json.load(sys.stdin)
import torch
torch.set_num_threads(1)
from kinema.cli import build_parser, main
import av, safetensors.torch, torch._dynamo, torch._subclasses.fake_tensor  # what the cases import, once
import kinema.models, kinema.sample, kinema.data, kinema.train, kinema.metrics.evaluate, kinema.metrics.i3d
import kinema.metrics.weights, kinema.untrusted, kinema.train.loop
build_parser()
results = {}
for name, argv in cases.items():
    err = os.path.join(os.environ["HOSTILE_TMP"], name + ".stderr")
    pid = os.fork()
    if pid == 0:
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        peak = [l for l in open("/proc/self/status") if l.startswith("VmPeak")][0].split()[1]
        open(err + ".peak", "w").write(peak)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    results[name] = {"status": os.waitstatus_to_exitcode(status), "stderr": open(err).read(),
                     "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                     "peak_kib": int(open(err + ".peak").read()) if os.path.exists(err + ".peak") else None}
print(json.dumps(results))
"""


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_cases(cases: dict[str, list[str]], tmp: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(cases), capture_output=True, text=True,
                          env={**ENV, "HOSTILE_TMP": str(tmp)}, preexec_fn=limit_memory, timeout=600, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Good files, then one hostile variant per case.

def write_archive(folder: Path, videos: int = 6, frames: int = 20) -> Path:
    folder.mkdir(parents=True)
    w = ArchiveWriter(folder, (32, 32), 16, 1, 8.0)
    rng = np.random.default_rng(0)
    for i in range(videos):
        w.add(rng.integers(0, 256, (frames, 32, 32, 1), dtype=np.uint8), [0, 4], -1, {"path": f"v{i}.mp4"})
    report = {"videos_found": videos, "videos_used": videos, "videos_quarantined": 0, "fps_histogram": {"8": videos},
              "durations_s": {"total": videos * frames / 8, "min": frames / 8, "max": frames / 8,
                              "median": frames / 8}, "quarantined": []}
    w.finish([], report, {})
    return folder


def edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def copy_tree(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def write_npy(path: Path, header_shape, data: bytes, dtype: str = "<i8") -> None:
    """A .npy whose header claims ``header_shape`` but holds ``data``."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(header_shape)}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that occupies (almost) no disk: its size is all a reader can stat."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def recompress(src: Path, dst: Path) -> Path:
    """The same zip with every record deflated (a zip bomb's shape: small on disk, large inflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    return dst


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """Good files (archive, export, training state, statistics cache) and the CLI cases."""
    from kinema.metrics.i3d import InceptionI3d
    from kinema.train import checkpoint

    tmp = tmp_path_factory.mktemp("hostile")
    archive = write_archive(tmp / "archive")
    ms = build("dcgan", width=2, frames=16)
    export = save_generator(tmp / "export" / "export-000001k.safetensors", ms.G, "dcgan", ms.kwargs, {"fps": 8.0})
    sidecar = export.with_suffix(".json")
    config = json.loads(sidecar.read_text())

    # A real training state: a few steps of the tiny preset on the archive.
    train = ["train", str(archive), "--preset", "tiny", "--model", "dcgan", "--width", "2", "--batch", "4"]
    assert main(train + ["--kimg", "0.008", "--out", str(tmp / "run")]) == 0
    state_file = checkpoint.list_states(tmp / "run")[-1][1]
    state = checkpoint.load_state(state_file)
    resume = train + ["--kimg", "0.016", "--out", str(tmp / "run2"), "--resume"]

    # A real statistics cache from a real evaluation.
    evaluate = ["eval", "--metric", "fvd128_16f", "--num", "4", "--real", str(archive), "--fake", str(export)]
    assert main(evaluate + ["--cache-dir", str(tmp / "cache")]) == 0
    cache_file = next((tmp / "cache").glob("real-*.npz"))
    with np.load(cache_file) as z:
        stats = {k: z[k] for k in z.files}
    dim = stats["mean"].shape[0]

    cases: dict[str, tuple[list[str], str]] = {}
    n = iter(range(1000))

    # Exports -----------------------------------------------------------------------------
    def export_case(name, expect, config_change=None, weights: bytes | None = None, resign=True, raw=None):
        folder = tmp / f"export-{next(n)}"
        folder.mkdir()
        w = folder / export.name
        w.write_bytes(weights if weights is not None else export.read_bytes())
        c = json.loads(json.dumps(config))
        if weights is not None:
            import hashlib
            c["sha256"] = hashlib.sha256(weights).hexdigest()
        if config_change:
            config_change(c)
        if resign:
            c["checksum"] = config_checksum(c)
        (folder / sidecar.name).write_text(raw if raw is not None else json.dumps(c))
        cases[name] = (["generate", str(w), "--num", "2", "--out", str(folder / "out")], expect)

    def kw(**change):
        return lambda c: c["kwargs"].update(change)

    export_case("export_width_200000", "option width must be a whole number in 1..1024, got 200000", kw(width=200000))
    export_case("export_width_200000_unsigned", "edited after export", kw(width=200000), resign=False)
    export_case("export_width_in_bounds_wrong", "option width=64 does not fit the weights", kw(width=64))
    export_case("export_negative_z_dim", "option z_dim must be a whole number", kw(z_dim=-5))
    export_case("export_float_resolution", "option resolution must be one of", kw(resolution=32.0))
    export_case("export_bool_as_number", "option width must be a whole number", kw(width=True))
    export_case("export_unknown_option", "unknown option(s) depth", kw(depth=10 ** 9))
    export_case("export_num_classes_wrong", "option num_classes=5 does not fit", kw(num_classes=5))
    export_case("export_negative_fps", "'fps' must be a number", lambda c: c["meta"].update(fps=-1))
    export_case("export_no_sha256", "no sha256", lambda c: c.pop("sha256"))
    export_case("export_huge_sidecar", "more than the 1.0 MiB",
                lambda c: c["meta"].update(padding="x" * (2 << 20)))
    export_case("export_nested_sidecar", "nests more than",
                raw=json.dumps({**config, "meta": "@"}).replace('"@"', "[" * 100000 + "]" * 100000))
    export_case("export_huge_int", "not valid JSON", raw=json.dumps(config).replace('"width": 2', '"width": ' + "9" * 5000))
    good = export.read_bytes()
    (hlen,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + hlen])
    data = good[8 + hlen:]
    export_case("safetensors_huge_header_length", "safetensors header claims 1152921504606846976 bytes",
                weights=struct.pack("<Q", 1 << 60) + good[8:])
    export_case("safetensors_header_past_end", "but the file has",
                weights=struct.pack("<Q", len(good)) + good[8:])
    big = json.loads(json.dumps(header))
    big["net.fc.weight"]["shape"] = [1 << 30, 1 << 30]
    export_case("safetensors_shape_beyond_bytes", "does not match its", weights=safetensors_bytes(big, data))
    off = json.loads(json.dumps(header))
    off["net.fc.weight"]["data_offsets"] = [0, 1 << 40]
    export_case("safetensors_offsets_past_end", "is outside the", weights=safetensors_bytes(off, data))
    neg = json.loads(json.dumps(header))
    neg["net.fc.weight"]["shape"] = [-1, 64]
    export_case("safetensors_negative_dim", "is not a list of sizes >= 0", weights=safetensors_bytes(neg, data))
    dt = json.loads(json.dumps(header))
    dt["net.fc.weight"]["dtype"] = "F16"
    b, e = dt["net.fc.weight"]["data_offsets"]
    dt["net.fc.weight"]["data_offsets"] = [b, b + (e - b) // 2]
    export_case("safetensors_other_dtype", "F16", weights=safetensors_bytes(dt, data))
    nested = b'{"x": ' + b"[" * 50 + b"]" * 50 + b"}"
    export_case("safetensors_nested_header", "nests more than", weights=struct.pack("<Q", len(nested)) + nested)

    # Archives (kinema info reads the index, the tables and checks frames.u8) --------------------
    def archive_case(name, expect, change):
        folder = copy_tree(archive, tmp / f"archive-{next(n)}")
        change(folder)
        cases[name] = (["info", str(folder)], expect)

    def index(**change):
        return lambda f: edit_json(f / "index.json", lambda i: i.update(change))

    archive_case("archive_more_frames_than_data", "bytes, expected", index(num_frames=10 ** 12))
    archive_case("archive_negative_frames", "'num_frames' must be a whole number", index(num_frames=-5))
    archive_case("archive_huge_resolution", "'resolution' must be", index(resolution=[100000, 100000], num_frames=0))
    archive_case("archive_more_clips_than_table", "clip table has shape", index(num_clips=10 ** 12))
    archive_case("archive_frames_per_clip_huge", "'frames_per_clip' must be", index(frames_per_clip=2 ** 40))
    archive_case("archive_fps_nan", "'fps' must be", lambda f: (f / "index.json").write_text(
        (f / "index.json").read_text().replace('"fps": 8.0', '"fps": NaN')))
    archive_case("archive_npy_header_huge", ".npy header claims shape [1000000000000, 2]",
                 lambda f: write_npy(f / "clips.npy", (10 ** 12, 2), np.zeros((12, 2), np.int64).tobytes()))
    archive_case("archive_npy_object_dtype", "C-order numeric array",
                 lambda f: write_npy(f / "clips.npy", (12, 2), bytes(192), dtype="|O"))
    archive_case("archive_clip_outside_video", "does not lie inside its video's frames",
                 lambda f: np.save(f / "clips.npy", np.array([[0, 0]] * 11 + [[5, 10 ** 9]], np.int64)))
    archive_case("archive_clip_of_missing_video", "does not lie inside",
                 lambda f: np.save(f / "clips.npy", np.array([[0, 0]] * 11 + [[10 ** 6, 0]], np.int64)))
    archive_case("archive_label_out_of_range", "labels must be -1 or a class index",
                 lambda f: np.save(f / "labels.npy", np.full(12, 7, np.int64)))
    archive_case("archive_video_beyond_frames", "video 0 must have offset and num_frames",
                 lambda f: edit_json(f / "index.json", lambda i: i["videos"][0].update(offset=10 ** 15)))
    archive_case("archive_huge_index", "more than the 256.0 MiB", lambda f: sparse(f / "index.json", 10 << 30))
    archive_case("archive_nested_index", "nests more than",
                 lambda f: (f / "index.json").write_text("[" * 200000 + "]" * 200000))
    archive_case("archive_index_not_object", "not a kinema archive", lambda f: (f / "index.json").write_text("[]"))
    archive_case("archive_report_fields_missing", "not a kinema archive report",
                 lambda f: (f / "report.json").write_text("{}"))
    archive_case("archive_huge_report", "more than the 256.0 MiB", lambda f: sparse(f / "report.json", 10 << 30))

    # Training states (kinema train --resume) -------------------------------------------------
    def state_case(name, expect, payload=None, make=None):
        folder = tmp / f"state-{next(n)}"
        folder.mkdir()
        if make is not None:
            path = make(folder)
        else:  # a digest recomputed by whoever edited it: the digest is no signature
            path = checkpoint.save_state(folder, 8, payload, keep=1)
        cases[name] = (resume + [str(path)], expect)

    def changed(**parts):
        return {**state, **parts}

    other = {**state["model"], "kwargs": {**state["model"]["kwargs"], "width": 3}}
    state_case("state_other_model", "was trained as dcgan", changed(model=other))
    g = dict(state["G"])
    g["net.fc.weight"] = torch.zeros(7, 7)
    state_case("state_weight_shape", "weights of G do not fit this run: tensor net.fc.weight", changed(G=g))
    opt = {k: dict(v) for k, v in state["opt"].items()}
    opt["G"] = {**opt["G"], "state": {**opt["G"]["state"], 0: {**opt["G"]["state"][0], "exp_avg": torch.zeros(3)}}}
    state_case("state_optimizer_moment_shape", "optimizer G exp_avg of parameter 0 is [3]", changed(opt=opt))
    state_case("state_optimizer_unknown_param", "refers to parameter 999",
               changed(opt={**state["opt"], "G": {**state["opt"]["G"], "state": {999: {}}}}))
    state_case("state_negative_counters", "counters must be whole numbers >= 0",
               changed(counters={**state["counters"], "nimg": -5}))
    state_case("state_oversized", "kinema accepts", make=lambda f: sparse(f / "state.pt", 10 << 30))
    state_case("state_compressed_records", "is compressed", make=lambda f: recompress(state_file, f / "state.pt"))

    def malformed_array(folder):
        payload = checkpoint._encode(state)
        arr = payload["ranks"][0]["rng"]["numpy"][1]  # numpy's MT state: {"__ndarray__": bytes, ...}
        arr["shape"] = [10 ** 12]
        blob = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "nimg": 8,
                "digest": checkpoint._digest(payload), "payload": payload}
        torch.save(blob, folder / "state.pt")
        return folder / "state.pt"

    state_case("state_array_shape_beyond_bytes", "malformed array", make=malformed_array)

    # Real-statistics caches (kinema eval --cache-dir) -------------------------------------
    def cache_case(name, expect, arrays=None, make=None):
        folder = tmp / f"cache-{next(n)}"
        folder.mkdir()
        if make is not None:
            make(folder / cache_file.name)
        else:
            with open(folder / cache_file.name, "wb") as f:
                np.savez(f, **arrays)
        cases[name] = (evaluate + ["--cache-dir", str(folder)], expect)

    cache_case("cache_cov_wrong_dim", f"array cov has shape [{dim + 1}, {dim + 1}], expected [{dim}, {dim}]",
               {**stats, "cov": np.zeros((dim + 1, dim + 1))})
    cache_case("cache_mean_missing", "array mean has shape", {k: v for k, v in stats.items() if k != "mean"})
    cache_case("cache_too_many_rows", "features has shape",
               {**stats, "features": np.zeros((5, dim))})

    def npz_with_lying_header(path):
        with zipfile.ZipFile(path, "w") as z:
            for k, v in stats.items():
                z.writestr(f"{k}.npy", _npy_bytes(v))
            z.writestr("features.npy", _npy_bytes(np.zeros((2, dim)), shape=(10 ** 9, dim)))

    cache_case("cache_npy_header_huge", ".npy header claims shape [1000000000", make=npz_with_lying_header)
    cache_case("cache_compressed", "is compressed", make=lambda p: np.savez_compressed(p, **stats))
    cache_case("cache_oversized", "kinema accepts", make=lambda p: sparse(p, 10 << 30))

    # Extractor weights (kinema eval --extractor i3d --weights FILE) ---------------------------
    i3d = InceptionI3d()
    good_i3d = {k: v for k, v in i3d.state_dict().items()}

    def weights_case(name, expect, make):
        path = tmp / f"weights-{next(n)}.pt"
        make(path)
        cases[name] = (["eval", "--metric", "fvd128_16f", "--extractor", "i3d", "--weights", str(path), "--num", "4",
                        "--real", str(archive), "--fake", str(export), "--cache-dir", str(tmp / "nocache")], expect)

    wrong = dict(good_i3d)
    wrong["logits.conv3d.weight"] = torch.zeros(4, 1024, 1, 1, 1)
    weights_case("i3d_wrong_shape", "not the published InceptionI3d state dict layout", lambda p: torch.save(wrong, p))
    weights_case("i3d_oversized", "kinema accepts", lambda p: sparse(p, 10 << 30))
    weights_case("i3d_foreign_keys", "the file lacks tensor", lambda p: torch.save({"w": torch.zeros(3)}, p))

    def compressed_i3d(p):
        torch.save({"w": torch.zeros(1000)}, p.with_suffix(".plain"))
        recompress(p.with_suffix(".plain"), p)

    weights_case("i3d_compressed", "is compressed", compressed_i3d)
    weights_case("i3d_legacy_format_wrong_shape", "not the published InceptionI3d",
                 lambda p: torch.save({"w": torch.zeros(3)}, p, _use_new_zipfile_serialization=False))

    # Training configs (kinema train --config) --------------------------------------------------
    cfg_nested = tmp / "nested.json"
    cfg_nested.write_text("{\"a\": " + "[" * 100000 + "]" * 100000 + "}")
    cases["config_nested"] = (["train", "--config", str(cfg_nested), "--dry-run"], "nests more than")
    cfg_huge = sparse(tmp / "huge.json", 10 << 30)
    cases["config_huge"] = (["train", "--config", str(cfg_huge), "--dry-run"], "kinema accepts")
    cfg_type = tmp / "type.json"
    cfg_type.write_text(json.dumps({"schedule": {"batch": "x" * 100}}))
    cases["config_wrong_type"] = (["train", "--config", str(cfg_type), "--dry-run"], "batch must be a whole number")
    cfg_out = tmp / "out.json"
    cfg_out.write_text(json.dumps({"log": {"out": "../../elsewhere"}}))
    cases["config_out_outside"] = (["train", "--config", str(cfg_out), "--dry-run"], "points outside the current folder")

    controls = {
        "control_generate": ["generate", str(export), "--num", "2", "--out", str(tmp / "control-out")],
        "control_info": ["info", str(archive)],
        "control_eval_cached": evaluate + ["--cache-dir", str(tmp / "cache")],
    }
    results = run_cases({**{k: v[0] for k, v in cases.items()}, **controls}, tmp)
    return {"cases": cases, "results": results, "controls": controls, "tmp": tmp, "export": export}


def _npy_bytes(arr: np.ndarray, shape=None) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    raw = buf.getvalue()
    if shape is None:
        return raw
    (hl,) = struct.unpack("<H", raw[8:10])
    header = raw[10:10 + hl].decode().replace(str(arr.shape), str(tuple(shape)))
    header = header.rstrip("\n").rstrip() + " " * (63 - (len(header.rstrip("\n").rstrip()) + 10) % 64) + "\n"
    return raw[:8] + struct.pack("<H", len(header)) + header.encode() + raw[10 + hl:]


CASES = [
    "export_width_200000", "export_width_200000_unsigned", "export_width_in_bounds_wrong", "export_negative_z_dim",
    "export_float_resolution", "export_bool_as_number", "export_unknown_option", "export_num_classes_wrong",
    "export_negative_fps", "export_no_sha256", "export_huge_sidecar", "export_nested_sidecar", "export_huge_int",
    "safetensors_huge_header_length", "safetensors_header_past_end", "safetensors_shape_beyond_bytes",
    "safetensors_offsets_past_end", "safetensors_negative_dim", "safetensors_other_dtype", "safetensors_nested_header",
    "archive_more_frames_than_data", "archive_negative_frames", "archive_huge_resolution",
    "archive_more_clips_than_table", "archive_frames_per_clip_huge", "archive_fps_nan", "archive_npy_header_huge",
    "archive_npy_object_dtype", "archive_clip_outside_video", "archive_clip_of_missing_video",
    "archive_label_out_of_range", "archive_video_beyond_frames", "archive_huge_index", "archive_nested_index",
    "archive_index_not_object", "archive_report_fields_missing", "archive_huge_report",
    "state_other_model", "state_weight_shape", "state_optimizer_moment_shape", "state_optimizer_unknown_param",
    "state_negative_counters", "state_oversized", "state_compressed_records", "state_array_shape_beyond_bytes",
    "cache_cov_wrong_dim", "cache_mean_missing", "cache_too_many_rows", "cache_npy_header_huge", "cache_compressed",
    "cache_oversized",
    "i3d_wrong_shape", "i3d_oversized", "i3d_foreign_keys", "i3d_compressed", "i3d_legacy_format_wrong_shape",
    "config_nested", "config_huge", "config_wrong_type", "config_out_outside",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_file_is_one_line_and_status_2(world, case):
    argv, expect = world["cases"][case]
    result = world["results"][case]
    lines = [ln for ln in result["stderr"].splitlines() if ln.strip()]
    assert result["status"] == 2 and len(lines) == 1, (case, result["status"], result["stderr"][-2000:])
    assert lines[0].startswith("kinema: error: ") and expect in lines[0], (case, lines[0])


def test_every_case_is_listed(world):
    assert sorted(world["cases"]) == sorted(CASES)


def test_positive_controls_fit_the_limit(world):
    """The good files work under the same limit, so the limit does not make the errors above."""
    for name in world["controls"]:
        result = world["results"][name]
        assert result["status"] == 0, (name, result["stderr"][-2000:])
        assert result["peak_kib"] * 1024 < AS_LIMIT
    assert len(list((world["tmp"] / "control-out").iterdir())) == 2


def test_issue_scenario_as_a_real_command(world, tmp_path):
    """The reported case end to end: ``python -m kinema generate`` on an export whose sidecar says
    width 200000 (checksum recomputed), in its own process under the limit."""
    export = world["export"]
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / export.name).write_bytes(export.read_bytes())
    config = json.loads(export.with_suffix(".json").read_text())
    config["kwargs"]["width"] = 200000
    config["checksum"] = config_checksum(config)
    (folder / export.with_suffix(".json").name).write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, "-m", "kinema", "generate", str(folder / export.name), "--num", "1",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=ENV,
                          preexec_fn=limit_memory, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "export-000001k.json" in lines[0] and "option width" in lines[0]
    assert not (tmp_path / "out").exists()


def test_every_model_declares_bounds_for_every_option():
    import inspect

    from kinema.models import MODELS, model_options

    for name, factory in MODELS.items():
        schema = model_options(name)
        assert set(inspect.signature(factory).parameters) <= set(schema), name
