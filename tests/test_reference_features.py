"""Every pretrained-extractor path against an independent implementation of the reference code.

For each published file format (I3D state dict, I3D TorchScript, Inception state dict, Inception
TorchScript) a file with random weights and random BatchNorm statistics is written in the
published layout and loaded through kinema's own loader; kinema's features for uint8 videos of
odd sizes must equal, to 1e-4 relative, the features computed here by the reference's rules:

* I3D state dict: VideoGPT ``videogpt/fvd/fvd.py`` + ``videogpt/data.py`` preprocessing (per frame
  /255, bilinear short side to 224 with ``ceil`` for the long side, centre crop, -0.5, x2) and
  piergiaj's ``pytorch_i3d.py`` forward (TF SAME padding, BN eps 1e-5, logits averaged over time);
* I3D TorchScript: StyleGAN-V calls the module on uint8 [B, C, T, H, W] with
  ``rescale=True, resize=True, return_features=True``;
* Inception state dict: pytorch-fid (``ToTensor`` /255, bilinear 299x299, 2x - 1, FID blocks);
* Inception TorchScript: StyleGAN2-ADA / clean-fid legacy mode call it on uint8 [N, 3, H, W] with
  ``return_features=True``; StyleGAN-V's Inception Score with ``no_output_bias=True``.

The reference networks here are written as functions of the state dict, not with kinema's modules.
The TorchScript files are stand-ins with the published call signature (the real ones cannot be
fetched offline), scripted in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.metrics import weights as W



def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max())


def _random_unit(sd: dict, name: str, cin: int, cout: int, kernel: tuple, gen, bn=True, bias=False, nd=3):
    fan_in = cin * math.prod(kernel)
    sd[f"{name}.weight" if nd == 2 else f"{name}.conv3d.weight"] = (
        torch.randn(cout, cin, *kernel, generator=gen) * math.sqrt(2.0 / fan_in))
    conv = name if nd == 2 else f"{name}.conv3d"
    if bias:
        sd[f"{conv}.bias"] = torch.randn(cout, generator=gen) * 0.1
    if bn:
        sd[f"{name[:-5] if nd == 2 else name}.bn.weight"] = torch.rand(cout, generator=gen) + 0.5
        base = name[:-5] if nd == 2 else name
        sd[f"{base}.bn.bias"] = torch.randn(cout, generator=gen) * 0.1
        sd[f"{base}.bn.running_mean"] = torch.randn(cout, generator=gen) * 0.1
        sd[f"{base}.bn.running_var"] = torch.rand(cout, generator=gen) * 1.5 + 0.5
        sd[f"{base}.bn.num_batches_tracked"] = torch.tensor(7)


def _videos(shape, seed, gray=False):
    rng = np.random.default_rng(seed)
    b, t, h, w = shape
    return torch.from_numpy(rng.integers(0, 256, (b, t, h, w, 1 if gray else 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------------
# I3D, VideoGPT's state dict (pytorch_i3d.InceptionI3d key names)

I3D_MIXED = [  # (name, in channels, (b0, b1a, b1b, b2a, b2b, b3b)), from pytorch_i3d.py
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]


def i3d_random_state_dict(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    _random_unit(sd, "Conv3d_1a_7x7", 3, 64, (7, 7, 7), g)
    _random_unit(sd, "Conv3d_2b_1x1", 64, 64, (1, 1, 1), g)
    _random_unit(sd, "Conv3d_2c_3x3", 64, 192, (3, 3, 3), g)
    for name, cin, o in I3D_MIXED:
        for branch, a, b, k in (("b0", cin, o[0], 1), ("b1a", cin, o[1], 1), ("b1b", o[1], o[2], 3),
                                ("b2a", cin, o[3], 1), ("b2b", o[3], o[4], 3), ("b3b", cin, o[5], 1)):
            _random_unit(sd, f"{name}.{branch}", a, b, (k, k, k), g)
    _random_unit(sd, "logits", 1024, 400, (1, 1, 1), g, bn=False, bias=True)
    return sd


def _tf_same(x, kernel, stride):
    """pytorch_i3d's compute_pad: pad = max(k - s, 0) if n % s == 0 else max(k - n % s, 0),
    front = pad // 2, back = the rest; F.pad takes the last dimension first."""
    spec = []
    for n, k, s in zip(x.shape[2:], kernel, stride):
        pad = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        spec.append((pad // 2, pad - pad // 2))
    (tf, tb), (hf, hb), (wf, wb) = spec
    return F.pad(x, (wf, wb, hf, hb, tf, tb))


def _i3d_unit(x, sd, name, stride=(1, 1, 1), bn=True, relu=True):
    w = sd[f"{name}.conv3d.weight"]
    x = F.conv3d(_tf_same(x, w.shape[2:], stride), w, sd.get(f"{name}.conv3d.bias"), stride)
    if bn:
        x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"],
                         sd[f"{name}.bn.weight"], sd[f"{name}.bn.bias"], False, 0.0, 1e-5)
    return F.relu(x) if relu else x


def _i3d_pool(x, k, s):
    return F.max_pool3d(_tf_same(x, k, s), k, s)


def i3d_reference_logits(sd, x):
    """pytorch_i3d.InceptionI3d.forward on float [B, 3, T, 224, 224]."""
    x = _i3d_unit(x, sd, "Conv3d_1a_7x7", (2, 2, 2))
    x = _i3d_pool(x, (1, 3, 3), (1, 2, 2))
    x = _i3d_unit(_i3d_unit(x, sd, "Conv3d_2b_1x1"), sd, "Conv3d_2c_3x3")
    x = _i3d_pool(x, (1, 3, 3), (1, 2, 2))
    for name, _, _ in I3D_MIXED:
        if name == "Mixed_4b":
            x = _i3d_pool(x, (3, 3, 3), (2, 2, 2))
        if name == "Mixed_5b":
            x = _i3d_pool(x, (2, 2, 2), (2, 2, 2))
        u = lambda y, b: _i3d_unit(y, sd, f"{name}.{b}")  # noqa: E731
        x = torch.cat([u(x, "b0"), u(u(x, "b1a"), "b1b"), u(u(x, "b2a"), "b2b"),
                       u(_i3d_pool(x, (3, 3, 3), (1, 1, 1)), "b3b")], 1)
    x = F.avg_pool3d(x, (2, 7, 7), (1, 1, 1))
    x = _i3d_unit(x, sd, "logits", bn=False, relu=False)
    return x.squeeze(3).squeeze(3).mean(dim=2)


def videogpt_reference_preprocess(video_thwc: torch.Tensor, resolution=224) -> torch.Tensor:
    """One uint8 video [T, H, W, 3] -> [3, T, 224, 224]: data.py's preprocess, then fvd.py's x2."""
    video = video_thwc.permute(0, 3, 1, 2).float() / 255.0
    _, _, h, w = video.shape
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    _, _, h, w = video.shape
    top, left = (h - resolution) // 2, (w - resolution) // 2
    video = video[:, :, top:top + resolution, left:left + resolution].permute(1, 0, 2, 3).contiguous()
    return (video - 0.5) * 2


@torch.no_grad()
def test_i3d_state_dict_path_equals_videogpt(tmp_path, one_thread):
    sd = i3d_random_state_dict()
    torch.save(sd, tmp_path / "i3d_pretrained_400.pt")
    ext, _, _ = W.load_video_extractor(tmp_path / "i3d_pretrained_400.pt")
    # Odd sizes, landscape and portrait, RGB and gray (gray repeated to RGB, as StyleGAN-V does).
    for shape, gray, seed in (((1, 9, 37, 53), False, 1), ((1, 9, 61, 29), True, 2)):
        v = _videos(shape, seed, gray)
        rgb = v.expand(-1, -1, -1, -1, 3) if gray else v
        ref = i3d_reference_logits(sd, torch.stack([videogpt_reference_preprocess(x) for x in rgb]))
        got = ext(v)
        assert got.shape == (shape[0], 400)
        assert _rel(got, ref) < 1e-4, f"{shape}: relative difference {_rel(got, ref):.3g}"


# ------------------------------------------------------------------------------------------------
# TorchScript stand-ins with the published call signatures

class I3DScriptStandIn(nn.Module):
    """forward(x uint8 [B, 3, T, H, W], rescale, resize, return_features) like i3d_torchscript.pt:
    rescale maps [0, 255] to [-1, 1], resize goes to a fixed spatial size, features are 400-d
    pre-softmax values (softmax otherwise). Random conv + BatchNorm statistics, layout-sensitive."""

    def __init__(self, seed=3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(3, 8, (3, 3, 3), padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8 * 2 * 4 * 4, 400)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            self.bn.running_mean.copy_(torch.randn(8, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(8, generator=g) + 0.5)
        self.eval()

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 24, 24), mode="trilinear", align_corners=False)
        x = F.relu(self.bn(self.conv(x)))
        x = self.fc(F.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(1))
        return x if return_features else torch.softmax(x, 1)


class InceptionScriptStandIn(nn.Module):
    """forward(x uint8 [N, 3, H, W], return_features, no_output_bias) like inception-2015-12-05.pt:
    2048-d features, or softmax over 1008 classes (without the output bias when asked)."""

    def __init__(self, seed=4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.proj = nn.Linear(16 * 4 * 4, 2048)
        self.out = nn.Linear(2048, 1008)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            self.bn.running_mean.copy_(torch.randn(16, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(16, generator=g) + 0.5)
        self.eval()

    def forward(self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(x.float(), size=(32, 32), mode="bilinear", align_corners=False)
        x = (x - 128) / 128
        feats = self.proj(F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), (4, 4)).flatten(1))
        if return_features:
            return feats
        logits = F.linear(feats, self.out.weight) if no_output_bias else self.out(feats)
        return torch.softmax(logits, 1)


def _script(module, path):
    """Script and save ``module`` as the published files are laid out (stored zip records)."""
    from test_metrics_e2e import save_scripted

    save_scripted(module, path)
    return torch.jit.load(str(path))


@torch.no_grad()
def test_i3d_torchscript_path_equals_stylegan_v_call(tmp_path, one_thread):
    ref_net = _script(I3DScriptStandIn(), tmp_path / "i3d_torchscript.pt")
    ext, _, _ = W.load_video_extractor(tmp_path / "i3d_torchscript.pt")
    for shape, gray, seed in (((2, 9, 37, 53), False, 5), ((1, 6, 61, 29), True, 6)):
        v = _videos(shape, seed, gray)
        x = torch.from_numpy(np.ascontiguousarray(v.numpy().transpose(0, 4, 1, 2, 3)))  # [B, C, T, H, W]
        if gray:
            x = x.repeat(1, 3, 1, 1, 1)
        assert x.dtype == torch.uint8
        ref = ref_net(x, rescale=True, resize=True, return_features=True)
        got = ext(v)
        assert got.shape == (shape[0], 400)
        assert _rel(got, ref) < 1e-4, f"{shape}: relative difference {_rel(got, ref):.3g}"


@torch.no_grad()
def test_inception_torchscript_path_equals_stylegan_call(tmp_path, one_thread):
    ref_net = _script(InceptionScriptStandIn(), tmp_path / "inception-2015-12-05.pt")
    ext, _, _ = W.load_frame_extractor(tmp_path / "inception-2015-12-05.pt")
    for shape, gray, seed in (((5, 1, 37, 53), False, 7), ((3, 1, 61, 29), True, 8)):
        v = _videos(shape, seed, gray)
        frames = torch.from_numpy(np.ascontiguousarray(v.numpy()[:, 0].transpose(0, 3, 1, 2)))  # [N, C, H, W]
        if gray:
            frames = frames.repeat(1, 3, 1, 1)
        ref = ref_net(frames, return_features=True)
        got = ext(v)
        assert got.shape == (shape[0], 2048)
        assert _rel(got, ref) < 1e-4
        probs_ref = ref_net(frames, no_output_bias=True)
        assert _rel(ext.probs_from_videos(v), probs_ref) < 1e-4


# ------------------------------------------------------------------------------------------------
# Inception-v3, pytorch-fid's state dict (FIDInceptionA/C/E_1/E_2 key names)

def _c(cin, cout, k, s=1, p=0):
    k = (k, k) if isinstance(k, int) else k
    p = (p, p) if isinstance(p, int) else p
    return (cin, cout, k, s, p)


def _inception_spec() -> dict:
    """name -> (cin, cout, kernel, stride, padding) of every BasicConv2d, as torchvision builds it."""
    spec = {"Conv2d_1a_3x3": _c(3, 32, 3, 2), "Conv2d_2a_3x3": _c(32, 32, 3), "Conv2d_2b_3x3": _c(32, 64, 3, p=1),
            "Conv2d_3b_1x1": _c(64, 80, 1), "Conv2d_4a_3x3": _c(80, 192, 3)}
    for m, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        spec.update({f"{m}.branch1x1": _c(cin, 64, 1), f"{m}.branch5x5_1": _c(cin, 48, 1),
                     f"{m}.branch5x5_2": _c(48, 64, 5, p=2), f"{m}.branch3x3dbl_1": _c(cin, 64, 1),
                     f"{m}.branch3x3dbl_2": _c(64, 96, 3, p=1), f"{m}.branch3x3dbl_3": _c(96, 96, 3, p=1),
                     f"{m}.branch_pool": _c(cin, pool, 1)})
    spec.update({"Mixed_6a.branch3x3": _c(288, 384, 3, 2), "Mixed_6a.branch3x3dbl_1": _c(288, 64, 1),
                 "Mixed_6a.branch3x3dbl_2": _c(64, 96, 3, p=1), "Mixed_6a.branch3x3dbl_3": _c(96, 96, 3, 2)})
    for m, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        spec.update({f"{m}.branch1x1": _c(768, 192, 1), f"{m}.branch7x7_1": _c(768, c7, 1),
                     f"{m}.branch7x7_2": _c(c7, c7, (1, 7), p=(0, 3)), f"{m}.branch7x7_3": _c(c7, 192, (7, 1), p=(3, 0)),
                     f"{m}.branch7x7dbl_1": _c(768, c7, 1), f"{m}.branch7x7dbl_2": _c(c7, c7, (7, 1), p=(3, 0)),
                     f"{m}.branch7x7dbl_3": _c(c7, c7, (1, 7), p=(0, 3)), f"{m}.branch7x7dbl_4": _c(c7, c7, (7, 1), p=(3, 0)),
                     f"{m}.branch7x7dbl_5": _c(c7, 192, (1, 7), p=(0, 3)), f"{m}.branch_pool": _c(768, 192, 1)})
    spec.update({"Mixed_7a.branch3x3_1": _c(768, 192, 1), "Mixed_7a.branch3x3_2": _c(192, 320, 3, 2),
                 "Mixed_7a.branch7x7x3_1": _c(768, 192, 1), "Mixed_7a.branch7x7x3_2": _c(192, 192, (1, 7), p=(0, 3)),
                 "Mixed_7a.branch7x7x3_3": _c(192, 192, (7, 1), p=(3, 0)), "Mixed_7a.branch7x7x3_4": _c(192, 192, 3, 2)})
    for m, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        spec.update({f"{m}.branch1x1": _c(cin, 320, 1), f"{m}.branch3x3_1": _c(cin, 384, 1),
                     f"{m}.branch3x3_2a": _c(384, 384, (1, 3), p=(0, 1)), f"{m}.branch3x3_2b": _c(384, 384, (3, 1), p=(1, 0)),
                     f"{m}.branch3x3dbl_1": _c(cin, 448, 1), f"{m}.branch3x3dbl_2": _c(448, 384, 3, p=1),
                     f"{m}.branch3x3dbl_3a": _c(384, 384, (1, 3), p=(0, 1)),
                     f"{m}.branch3x3dbl_3b": _c(384, 384, (3, 1), p=(1, 0)), f"{m}.branch_pool": _c(cin, 192, 1)})
    return spec


SPEC = _inception_spec()


def inception_random_state_dict(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, (cin, cout, k, _, _) in SPEC.items():
        _random_unit(sd, f"{name}.conv", cin, cout, k, g, nd=2)
    sd["fc.weight"] = torch.randn(1008, 2048, generator=g) / math.sqrt(2048)
    sd["fc.bias"] = torch.randn(1008, generator=g) * 0.1
    return sd


def _bc(x, sd, name):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm (eps 0.001) -> ReLU."""
    _, _, _, s, p = SPEC[name]
    x = F.conv2d(x, sd[f"{name}.conv.weight"], None, s, p)
    x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"],
                     sd[f"{name}.bn.weight"], sd[f"{name}.bn.bias"], False, 0.0, 0.001)
    return F.relu(x)


def pytorch_fid_reference_features(sd, images01):
    """pytorch-fid InceptionV3([3]) on float [N, 3, H, W] in [0, 1]: resize, normalise, blocks."""
    x = F.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    b = lambda y, n: _bc(y, sd, n)  # noqa: E731
    x = b(b(b(x, "Conv2d_1a_3x3"), "Conv2d_2a_3x3"), "Conv2d_2b_3x3")
    x = F.max_pool2d(x, 3, 2)
    x = F.max_pool2d(b(b(x, "Conv2d_3b_1x1"), "Conv2d_4a_3x3"), 3, 2)
    avg = lambda y: F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)  # noqa: E731  (FID blocks)
    for m in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = torch.cat([b(x, f"{m}.branch1x1"), b(b(x, f"{m}.branch5x5_1"), f"{m}.branch5x5_2"),
                       b(b(b(x, f"{m}.branch3x3dbl_1"), f"{m}.branch3x3dbl_2"), f"{m}.branch3x3dbl_3"),
                       b(avg(x), f"{m}.branch_pool")], 1)
    m = "Mixed_6a"
    x = torch.cat([b(x, f"{m}.branch3x3"),
                   b(b(b(x, f"{m}.branch3x3dbl_1"), f"{m}.branch3x3dbl_2"), f"{m}.branch3x3dbl_3"),
                   F.max_pool2d(x, 3, 2)], 1)
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        s7 = b(b(b(x, f"{m}.branch7x7_1"), f"{m}.branch7x7_2"), f"{m}.branch7x7_3")
        d7 = x
        for i in range(1, 6):
            d7 = b(d7, f"{m}.branch7x7dbl_{i}")
        x = torch.cat([b(x, f"{m}.branch1x1"), s7, d7, b(avg(x), f"{m}.branch_pool")], 1)
    m = "Mixed_7a"
    d = x
    for i in range(1, 5):
        d = b(d, f"{m}.branch7x7x3_{i}")
    x = torch.cat([b(b(x, f"{m}.branch3x3_1"), f"{m}.branch3x3_2"), d, F.max_pool2d(x, 3, 2)], 1)
    for m, pool in (("Mixed_7b", avg), ("Mixed_7c", lambda y: F.max_pool2d(y, 3, 1, 1))):  # E_1, E_2
        a = b(x, f"{m}.branch3x3_1")
        d = b(b(x, f"{m}.branch3x3dbl_1"), f"{m}.branch3x3dbl_2")
        x = torch.cat([b(x, f"{m}.branch1x1"), b(a, f"{m}.branch3x3_2a"), b(a, f"{m}.branch3x3_2b"),
                       b(d, f"{m}.branch3x3dbl_3a"), b(d, f"{m}.branch3x3dbl_3b"), b(pool(x), f"{m}.branch_pool")], 1)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


@torch.no_grad()
def test_inception_state_dict_path_equals_pytorch_fid(tmp_path, one_thread):
    sd = inception_random_state_dict()
    torch.save(sd, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    ext, _, _ = W.load_frame_extractor(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    for shape, gray, seed in (((2, 1, 37, 53), False, 9), ((1, 1, 61, 29), True, 10)):
        v = _videos(shape, seed, gray)
        images = v[:, 0].permute(0, 3, 1, 2).float() / 255  # torchvision ToTensor
        if gray:
            images = images.repeat(1, 3, 1, 1)
        ref = pytorch_fid_reference_features(sd, images)
        got = ext(v)
        assert got.shape == (shape[0], 2048)
        assert _rel(got, ref) < 1e-4, f"{shape}: relative difference {_rel(got, ref):.3g}"


@pytest.mark.parametrize("name", ["fid50k_frames", "kid2k_frames", "fid512_frames"])
def test_frame_protocols_use_pytorch_fid_unbiased_covariance(name):
    from kinema.metrics.protocols import get_protocol

    p = get_protocol(name)
    assert p.cov_ddof == 1 and "pytorch-fid" in p.reference


@pytest.mark.parametrize("name", ["fvd2048_16f", "fvd256_16f", "kvd512_8f"])
def test_video_protocols_use_stylegan_v_covariance(name):
    from kinema.metrics.protocols import get_protocol

    p = get_protocol(name)
    assert p.cov_ddof == 0 and "StyleGAN-V" in p.reference
