"""Distributed runs on CPU: torchrun with 2 processes and gloo, compared with one process.

Every multi-process run goes through ``torchrun --standalone`` (a free rendezvous port each time)
in a subprocess with a timeout, exactly as a user would launch it. One thread per process: the
2-core CI machine runs both ranks at once.

* training, ``--world-invariant``: 2 ranks x 2 clips and 1 process x 4 clips see the same global
  batches, the same latents and augmentations (drawn for the global batch, sliced per rank) and
  the same batch-norm statistics (synchronised), so their states agree to float tolerance; the
  loop's cross-rank parameter check ran before every save; a 2-rank state resumes in 1 process
  and matches an uninterrupted 1-process run;
* training, default mode (per-rank draws ``seed * world + rank``): it runs, and it does *not*
  match one process, which shows the comparison above has teeth;
* the parameter check itself fails when one rank's weights differ;
* ``generate`` under torchrun writes byte-identical files; ``eval`` gives identical numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.train import load_state

TIMEOUT = 180
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


# A gloo worker can (rarely, on a busy CPU, when the process group is left to interpreter exit)
# abort during interpreter exit after it finished and every file was
# written: libstdc++'s "terminate called without an active exception", so torchrun reports a
# failure. That is PyTorch's teardown, not kinema's result: such a launch is run once more, from
# scratch (its --out removed). Any other failure fails the test at once.
EXIT_ABORT = "terminate called without an active exception"


def run(args: list[str], cwd=None) -> str:
    """Run a command with a timeout; return stdout + stderr, failing the test with them on error."""
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and EXIT_ABORT in output and "--out" in args and "--resume" not in args:
        shutil.rmtree(args[args.index("--out") + 1], ignore_errors=True)
        proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def torchrun(*args) -> str:
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)])


def kinema(*args) -> str:
    return run([sys.executable, "-m", "kinema", *map(str, args)])


@pytest.fixture(scope="module")
def archive(bars_archive) -> Path:
    return Path(bars_archive.path)


# 4 steps of 4 clips (R1 every 2 steps, translation + cutout + colour augmentation, EMA): the tiny
# preset, snapshots only at the end. Few steps on purpose: this GAN with Adam (beta1 = 0) amplifies
# small differences fast. Measured: 2 ranks vs 1 process (other float summation order) differ by
# 2e-7 after 4 steps, 3e-5 after 5, 1.5e-4 after 6; perturbing one process's initial G weights by
# 1e-7 gives 1e-3 after 5 steps. So 4 steps with a 1e-5 tolerance, and the default mode (other
# latents) must differ by more than 1e-4.
STEPS_KIMG = "0.016"
TRAIN = ["--preset", "tiny", "--kimg", STEPS_KIMG, "--snapshot-kimg", "1000", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(archive, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {name: root / name for name in ("two", "one", "two_default", "two_half")}
    log = torchrun("-m", "kinema", "train", archive, *TRAIN, "--world-invariant", "--out", out["two"])
    assert "parameters identical on 2 ranks" in log
    kinema("train", archive, *TRAIN, "--world-invariant", "--out", out["one"])
    log = kinema("train", archive, *TRAIN, "--gpus", "2", "--out", out["two_default"])   # = torchrun ... -m kinema
    assert "2 rank(s), batch 2/rank" in log
    half = [a if a != STEPS_KIMG else "0.008" for a in TRAIN]
    torchrun("-m", "kinema", "train", archive, *half, "--world-invariant", "--out", out["two_half"])
    return out


def final_state(run_dir: Path) -> dict:
    return load_state(sorted(run_dir.glob("training-state-*.pt"))[-1])


def max_difference(a: dict, b: dict) -> float:
    """Largest absolute difference over the float tensors of two state dicts (same keys)."""
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def assert_close(a: dict, b: dict, tol: float = 1e-5) -> None:
    for net in ("G", "D", "G_ema"):
        diff = max_difference(a[net], b[net])
        assert diff < tol, f"{net}: max difference {diff:.3g} between the runs"


def test_two_ranks_match_one_process(runs):
    two, one = final_state(runs["two"]), final_state(runs["one"])
    assert two["counters"]["nimg"] == one["counters"]["nimg"] == 16
    assert two["counters"]["world_size"] == 2 and one["counters"]["world_size"] == 1
    assert two["loader"]["step"] == one["loader"]["step"] == 4
    assert_close(two, one)
    # Optimizer moments too: the gradients themselves agreed, not just the weights by luck.
    for name in ("G", "D"):
        for k, s in two["opt"][name]["state"].items():
            for moment in ("exp_avg", "exp_avg_sq"):
                ref = one["opt"][name]["state"][k][moment]
                assert torch.allclose(s[moment], ref, rtol=1e-3, atol=1e-6), f"opt {name} {k} {moment}"


def test_default_mode_draws_per_rank_and_differs(runs):
    # Per-rank seeds: the 2-rank run sees other latents than 1 process, so it must not match.
    default, one = final_state(runs["two_default"]), final_state(runs["one"])
    assert default["counters"]["nimg"] == 16
    assert max_difference(default["G"], one["G"]) > 1e-4   # 10x the tolerance above
    assert len(default["ranks"]) == 2 and default["ranks"][0]["latent"].tolist() != default["ranks"][1]["latent"].tolist()


def test_two_rank_state_resumes_in_one_process(runs, tmp_path):
    # 2 steps on 2 ranks, then 2 more in 1 process (the same global batch of 4): equal to 4 steps
    # of 1 process. World-invariant streams are the same on every rank, so rank 0's are restored.
    resumed = tmp_path / "resumed"
    shutil.copytree(runs["two_half"], resumed)
    assert final_state(resumed)["counters"] == {"nimg": 8, "step": 2, "world_size": 2}
    log = kinema("train", "--out", resumed, "--resume", "latest", "--kimg", STEPS_KIMG)
    assert "resumed from" in log
    a, b = final_state(resumed), final_state(runs["one"])
    assert a["counters"] == b["counters"] == {"nimg": 16, "step": 4, "world_size": 1}
    assert a["loader"]["step"] == 4
    assert_close(a, b)


CHECK = textwrap.dedent("""
    import torch
    from kinema.errors import KinemaError
    from kinema import dist

    dist.init("cpu")
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    dist.check_consistent({"net": net})          # same seed: identical, passes
    if dist.rank() == 1:
        with torch.no_grad():
            net.bias[0] += 1e-7                   # one float ulp-ish nudge on one rank
    try:
        dist.check_consistent({"net": net})
    except KinemaError as err:
        print(f"rank {dist.rank()} refused: {err}")
    dist.shutdown()
