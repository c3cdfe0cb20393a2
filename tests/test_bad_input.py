"""Bad input ends in one line and exit status 2, never a traceback, a hang or lost data."""

from __future__ import annotations

import pytest
import torch

from kinema.cli import main


def _export(path, source):
    from kinema.models import build, save_generator

    torch.manual_seed(0)
    ms = build("dcgan", resolution=32, frames=4, channels=1, width=8)
    save_generator(path, ms.G.eval(), "dcgan", ms.kwargs, {"kimg": 1, "source": source})
    return path


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("metric,source", [("shapes256", "builtin:moving_digits"),
                                           ("digits256", "builtin:bouncing_shapes")])
def test_classifier_score_refuses_a_model_of_another_dataset(tmp_path, capsys, metric, source):
    exp = _export(tmp_path / "export-000001k.safetensors", source)
    assert main(["eval", "--metric", metric, "--fake", str(exp), "--cache-dir", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert metric in line and source in line


def _lines(capsys):
    err = capsys.readouterr().err
    return [ln for ln in err.splitlines() if ln.strip()], err


# --- prepare: names that are not UTF-8, sizes, dead workers ---------------------------------------

def test_prepare_keeps_non_utf8_file_names_losslessly(tmp_path, video_factory, capsys):
    import json
    import os

    src = video_factory("src/plain.mp4", frames=8, size=(24, 32)).parent
    odd = os.fsencode(src) + b"/caf\xe9 \xff.mp4"  # Latin-1 bytes: not UTF-8
    os.rename(video_factory("other.mp4", frames=8, size=(24, 32)), odd)
    out = tmp_path / "arch"
    assert main(["prepare", str(src), str(out), "--resolution", "16", "--frames", "4", "--workers", "1"]) == 0
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    names = {os.fsencode(v["path"]) for v in index["videos"]}
    assert names == {b"plain.mp4", b"caf\xe9 \xff.mp4"}
    assert main(["info", str(out)]) == 0


def test_prepare_bounds_the_resolution_up_front(tmp_path, capsys):
    from kinema.data.prepare import prepare
    from kinema.errors import KinemaError

    assert main(["prepare", "builtin:moving_digits", str(tmp_path / "a"), "--resolution", "9000"]) == 2
    line = _one_error_line(capsys)
    assert "--resolution" in line and "9000" in line
    with pytest.raises(KinemaError, match="resolution"):
        prepare("builtin:moving_digits", tmp_path / "b", resolution=9000)
    assert not any(tmp_path.iterdir())


def test_a_dead_worker_ends_the_run_with_an_error(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from kinema.data.prepare import _ordered_map\n"
        "from kinema.errors import KinemaError\n"
        "def task(i):\n"
        "    if i == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would\n"
        "    return i\n"
        "try:\n"
        "    print(list(_ordered_map(task, range(8), 2)))\n"
        "except KinemaError as err:\n"
        "    print('ERROR', err)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])})
    assert r.stdout.startswith("ERROR") and "worker process died" in r.stdout, r.stdout + r.stderr


# --- demo never deletes a training run without --force --------------------------------------------

def test_demo_refuses_to_replace_a_training_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training-state-0000512000.pt").write_bytes(b"weeks of training")
    (run / "export-0000512000.safetensors").write_bytes(b"weights")
    assert main(["demo", "--out", str(run), "--minutes", "0.1"]) == 2
    line = _one_error_line(capsys)
    assert "--force" in line and "training run" in line
    assert (run / "training-state-0000512000.pt").read_bytes() == b"weeks of training"
    assert (run / "export-0000512000.safetensors").is_file()


# --- numeric ranges and one-line argument errors ---------------------------------------------------

BAD_ARGS = [
    ["train", "--minutes", "0"], ["train", "--minutes", "-1"], ["train", "--threads", "0"],
    ["train", "--lr-g", "-1"], ["train", "--kimg", "nan"], ["train", "--batch", "two"],
    ["encode", "a.mp4", "b.mp4", "--frames", "0"], ["encode", "a.mp4", "b.mp4", "--frames", "-2"],
    ["encode", "a.mp4", "b.mp4", "--start", "-3"], ["edit", "resize", "a.mp4", "b.mp4", "--width", "20000"],
    ["edit", "fps", "a.mp4", "b.mp4", "--to", "0"], ["edit", "color", "a.mp4", "b.mp4", "--brightness", "3"],
    ["generate", "x", "--truncation", "-1"], ["generate", "x", "--frames", "0"], ["eval", "--batch", "0"],
    ["prepare", "a", "b", "--resolution", "9000"], ["stream", "x", "--chunk", "0"], ["demo", "--threads", "-1"],
]


@pytest.mark.parametrize("argv", BAD_ARGS, ids=[" ".join(a) for a in BAD_ARGS])
def test_out_of_range_numbers_are_one_line_errors(argv, capsys):
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line.startswith("kinema: error: ")


def test_edit_fps_accepts_a_ratio(tmp_path, video_factory, capsys):
    src = video_factory("a.mp4", frames=10, size=(16, 16), fps=25)
    out = tmp_path / "b.mp4"
    assert main(["edit", "fps", str(src), str(out), "--to", "30000/1001"]) == 0
    from kinema.io import probe

    assert abs(probe(out).fps - 30000 / 1001) < 1e-3


# --- one line instead of a traceback ---------------------------------------------------------------

def test_eval_out_must_be_a_text_file(tmp_path, capsys):
    exp = _export(tmp_path / "export-0000001000.safetensors", "builtin:moving_digits")
    (tmp_path / "folder").mkdir()
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    for out in ("folder", "bin.jsonl"):
        assert main(["eval", "--metric", "digits256", "--fake", str(exp), "--out", str(tmp_path / out)]) == 2
        assert out in _one_error_line(capsys)


def test_force_onto_a_folder_is_refused_and_leaves_no_temporary(tmp_path, video_factory, capsys):
    src = video_factory("a.mp4", frames=6, size=(16, 16))
    target = tmp_path / "out.mp4"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["encode", str(src), str(target), "--force"]) == 2
    line = _one_error_line(capsys)
    assert "folder" in line and ".tmp-" not in line
    assert (target / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
@pytest.mark.parametrize("argv", [["train", "--device", "cuda", "--kimg", "0.01"],
                                  ["eval", "--metric", "digits256", "--fake", "x", "--device", "cuda"],
                                  ["edit", "upscale", "a.mp4", "b.mp4", "--model", "m", "--device", "cuda"]])
def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "--device cuda" in _one_error_line(capsys)


# --- checkpoints: a full disk, and names that stay unique --------------------------------------------

def test_disk_full_while_saving_says_what_was_not_saved(tmp_path):
    import resource
    import signal

    from kinema.errors import KinemaError
    from kinema.train import checkpoint

    first = checkpoint.save_state(tmp_path, 1000, {"x": torch.zeros(4)}, keep=5)
    before = first.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))  # writes past 256 KiB fail (EFBIG)
    try:
        with pytest.raises(KinemaError) as err:
            checkpoint.save_state(tmp_path, 2000, {"x": torch.zeros(1 << 18)}, keep=5)  # 1 MiB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    msg = str(err.value)
    assert "2.000 kimg was not saved" in msg and first.name in msg and "intact" in msg
    assert first.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary left


def test_snapshot_names_are_unique_and_sort_in_training_order(tmp_path):
    from kinema.models.export import find_export
    from kinema.train import checkpoint

    # fractional intervals (0.5, 1.5 kimg) and a stop by signal at 2.4 kimg after a snapshot at 2.0
    for nimg in (500, 1500, 2000, 2400):
        checkpoint.save_state(tmp_path, nimg, {"n": torch.tensor(nimg)}, keep=10)
    names = sorted(p.name for p in tmp_path.glob("training-state-*.pt"))
    assert len(names) == 4
    assert [checkpoint.load_state(tmp_path / n)["n"].item() for n in names] == [500, 1500, 2000, 2400]
    path, state = checkpoint.find_resume("latest", tmp_path, log=None)
    assert state["n"].item() == 2400
    # A run folder written by an earlier version (whole-kimg names) still resolves by clips seen.
    (tmp_path / "training-state-000003k.pt").write_bytes((tmp_path / names[0]).read_bytes())
    assert checkpoint.list_states(tmp_path)[-1][1].name == "training-state-000003k.pt"
    from kinema.models import build, save_generator

    ms = build("dcgan", resolution=32, frames=4, channels=1, width=8)
    for name in ("export-000001k.safetensors", "export-0000000500.safetensors", "export-0000001500.safetensors"):
        save_generator(tmp_path / name, ms.G, "dcgan", ms.kwargs, {})
    assert find_export(tmp_path).name == "export-0000001500.safetensors"


def test_errors_never_name_internal_temporaries(tmp_path, video_factory, capsys, monkeypatch):
    from kinema.errors import KinemaError
    from kinema.fsutil import atomic_path, public_paths
    import kinema.io.write as write

    # A writer failing inside atomic_path sees only the temporary's name; the user must see theirs.
    def failing(self, frames):  # as FFmpeg reports it: the file it was writing, the temporary
        raise KinemaError(f"{self._tmp}: encoder refused the frames")

    monkeypatch.setattr(write.VideoWriter, "write", failing)
    src = video_factory("a.mp4", frames=4, size=(16, 16))
    assert main(["encode", str(src), str(tmp_path / "out.mp4")]) == 2
    line = _one_error_line(capsys)
    assert ".tmp-" not in line and str(tmp_path / "out.mp4") in line
    with atomic_path(tmp_path / "x.mkv") as tmp:
        assert public_paths(f"{tmp}: boom") == f"{tmp_path / 'x.mkv'}: boom"
