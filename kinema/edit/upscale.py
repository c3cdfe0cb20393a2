"""Learned super-resolution: a small x2/x4 upscaler trained on the user's own clips.

The network (ESPCN-style, sub-pixel convolution) looks at the low-resolution frame and predicts
only what bicubic interpolation gets wrong:

    out = bicubic(lr) + pixel_shuffle(tail(body(head(lr))))      lr [N, C, h, w] -> [N, C, s*h, s*w]

The tail starts near zero, so an untrained model is bicubic (to within a grey level) and
training moves it away only where the loss says so. Training pairs come from the archive itself: a high-resolution frame and
its area-downscaled copy (mean of each s x s block, which is what a camera or ``resize --filter
area`` produces). Clips are split into training and held-out sets (by source video when the
archive records them, so a held-out clip never overlaps a training one), and the saved JSON
records the held-out PSNR of the model against bicubic.

Saved as ``NAME.safetensors`` (weights) + ``NAME.json`` (architecture, metrics, provenance).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinema.edit.ops import check_frames
from kinema.errors import KinemaError
from kinema.fsutil import atomic_path, atomic_write_text
from kinema.models.options import Choice, Int
from kinema.models.options import check as check_options

FORMAT = "kinema-upscaler-1"


class Upscaler(nn.Module):
    """Residual-over-bicubic sub-pixel upscaler. Works on float ``[N, C, h, w]`` in [0, 1]."""

    def __init__(self, scale: int = 2, channels: int = 3, width: int = 32, depth: int = 4):
        super().__init__()
        if scale not in (2, 3, 4):
            raise KinemaError(f"upscaler: scale must be 2, 3 or 4, got {scale}")
        self.scale, self.channels, self.width, self.depth = scale, channels, width, depth
        self.head = nn.Conv2d(channels, width, 5, padding=2)
        self.body = nn.Sequential(*[m for _ in range(depth) for m in (nn.Conv2d(width, width, 3, padding=1),
                                                                      nn.LeakyReLU(0.1))])
        # Sub-pixel tail: C * s^2 channels rearranged into an s-times larger image.
        self.tail = nn.Conv2d(width, channels * scale * scale, 3, padding=1)
        # A near-zero tail: the untrained model is bicubic to within a grey level, yet gradients
        # still reach the body from the first step (an exactly zero tail would block them).
        nn.init.normal_(self.tail.weight, 0.0, 1e-3)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        feat = self.body(F.leaky_relu(self.head(lr), 0.1))
        return base + F.pixel_shuffle(self.tail(feat), self.scale)


@dataclass(frozen=True)
class UpscalerTrainConfig:
    scale: int = 2
    width: int = 32
    depth: int = 4
    steps: int = 2000           # optimizer steps (stops earlier when ``seconds`` runs out)
    seconds: float | None = None
    batch: int = 16             # patches per step
    patch: int = 32             # high-resolution patch side (multiple of scale)
    lr: float = 2e-3
    holdout: float = 0.2        # fraction of clips (or source videos) kept for evaluation
    eval_clips: int = 32        # held-out clips used for the final PSNR
    seed: int = 0


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline: ``[N, C, h, w]`` -> ``[N, C, s*h, s*w]`` bicubic, clamped to [0, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Area downscale (mean of each ``s x s`` block) of ``[N, C, H, W]``, H and W multiples of s."""
    return F.avg_pool2d(hr, scale)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of ``[N, C, H, W]`` images in [0, 1], after rounding both to 8 bits
    (the numbers describe the frames a user actually gets)."""
    a8, b8 = (a.clamp(0, 1) * 255).round(), (b.clamp(0, 1) * 255).round()
    mse = (a8 - b8).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0 ** 2 / mse)


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    # uint8 [N, H, W, C] -> float [N, C, H, W] in [0, 1] (images, not model videos: no [-1, 1]).
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)


def _name(archive) -> str:
    return str(getattr(archive, "path", "archive"))


def split_clips(archive, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip indices ``(train, held_out)``. Whole source videos go to one side when the archive
    lists which clips each video gave (clips of one video overlap in content)."""
    if not 0 < holdout < 1:
        raise KinemaError(f"train-upscaler: holdout must be between 0 and 1, got {holdout}")
    n = archive.num_clips
    if n < 2:
        raise KinemaError(f"{_name(archive)}: needs at least 2 clips to hold some out, has {n}")
    rng = np.random.default_rng(seed)
    groups = _clip_groups(archive)
    if groups is None or len(groups) < 2:
        groups = [[i] for i in range(n)]
    order = rng.permutation(len(groups))
    n_hold = min(len(groups) - 1, max(1, round(len(groups) * holdout)))
    held = np.sort(np.concatenate([np.asarray(groups[g], dtype=np.int64) for g in order[:n_hold]]))
    train = np.sort(np.concatenate([np.asarray(groups[g], dtype=np.int64) for g in order[n_hold:]]))
    return train, held


