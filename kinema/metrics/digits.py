"""Quality numbers for the built-in datasets that need no pretrained network.

A small CNN is trained on real frames of a built-in dataset (``moving_digits`` or
``bouncing_shapes``, from :func:`kinema.data.builtin.generate_builtin`) to predict the video's
label, plus one extra "none" class trained on junk (noise, blank frames, heavy blur, two
frames of different classes blended together, patch-shuffled frames). Generated videos are then
scored frame by frame:

* ``recognised_frac``: frames whose most likely class is a real class (not "none") with
  probability >= ``threshold`` (0.9);
* ``consistent_frac``: clips whose most frequent predicted class (the clip's class) is also the
  prediction on at least ``consistency`` (80%) of its frames, i.e. 13 of 16 frames: the object
  keeps its identity through the clip. A frame predicted "none" counts against consistency;
* ``histogram``: how many clips got each class (mode collapse shows as a peaked histogram).

For bouncing shapes :func:`score_shapes` adds ``motion_accel``: the median over frames of the
object's acceleration |c[t+1] - 2 c[t] + c[t-1]| (c = the centroid of pixels that differ from the
clip's per-pixel median background), as a fraction of the frame size, averaged over clips. Real
bouncing shapes move at constant velocity apart from bounces, so their value is near 0.

The classifier sees frames converted to gray and resized to 32x32 (bilinear, antialiased), so
RGB input is accepted. It is trained once per (dataset, size, channels, settings) and cached as
safetensors (weights + JSON settings + held-out accuracy) in ``cache_dir``, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.fsutil import atomic_path

INPUT_SIZE = 32  # every frame is resized to 32x32 gray before classification
VERSION = 1  # bump when the network, the junk classes or the training recipe change


@dataclass(frozen=True)
class ClassifierSettings:
    dataset: str = "moving_digits"  # a built-in dataset name with per-video labels
    size: int = 32                  # resolution the real frames are generated at
    channels: int = 1
    train_videos: int = 1500  # each video is one of sklearn's 1,797 digit bitmaps, moving
    test_videos: int = 300
    frames: int = 4           # a few positions per video; more bitmaps beat more frames
    seed: int = 20240
    steps: int = 1000
    batch_size: int = 64

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("KINEMA_CACHE", Path.home() / ".cache" / "kinema"))


def to_gray32(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, C] (C in 1, 3) -> float [N, 1, 32, 32] in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] not in (1, 3):
        raise KinemaError(f"frames must be uint8 [N, H, W, 1|3], got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div(255)
    if x.shape[1] == 3:  # ITU-R BT.601 luma, the usual RGB -> gray weights
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x


class FrameClassifier(nn.Module):
    """Gray 32x32 frames -> logits over ``len(class_names)`` classes (the last one is "none")."""

    def __init__(self, num_classes: int):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        # [N,1,32,32] -> [N,16,16,16] -> [N,32,8,8] -> [N,64,4,4] -> [N,K]; small on purpose:
        # 8x8 source bitmaps need little capacity, and training must take ~a minute on a CPU.
        self.features = nn.Sequential(block(1, 16), block(16, 32), block(32, 64))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 16, num_classes))
        self.class_names: list[str] = []
        self.settings: ClassifierSettings | None = None
        self.accuracy = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1))

    @torch.no_grad()
    def probs(self, frames: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """uint8 [N, H, W, C] -> class probabilities [N, K] (float64)."""
        self.eval()
        dev = next(self.parameters()).device
        out = [F.softmax(self(to_gray32(frames[i:i + batch_size]).to(dev)).double(), 1).cpu()
               for i in range(0, len(frames), batch_size)]
        return torch.cat(out).numpy()


# ---------------------------------------------------------------------------------------------
# Training data.

def _real_frames(s: ClassifierSettings, num_videos: int, seed: int):
    """-> (frames uint8 [V*T, H, W, C], labels int64 [V*T], video labels [V], class names)."""
    from kinema.data.builtin import generate_builtin

    frames, labels, names = [], [], None
    for video, label, class_names in generate_builtin(s.dataset, num_videos, s.frames, s.size, seed,
                                                       channels=s.channels):
        frames.append(np.asarray(video))
        labels.append(int(label))
        names = list(class_names)
    if not names or min(labels) < 0:
        raise KinemaError(f"builtin:{s.dataset}: has no per-video labels to train a classifier on")
    frames = np.stack(frames)  # [V, T, H, W, C]
    v, t = frames.shape[:2]
    return frames.reshape(v * t, *frames.shape[2:]), np.repeat(labels, t), np.asarray(labels), names


def _junk(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Make "none" examples from a real batch x [N,1,32,32] (labels y [N]): five kinds of junk."""
    n = x.shape[0]
    level = torch.rand(n, 1, 1, 1, generator=gen)
    noise = torch.rand(x.shape, generator=gen) * level  # noise at a random level
    flat = level.expand_as(x)  # a flat frame of a random grey
    f = int(torch.randint(4, 9, (1,), generator=gen))  # heavy blur: the blob without its shape
    blur = F.interpolate(F.avg_pool2d(x, f, f, ceil_mode=True), size=x.shape[-2:], mode="bilinear")
    other = torch.randperm(n, generator=gen)  # two classes blended: "ghosting" between identities
    a = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    ghost = torch.where((y[other] != y).view(-1, 1, 1, 1), a * x + (1 - a) * x[other], noise)
    # 8x8 patches shuffled: the right pixel statistics, no shape.
    p = x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(n, 1, 16, 8, 8)[:, :, torch.randperm(16, generator=gen)]
    shuffled = p.reshape(n, 1, 4, 4, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(x.shape)
    kind = torch.randint(0, 5, (n, 1, 1, 1), generator=gen)
    return torch.stack([noise, flat, blur, ghost, shuffled]).gather(0, kind[None].expand(1, *x.shape))[0]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild changes a generator's output shows (gain, offset, noise, slight blur), per frame."""
    n = x.shape[0]
    gain = 0.75 + 0.35 * torch.rand(n, 1, 1, 1, generator=gen)
    offset = 0.08 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = 0.06 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    blur = torch.rand(n, generator=gen) < 0.3
    xb = torch.where(blur.view(-1, 1, 1, 1), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), x)
    return (xb * gain + offset + noise).clamp(0, 1)


