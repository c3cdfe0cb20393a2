"""Style transfer for videos: a reference's colour *look* (no weights), or neural style (VGG-19).

* :func:`look_transfer` matches the clip's colour distribution to a reference image's: mean and
  covariance in CIELAB (a roughly decorrelated, perceptual space), moved by the linear map that
  takes one Gaussian to the other with the least change (the Monge-Kantorovich solution, as
  in Pitie & Kokaram 2007). The map is computed once from all frames of the clip and applied
  identically to every frame, so it cannot flicker: equal input pixels give equal output pixels.
* :func:`neural_style` is Gatys et al.'s optimisation (content from ``conv4_2``, style as Gram
  matrices of ``relu1_1 .. relu5_1`` of VGG-19) run frame by frame, made temporally stable the way
  Ruder et al. do it: each frame starts from the previous stylised frame carried along the
  estimated motion (:func:`kinema.edit.motion.estimate_motion`), and a temporal loss keeps it
  there wherever that motion explains the source (occluded pixels are free). Weights are the
  user's torchvision VGG-19 file (``vgg19-dcbb9e9d.pth``), read with ``weights_only=True``;
  nothing is downloaded. :func:`flicker` measures the result.

Frames are uint8 ``[T, H, W, C]`` in; both return uint8 ``[T, H, W, 3]``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.edit.ops import check_frames
from kinema.errors import KinemaError

# ---------------------------------------------------------------------------------------------
# Reference images.


def read_reference(path: str | os.PathLike) -> np.ndarray:
    """A reference picture as uint8 ``[H, W, 3]``: any image Pillow reads, or the first frame of a
    video (or frame folder) kinema reads."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise KinemaError(f"{path}: reference image not found")
    if path.is_file():
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError):
            pass  # not a still image: try it as a video below
    from kinema.io import read_video

    frame = read_video(path, num_frames=1).frames[0]
    return np.repeat(frame, 3, -1) if frame.shape[-1] == 1 else frame


def _rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


# ---------------------------------------------------------------------------------------------
# sRGB <-> CIELAB (D65 white).