def _clip_groups(archive) -> list[list[int]] | None:
    """Clip indices grouped by source video (``archive.clip_video``: video index per clip), or None."""
    owner = getattr(archive, "clip_video", None)
    if owner is None or len(owner) != archive.num_clips:
        return None
    owner = np.asarray(owner)
    return [np.flatnonzero(owner == v).tolist() for v in np.unique(owner)]


def _random_patches(archive, clips: np.ndarray, cfg: UpscalerTrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """``cfg.batch`` random HR patches ``[B, C, P, P]`` in [0, 1], one random frame of a random clip each."""
    h, w = archive.resolution
    p = min(cfg.patch, h, w) // cfg.scale * cfg.scale
    pick = rng.choice(clips, size=cfg.batch)
    video = archive.clips(np.sort(pick))          # [B, T, H, W, C] uint8
    t = rng.integers(0, video.shape[1], size=cfg.batch)
    y = rng.integers(0, h - p + 1, size=cfg.batch)
    x = rng.integers(0, w - p + 1, size=cfg.batch)
    patches = np.stack([video[b, t[b], y[b]:y[b] + p, x[b]:x[b] + p] for b in range(cfg.batch)])
    hr = _frames_to_tensor(patches)
    # Random flips/transposes: free extra data with the same statistics.
    if rng.random() < 0.5:
        hr = hr.flip(3)
    if rng.random() < 0.5:
        hr = hr.transpose(2, 3)
    return hr


@torch.no_grad()
def evaluate(model: Upscaler, archive, clips: np.ndarray, max_clips: int = 32) -> dict:
    """Mean per-frame PSNR (dB) of the model and of bicubic on full frames of ``clips``."""
    model.eval()
    s = model.scale
    h, w = archive.resolution
    ours, base = [], []
    for i in clips[:max_clips]:
        frames = archive.clip(int(i))[:, : h // s * s, : w // s * s]   # [T, H, W, C]
        hr = _frames_to_tensor(frames)
        lr = downscale(hr, s)
        ours.append(psnr(model(lr), hr))
        base.append(psnr(bicubic_upscale(lr, s), hr))
    ours, base = torch.cat(ours).mean().item(), torch.cat(base).mean().item()
    return {"psnr": ours, "psnr_bicubic": base, "gain_db": ours - base,
            "clips": int(min(len(clips), max_clips))}


def train_upscaler(archive, cfg: UpscalerTrainConfig = UpscalerTrainConfig(), log=print) -> tuple[Upscaler, dict]:
    """Train on ``archive`` (an open :class:`kinema.data.Archive`); returns ``(model, report)``
    where report holds the held-out PSNR of model and bicubic and the training details."""
    h, w = archive.resolution
    if min(h, w) < 2 * cfg.scale:
        raise KinemaError(f"{_name(archive)}: frames {w}x{h} are too small for x{cfg.scale} training")
    train_clips, held = split_clips(archive, cfg.holdout, cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = Upscaler(cfg.scale, archive.channels, cfg.width, cfg.depth)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        # Cosine decay over the planned run (steps, or the time budget if that ends first), so a
        # run cut short by ``seconds`` still ends with small, converging steps.
        done = (step - 1) / cfg.steps
        if cfg.seconds:
            done = max(done, (time.perf_counter() - t0) / cfg.seconds)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        model.train()
        hr = _random_patches(archive, train_clips, cfg, rng)
        loss = F.l1_loss(model(downscale(hr, cfg.scale)), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step % 200 == 0 or step == 1):
            log(f"step {step}/{cfg.steps}  l1 {loss.item():.4f}  {time.perf_counter() - t0:.0f}s")
        if cfg.seconds is not None and time.perf_counter() - t0 > cfg.seconds:
            break
    report = evaluate(model, archive, held, cfg.eval_clips)
    report.update(steps=step, seconds=round(time.perf_counter() - t0, 1),
                  train_clips=int(len(train_clips)), held_out_clips=int(len(held)))
    if log:
        log(f"held-out PSNR {report['psnr']:.2f} dB vs bicubic {report['psnr_bicubic']:.2f} dB "
            f"({report['gain_db']:+.2f} dB) on {report['clips']} clips")
    return model, report


def save_upscaler(path: str | Path, model: Upscaler, meta: dict) -> None:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise KinemaError(f"{path}: upscaler file must end in .safetensors")
    config = {"format": FORMAT, "scale": model.scale, "channels": model.channels,
              "width": model.width, "depth": model.depth, "meta": meta}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(path.with_suffix(".json"), json.dumps(config, indent=2))


# Bounds of the sidecar's options (checked before anything is built; see kinema.untrusted).
UPSCALER_OPTIONS = dict(scale=Choice(2, 3, 4), channels=Choice(1, 3), width=Int(1, 1024), depth=Int(0, 64))
MAX_CONFIG_BYTES = 1 << 20


def load_upscaler(path: str | Path, device: str = "cpu") -> tuple[Upscaler, dict]:
    """Read an upscaler written by :func:`save_upscaler`; clear errors for missing/bad files.

    The sidecar's options are checked against their bounds and the model built on the meta device
    is compared with the safetensors header before any weight is read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kinema.untrusted import layout_mismatch, meta_build, read_json, read_safetensors_header, state_layout

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    cfg_path = path.with_suffix(".json")
    for p in (path, cfg_path):
        if not p.is_file():
            raise KinemaError(f"{p}: upscaler file not found")
    config = read_json(cfg_path, MAX_CONFIG_BYTES, max_depth=8, what="upscaler config")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise KinemaError(f"{cfg_path}: not a kinema upscaler (format is {str(found)[:40]!r}, expected {FORMAT!r})")
    options = {k: config.get(k) for k in UPSCALER_OPTIONS}
    check_options("upscaler", UPSCALER_OPTIONS, options)
    with meta_build():
        model = Upscaler(**options)
    problem = layout_mismatch(state_layout(model), read_safetensors_header(path)[0])
    if problem:
        raise KinemaError(f"{cfg_path}: options {options} do not fit the weights in {path.name}: {problem}")
    try:
        model.load_state_dict(load_file(str(path)), assign=True)
    except (SafetensorError, OSError, ValueError) as err:
        raise KinemaError(f"{path}: not a valid kinema upscaler ({str(err).splitlines()[0][:160]})") from None
    return model.to(device).eval(), config


@torch.no_grad()
def upscale(frames: np.ndarray, model: Upscaler, batch: int = 8, device: str = "cpu") -> np.ndarray:
    """Upscale uint8 ``[T, H, W, C]`` to ``[T, s*H, s*W, C]``, ``batch`` frames at a time.

    A 1-channel model on colour frames treats each channel as its own image; a 3-channel model
    on gray frames sees the gray copied to three channels and returns gray.
    """
    check_frames(frames, "upscale input")
    t, h, w, c = frames.shape
    model = model.to(device).eval()
    s = model.scale
    out = np.empty((t, h * s, w * s, c), dtype=np.uint8)
    for i in range(0, t, batch):
        x = _frames_to_tensor(frames[i:i + batch]).to(device)       # [b, C, h, w]
        if model.channels == 1 and c == 3:
            y = model(x.reshape(-1, 1, h, w)).reshape(-1, 3, h * s, w * s)
        elif model.channels == 3 and c == 1:
            y = model(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
        else:
            y = model(x)
        out[i:i + batch] = (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out