def train_classifier(settings: ClassifierSettings, device: str = "cpu", log=print) -> FrameClassifier:
    """Train a frame classifier on real built-in frames; held-out accuracy in ``.accuracy``."""
    xs, ys, _, names = _real_frames(settings, settings.train_videos, settings.seed)
    x_all, y_all = to_gray32(xs), torch.as_tensor(ys)
    k = len(names)  # index k is "none"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # layer initialisation; global RNG restored afterwards
        model = FrameClassifier(k + 1).to(device)
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=settings.steps)
    model.train()
    for step in range(settings.steps):
        idx = torch.randint(0, len(x_all), (settings.batch_size,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        # A quarter of each batch is junk labelled "none".
        j = settings.batch_size // 4
        x = torch.cat([_augment(x[j:], gen), _augment(_junk(x[:j], y[:j], gen), gen)])
        y = torch.cat([y[j:], torch.full((j,), k)])
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log and (step % 200 == 0 or step == settings.steps - 1):
            log(f"classifier {settings.dataset} step {step:5d} loss {loss.item():.4f}")
    # Held-out accuracy: frames of videos from another seed.
    xt, yt, _, _ = _real_frames(settings, settings.test_videos, settings.seed + 1)
    model.class_names = list(names) + ["none"]
    model.settings = settings
    model.accuracy = float((model.probs(xt).argmax(1) == yt).mean())
    return model.eval()


MAX_CLASSIFIER_CLASSES = 1000


def load_classifier(dataset: str = "moving_digits", size: int = 32, channels: int = 1,
                    cache_dir: str | os.PathLike | None = None, device: str = "cpu",
                    settings: ClassifierSettings | None = None, log=print,
                    train_if_missing: bool = True) -> FrameClassifier | None:
    """The cached classifier for these settings; trained (about a minute on a CPU) and saved if
    missing, or None if missing and ``train_if_missing`` is False."""
    from safetensors.torch import load_file, save_file

    s = settings or ClassifierSettings(dataset=dataset, size=size, channels=channels)
    path = Path(cache_dir or default_cache_dir()) / "classifiers" / f"{s.dataset}-{s.size}px-{s.channels}ch-{s.key()}.safetensors"
    if path.exists():
        from kinema.untrusted import layout_mismatch, meta_build, parse_json, read_safetensors_header, state_layout

        found, meta = read_safetensors_header(path)  # bounded; checked before anything is built
        names = parse_json(meta.get("class_names", "null").encode(), path, 2, "class_names metadata")
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSIFIER_CLASSES:
            raise KinemaError(f"{path}: classifier cache must list 1..{MAX_CLASSIFIER_CLASSES} class names; "
                              "delete it to retrain")
        try:
            with meta_build():
                problem = layout_mismatch(state_layout(FrameClassifier(len(names))), found)
            if problem:
                raise ValueError(problem)
            model = FrameClassifier(len(names))
            model.load_state_dict(load_file(str(path)))
            accuracy = float(meta["accuracy"])
        except Exception as err:  # a torn or foreign file: say which, do not guess
            raise KinemaError(f"{path}: unreadable classifier cache ({err}); delete it to retrain") from None
        model.class_names, model.settings, model.accuracy = names, s, accuracy
        return model.to(device).eval()
    if not train_if_missing:
        return None
    model = train_classifier(s, device=device, log=log)
    meta = {"class_names": json.dumps(model.class_names), "accuracy": repr(model.accuracy),
            "settings": json.dumps(asdict(s)), "version": str(VERSION)}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    if log:
        log(f"classifier {s.dataset} {s.size}px: held-out frame accuracy {model.accuracy:.4f}, saved {path}")
    return model


# ---------------------------------------------------------------------------------------------
# Scores.

def _check_videos(videos) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] not in (1, 3):
        raise KinemaError(f"videos must be uint8 [B, T, H, W, 1|3], got {videos.dtype} {videos.shape}")
    return videos


def frame_predictions(videos, classifier: FrameClassifier) -> tuple[np.ndarray, np.ndarray]:
    """uint8 videos [B, T, H, W, C] -> (most likely class int [B, T], its probability [B, T]).

    The last class index (``len(classifier.class_names) - 1``) is "none"."""
    videos = _check_videos(videos)
    b, t = videos.shape[:2]
    probs = classifier.probs(videos.reshape(b * t, *videos.shape[2:])).reshape(b, t, -1)
    return probs.argmax(-1), probs.max(-1)


def clip_classes(pred: np.ndarray, none: int, consistency: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame classes [B, T] -> (the clip's class [B], whether the clip holds it [B]).

    The clip's class is its most frequent per-frame prediction (ties -> lowest index); the clip
    holds it when that class is not "none" and is predicted on at least ``ceil(consistency * T)``
    frames."""
    t = pred.shape[1]
    counts = np.stack([(pred == c).sum(1) for c in range(none + 1)], 1)  # [B, K+1]
    clip_class = counts.argmax(1)
    return clip_class, (clip_class != none) & (counts.max(1) >= np.ceil(consistency * t - 1e-9))


def score_classes(videos, classifier: FrameClassifier, threshold: float = 0.9,
                  consistency: float = 0.8, labels=None) -> dict:
    """videos uint8 [B, T, H, W, C] -> recognised_frac, consistent_frac, histogram (see module doc).

    With ``labels`` (int [B], the classes a conditional generator was asked for) the result also
    has ``label_match_frac``: clips that are consistent AND show the requested class.
    """
    videos = _check_videos(videos)
    b, t = videos.shape[:2]
    pred, conf = frame_predictions(videos, classifier)
    none = len(classifier.class_names) - 1
    recognised = (pred != none) & (conf >= threshold)
    clip_class, consistent = clip_classes(pred, none, consistency)
    names = classifier.class_names
    extra = {}
    if labels is not None:
        extra["label_match_frac"] = float((consistent & (clip_class == np.asarray(labels))).mean())
    return {**extra,
        "recognised_frac": float(recognised.mean()),
        "consistent_frac": float(consistent.mean()),
        "histogram": {names[c]: int((clip_class == c).sum()) for c in range(none + 1)},
        "num_clips": int(b), "frames": int(t), "threshold": threshold, "consistency": consistency,
        "classifier_accuracy": classifier.accuracy,
    }


def score_digits(videos, classifier: FrameClassifier | None = None, cache_dir=None, device: str = "cpu",
                 threshold: float = 0.9, consistency: float = 0.8, labels=None) -> dict:
    """Moving-digits quality of uint8 videos [B, T, H, W, C] (C 1 or 3; any square size)."""
    videos = _check_videos(videos)
    if classifier is None:
        classifier = load_classifier("moving_digits", size=videos.shape[2], channels=1, cache_dir=cache_dir, device=device)
    return score_classes(videos, classifier, threshold, consistency, labels)


def motion_accel(videos) -> float:
    """Mean over clips of the median |centroid acceleration| / frame size (see module doc)."""
    videos = _check_videos(videos)
    x = torch.as_tensor(videos).float().mean(-1)  # [B, T, H, W] gray
    b, t, h, w = x.shape
    if t < 3:
        raise KinemaError(f"motion needs at least 3 frames per clip, got {t}")
    fg = (x - x.median(dim=1, keepdim=True).values).abs()  # what moves: differs from the background
    mass = fg.sum((2, 3)).clamp_min(1e-6)  # [B, T]
    cy = (fg.sum(3) * torch.arange(h)).sum(2) / mass
    cx = (fg.sum(2) * torch.arange(w)).sum(2) / mass
    c = torch.stack([cy / h, cx / w], -1).double()  # [B, T, 2] as fractions of the frame
    acc = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).norm(dim=-1)  # [B, T-2]
    return float(acc.median(dim=1).values.mean())


def score_shapes(videos, classifier: FrameClassifier | None = None, cache_dir=None, device: str = "cpu",
                 threshold: float = 0.9, consistency: float = 0.8, labels=None) -> dict:
    """Bouncing-shapes quality: shape recognition/consistency plus ``motion_accel``."""
    videos = _check_videos(videos)
    if classifier is None:
        classifier = load_classifier("bouncing_shapes", size=videos.shape[2], channels=1, cache_dir=cache_dir, device=device)
    out = score_classes(videos, classifier, threshold, consistency, labels)
    out["motion_accel"] = motion_accel(videos)
    return out