_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                     [0.2126729, 0.7151522, 0.0721750],
                     [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (or float 0..255) sRGB ``[..., 3]`` -> float64 CIELAB ``[..., 3]`` (L 0..100)."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``[..., 3]`` -> float sRGB 0..255 (unclipped)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    lin = xyz @ np.linalg.inv(_RGB2XYZ).T
    lin = np.clip(lin, 0, None)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return c * 255.0


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def look_transfer(frames: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Give ``frames`` the colour look of ``reference`` (uint8 ``[H, W, C]``).

    The clip's Lab mean and covariance (over all its pixels) are mapped onto the reference's by
    ``x -> mu_r + A (x - mu_s)`` with ``A = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2`` (S, R: the
    covariances), the smallest linear change that matches both moments. ``strength`` in
    [0, 1] mixes the result with the input in Lab. One map for every frame.
    """
    check_frames(frames)
    reference = np.asarray(reference)
    if reference.dtype != np.uint8 or reference.ndim != 3 or reference.shape[-1] not in (1, 3) or reference.size == 0:
        raise KinemaError(f"look transfer: reference must be a uint8 [H, W, C] image, got {reference.dtype} "
                          f"{reference.shape}")
    if not 0 <= strength <= 1:
        raise KinemaError(f"look transfer: strength must be in [0, 1], got {strength}")
    src = srgb_to_lab(_rgb(frames).reshape(-1, 3))
    ref = srgb_to_lab(_rgb(reference).reshape(-1, 3))
    mu_s, mu_r = src.mean(0), ref.mean(0)
    eps = 1e-3 * np.eye(3)  # a flat clip (one colour) has a singular covariance
    cov_s, cov_r = np.cov(src, rowvar=False) + eps, np.cov(ref, rowvar=False) + eps
    s_half = _sqrtm(cov_s)
    s_inv = np.linalg.inv(s_half)
    a = s_inv @ _sqrtm(s_half @ cov_r @ s_half) @ s_inv
    a = strength * a + (1 - strength) * np.eye(3)
    shift = strength * (mu_r - mu_s)
    # The map is affine per pixel, so it is computed once and applied to each frame in turn.
    out = np.empty(frames.shape[:3] + (3,), np.uint8)
    for i, frame in enumerate(_rgb(frames)):
        lab = srgb_to_lab(frame)
        out[i] = np.clip(np.rint(lab_to_srgb((lab - mu_s) @ a.T + mu_s + shift)), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------
# VGG-19 features in torchvision's published layout.

# torchvision's configuration "E": channels per conv, "M" = 2x2 max pool. In ``features`` every
# conv is followed by a ReLU, so conv k of the list sits at index 2k + (pools before it).
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# Layers used (indices into ``features``; outputs taken after that module).
CONTENT_LAYER = 22                              # relu4_2 (after conv4_2)
STYLE_LAYERS = (1, 6, 11, 20, 29)               # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)   # ImageNet statistics the weights expect
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class VGG19Features(nn.Module):
    """``features`` of torchvision's VGG-19 (state dict keys ``features.N.weight/bias``).

    ``forward(x [N, 3, H, W] in [0, 1], layers)`` -> {index: activation} for the requested
    indices, stopping after the deepest one.
    """

    def __init__(self):
        super().__init__()
        mods, cin = [], 3
        for v in VGG19_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, layers) -> dict[int, torch.Tensor]:
        x = (x - _MEAN.to(x)) / _STD.to(x)
        out, last = {}, max(layers)
        for i, mod in enumerate(self.features):
            if isinstance(mod, nn.MaxPool2d) and min(x.shape[-2:]) < 2:
                break  # the image is already down to one pixel; deeper layers are not computed
            x = mod(x)
            if i in layers:
                out[i] = x
            if i >= last:
                break
        return out


# The published file also holds the ImageNet classifier (ignored here): its tensors, float32.
_VGG19_CLASSIFIER = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
                     "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
                     "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}


def load_vgg19(weights=None) -> tuple[VGG19Features, Path]:
    """The VGG-19 feature stack from the user's file -> (module in eval mode, path).

    ``weights``: a file or a folder (else the ``KINEMA_WEIGHTS`` folder) holding torchvision's
    ``vgg19-dcbb9e9d.pth``. Any state dict with every ``features.N.weight/bias`` of that layout
    loads; ``classifier.*`` tensors (the published file has them) are checked for size and
    ignored. Read with ``torch.load(weights_only=True)`` after the size and layout checks of
    :func:`kinema.untrusted.torch_load`.
    """
    from kinema.metrics.weights import find_weights
    from kinema.untrusted import MiB, layout_mismatch, state_layout, torch_load

    path = find_weights("vgg19", weights)
    net = VGG19Features()
    expected = state_layout(net, dtypes=False)
    classifier = {k: ("", v) for k, v in _VGG19_CLASSIFIER.items()}
    what = "torchvision VGG-19 state dict"

    def features(state):
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
            raise KinemaError(f"{path}: not a state dict of tensors ({what})")
        state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
        extra = {k: v for k, v in state.items() if k.startswith("classifier.")}
        problem = layout_mismatch({k: v for k, v in classifier.items() if k in extra}, state_layout(extra, False))
        if problem:
            raise KinemaError(f"{path}: not the published {what} layout ({problem})")
        return {k: v for k, v in state.items() if k not in extra}

    def check(fake):
        problem = layout_mismatch(expected, state_layout(features(fake), dtypes=False))
        if problem:
            raise KinemaError(f"{path}: not the published {what} layout ({problem})")

    limit = 4 * sum(math.prod(s) for _, s in list(expected.values()) + list(classifier.values())) + 16 * MiB
    net.load_state_dict(features(torch_load(path, limit, what, check)))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), path


# ---------------------------------------------------------------------------------------------
# Neural style.


def flicker(frames: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames (grey levels); 0 for one frame."""
    f = np.asarray(frames, np.float32)
    return float(np.abs(np.diff(f, axis=0)).mean()) if len(f) > 1 else 0.0


def flicker_ratio(stylised: np.ndarray, source: np.ndarray) -> float:
    """``flicker(stylised) / flicker(source)``: 1 = the result changes as much as the source does."""
    base = flicker(_rgb(source))
    return flicker(stylised) / base if base > 0 else (0.0 if flicker(stylised) == 0 else float("inf"))


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.tensor(img).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _warp_previous(prev_src, src, prev_out):
    """Carry the previous stylised frame to this frame along the source's motion.

    -> (warped stylised [H, W, 3] float 0..255, confidence [H, W] in [0, 1]: how well the same
    warp explains the source, i.e. 0 where this frame shows something the last one did not).
    """
    from kinema.edit.motion import SOFTNESS, estimate_motion, sample

    flow = estimate_motion(prev_src, src, t=1.0)            # pixel p of src was at p - v in prev_src
    yy, xx = np.mgrid[0:src.shape[0], 0:src.shape[1]].astype(np.float32)
    y, x = yy - flow[..., 0], xx - flow[..., 1]
    warped_src = sample(prev_src.astype(np.float32), y, x)
    err = np.abs(warped_src - src.astype(np.float32)).mean(-1)
    conf = np.exp(-err / (3 * SOFTNESS))
    return sample(prev_out.astype(np.float32), y, x), conf


def limit_change(prev_out: np.ndarray, out: np.ndarray, prev_src: np.ndarray, src: np.ndarray,
                 max_ratio: float) -> np.ndarray:
    """``out`` moved towards ``prev_out`` until, at every pixel, the stylised frame changes (mean
    absolute change over the colour channels) at most ``max_ratio`` times as much as the source
    does there; uint8 ``[H, W, 3]`` frames in and out (the source RGB).

    Each pixel's change keeps its direction (its colour) and is scaled down, then truncated to
    whole grey levels towards the previous value, so ``flicker(result) <= max_ratio *
    flicker(source)`` holds exactly for every pair of frames, and therefore for the clip.
    """
    delta = out.astype(np.float32) - prev_out.astype(np.float32)
    allow = max_ratio * np.abs(src.astype(np.float32) - prev_src.astype(np.float32)).mean(-1, keepdims=True)
    change = np.abs(delta).mean(-1, keepdims=True)
    scale = np.where(change > allow, allow / np.maximum(change, 1e-12), 1.0)
    return np.clip(prev_out.astype(np.float32) + np.trunc(delta * scale), 0, 255).astype(np.uint8)


def neural_style(frames: np.ndarray, style: np.ndarray, vgg: VGG19Features, iterations: int = 100,
                 later_iterations: int | None = None, style_weight: float = 5.0, temporal_weight: float = 200.0,
                 lr: float = 0.02, style_size: int | None = None, max_flicker: float = 1.5,
                 progress=None) -> np.ndarray:
    """Stylise ``frames`` (uint8 ``[T, H, W, C]``) after ``style`` (uint8 ``[h, w, C]``).

    Per frame, Adam on the pixels minimises ``content + style_weight * style + temporal_weight *
    temporal``, each term normalised by the size of its target (so the weights do not depend on
    the feature scale of the network): content = MSE to the frame's ``relu4_2`` features, style =
    MSE of Gram matrices at ``relu1_1 .. relu5_1``, temporal = confidence-weighted MSE to the
    previous stylised frame warped along the motion. The first frame starts from itself and
    runs ``iterations`` steps; every later frame starts from the warped previous result (blended
    with the frame where the warp is not trusted) and runs ``later_iterations`` (default half).
    ``style_size``: the style image is resized so its shorter side is this (default: the
    frames' shorter side).

    ``max_flicker`` (0 = off): the temporal stability bound. Each later frame may change, pixel by
    pixel, at most this many times as much as the source changes there: a hinge term
    (``temporal_weight``) steers the optimisation inside that allowance, and
    :func:`limit_change` enforces it on the result, so ``flicker_ratio(out, frames) <=
    max_flicker``. Where the source is still, the stylisation is still; where it moves, the
    stylisation may move with it.
    """
    check_frames(frames)
    frames = _rgb(frames)
    style = _rgb(np.asarray(style))
    if int(iterations) != iterations or iterations < 1:
        raise KinemaError(f"neural style: iterations must be a whole number >= 1, got {iterations}")
    if not (max_flicker == 0 or max_flicker >= 1) or not math.isfinite(max_flicker):
        raise KinemaError(f"neural style: max_flicker must be 0 (off) or >= 1, got {max_flicker}")
    later = max(1, int(iterations) // 2) if later_iterations is None else int(later_iterations)
    h, w = frames.shape[1:3]
    if min(h, w) < 8:
        raise KinemaError(f"neural style: frames must be at least 8x8 pixels (VGG-19 pools them 3 times "
                          f"before relu4_2), got {w}x{h}")
    side = style_size or min(h, w)
    s = _to_tensor(style)
    scale = side / min(s.shape[-2:])
    s = F.interpolate(s, size=(max(1, round(s.shape[-2] * scale)), max(1, round(s.shape[-1] * scale))),
                      mode="bilinear", antialias=True, align_corners=False)
    vgg = vgg.eval().requires_grad_(False)   # gradients flow to the pixels only
    layers = set(STYLE_LAYERS) | {CONTENT_LAYER}
    with torch.no_grad():
        style_grams = {i: _gram(f) for i, f in vgg(s, STYLE_LAYERS).items()}
    out = np.empty_like(frames)
    prev = None
    for t, frame in enumerate(frames):
        content = _to_tensor(frame)
        with torch.no_grad():
            target = vgg(content, [CONTENT_LAYER])[CONTENT_LAYER]
        allow = None
        if prev is None:
            init, anchor, conf, steps = content.clone(), None, None, int(iterations)
        else:
            if max_flicker:  # per pixel, as a fraction of the 0..1 range: how far this frame may move
                src_change = np.abs(frame.astype(np.float32) - frames[t - 1].astype(np.float32)).mean(-1)
                allow = torch.from_numpy(max_flicker * src_change / 255.0)[None, None]
                before = _to_tensor(prev)
            warped, c = _warp_previous(frames[t - 1], frame, out[t - 1])
            anchor = _to_tensor(warped)                    # float, 0..1
            conf = torch.from_numpy(c)[None, None].float()
            init = conf * anchor + (1 - conf) * content     # untrusted pixels start from the frame
            steps = later
        x = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        # The step size falls linearly to zero: Adam moves every pixel by about ``lr`` per step
        # whatever its gradient, so a constant rate would leave a jitter of that size, i.e. flicker.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            feats = vgg(x, layers)
            loss = F.mse_loss(feats[CONTENT_LAYER], target) / target.square().mean().clamp_min(1e-8)
            style_terms = [F.mse_loss(_gram(feats[i]), g) / g.square().mean().clamp_min(1e-8)
                           for i, g in style_grams.items() if i in feats]
            if style_terms:
                loss = loss + style_weight * sum(style_terms) / len(style_terms)
            if anchor is not None:
                loss = loss + temporal_weight * (conf * (x - anchor).square()).mean() / 0.01
            if allow is not None:  # change beyond the allowance (the result is then clipped to it)
                excess = F.relu((x - before).abs().mean(1, keepdim=True) - allow)
                loss = loss + temporal_weight * excess.square().mean() / 0.01
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        out[t] = _to_uint8(x.detach())
        if allow is not None:
            out[t] = limit_change(out[t - 1], out[t], frames[t - 1], frame, max_flicker)
        prev = out[t]
        if progress is not None:
            progress(t + 1, len(frames))
    return out