""")


def test_parameter_check_catches_a_diverged_rank(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    log = torchrun(script)
    assert "rank 0 refused: parameters of net differ between ranks" in log
    assert "rank 1 refused" in log


def test_distributed_generate_is_byte_identical(runs, tmp_path):
    export = sorted(runs["one"].glob("export-*.safetensors"))[-1]
    # 5 seeds in batches of 2: rank 0 takes batches 0 and 2 (3 videos), rank 1 batch 1.
    kinema("generate", export, "--seeds", "0-4", "--batch", "2", "--out", tmp_path / "single")
    torchrun("-m", "kinema", "generate", export, "--seeds", "0-4", "--batch", "2", "--out", tmp_path / "ranks")
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert single == sorted(p.name for p in (tmp_path / "ranks").iterdir()) and len(single) == 5
    for name in single:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "ranks" / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_distributed_eval_gives_the_same_numbers(runs, archive, tmp_path):
    export = sorted(runs["one"].glob("export-*.safetensors"))[-1]
    args = ["--metric", "fid2k_frames", "--num", "24", "--batch", "4", "--real", archive, "--fake", export,
            "--cache-dir", tmp_path / "cache"]
    kinema("eval", *args, "--out", tmp_path / "single.jsonl")
    # "--" after the module: torchrun's own parser would otherwise take --num for its --numa-binding.
    torchrun("-m", "kinema", "--", "eval", *args[:-2], "--cache-dir", tmp_path / "cache2",
             "--out", tmp_path / "ranks.jsonl")
    single = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text().splitlines()]
    ranks = [json.loads(line) for line in (tmp_path / "ranks.jsonl").read_text().splitlines()]
    assert len(single) == len(ranks) == 1                      # rank 0 alone appends the result
    assert single[0]["value"] == ranks[0]["value"] and single[0]["fake"]["count"] == ranks[0]["fake"]["count"]
    assert ranks[0]["real"]["count"] == 24


def test_ctgan_sparse_frames_two_ranks_match_one_process(archive, tmp_path):
    # ctgan draws the frame times of its 3-of-4-frame training clips like its latents: for the
    # global batch, each rank taking its slice, so 2 ranks x 2 clips equal 1 process x 4 clips.
    args = [*TRAIN, "--model", "ctgan", "--world-invariant"]
    log = torchrun("-m", "kinema", "train", archive, *args, "--out", tmp_path / "two")
    assert "parameters identical on 2 ranks" in log
    kinema("train", archive, *args, "--out", tmp_path / "one")
    two, one = final_state(tmp_path / "two"), final_state(tmp_path / "one")
    assert two["model"]["name"] == one["model"]["name"] == "ctgan"
    assert_close(two, one, tol=5e-5)   # measured 1.2e-5 (float summation order, amplified by Adam)
    # ... and that agreement is not the initial weights': training moved them far more.
    from kinema.models import build
    torch.manual_seed(0)
    start = build("ctgan", **two["model"]["kwargs"]).G.state_dict()
    assert max_difference(two["G"], start) > 100 * 5e-5
