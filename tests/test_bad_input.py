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
