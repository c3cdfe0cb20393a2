"""ONNX export: onnxruntime's frames equal PyTorch's for the same latents, streams included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from kinema.cli import main  # noqa: E402
from kinema.errors import KinemaError  # noqa: E402
from kinema.io import read_video  # noqa: E402
from kinema.models import build, save_generator  # noqa: E402
from kinema.models.onnx import TOLERANCE, OnnxGenerator, compare, export_onnx, load_onnx, supported  # noqa: E402
from kinema.sample.generate import generate  # noqa: E402


def _randomise(G):
    """BatchNorm statistics away from 0/1 and attention switched on, so the file must carry them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.1)
            elif name.endswith("gamma"):                    # self-attention starts switched off (0)
                t.fill_(0.5)
    return G.eval()


@pytest.mark.parametrize("name,kw", [("dcgan", {"num_classes": 3}), ("mocogan", {}),
                                     ("videogan", {"attention": True}), ("videovae", {"latent": "grid"})])
def test_onnx_frames_equal_pytorch(tmp_path, one_thread, name, kw):
    ms = build(name, resolution=32, frames=8, channels=3, **kw)
    G = _randomise(ms.G)
    path = export_onnx(G, tmp_path / "g.onnx", {"name": name, "kwargs": ms.kwargs, "meta": {}})
    og = OnnxGenerator(path)
    a = generate(G, [0, 1, 2], batch=3)
    b = generate(og, [0, 1, 2], batch=2)                  # another batch size: the batch axis is free
    assert a.shape == b.shape and float((a - b).abs().max()) <= TOLERANCE
    if G.can_extend:                                        # ... and so is the frame axis
        assert compare(G, path, seeds=(5,), frames=13) <= TOLERANCE


def test_supported_models_and_refusals(tmp_path):
    assert {"dcgan", "mocogan", "videogan", "videovae"} <= set(supported())

    class Plain(torch.nn.Module):
        num_classes = 0

    with pytest.raises(KinemaError, match="cannot be exported to ONNX.*dcgan"):
        export_onnx(Plain(), tmp_path / "x.onnx", {"name": "plain"})
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01garbage" * 20)
    with pytest.raises(KinemaError, match="junk.onnx"):
        OnnxGenerator(tmp_path / "junk.onnx")
    with pytest.raises(KinemaError, match="not found"):
        OnnxGenerator(tmp_path / "missing.onnx")


def test_cli_export_and_stream_with_onnxruntime(tmp_path, one_thread, capsys):
    ms = build("dcgan", resolution=32, frames=8, channels=1)
    _randomise(ms.G)
    save_generator(tmp_path / "exp.safetensors", ms.G, "dcgan", ms.kwargs, {"fps": 8})
    out = tmp_path / "g.onnx"
    assert main(["export-onnx", str(tmp_path / "exp.safetensors"), str(out)]) == 0
    assert "max abs difference" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]      # atomic: no leftovers
    assert main(["export-onnx", str(tmp_path / "exp.safetensors"), str(out)]) == 2  # exists, no --force
    args = ["--frames", "30", "--chunk", "7", "--codec", "lossless", "--seed", "3"]
    assert main(["stream", str(out), "--out", str(tmp_path / "onnx.mkv"), "--threads", "1"] + args) == 0
    assert main(["stream", str(tmp_path / "exp.safetensors"), "--out", str(tmp_path / "torch.mkv")] + args) == 0
    a, b = read_video(tmp_path / "onnx.mkv").frames, read_video(tmp_path / "torch.mkv").frames
    assert a.shape[0] == 30 and np.abs(a.astype(int) - b).max() <= 1
    assert main(["stream", str(out), "--runtime", "torch", "--out", str(tmp_path / "x.mkv")]) == 2
    videos = load_onnx(out).generate(seeds=[0, 1])
    assert videos.shape == (2, 8, 32, 32, 1) and videos.dtype == np.uint8
