"""Motion measures: does generated video move like the real video it imitates?

Two families, both comparing a set of generated clips with a set of real clips (see
``docs/motion.md`` for the formulas, thresholds and how to read them):

* **Object motion** (built-in single-object datasets ``moving_digits`` and ``bouncing_shapes``):
  per clip, the object's trajectory is the intensity-weighted centroid of the foreground of each
  frame; from it come the mean speed, the maximum travel from the first frame, the number of
  bounces (direction reversals per axis, with a dead-band) and whether the clip is near-static.
  The dataset's frame classifier (:mod:`kinema.metrics.digits`) adds identity held (one class
  through >= 14 of 16 frames, scaled for other lengths) and recognised frames (p >= 0.9).
* **Generic motion** (any footage, no object assumed): histograms of per-pixel temporal
  differences and of block-matching displacements between consecutive frames; the motion
  distance is the mean of the two histograms' Jensen-Shannon divergences (base 2, in [0, 1]),
  and a clip is static when its mean block displacement is below 1% of the side per frame.

Entry points::

    report = motion_report(fake, real, dataset="moving_digits")   # dict, see MotionReference.report
    print(format_report(report)); summary(report)                 # table; flat {name: float}
    per_clip = object_motion(videos, "moving_digits")             # dict of per-clip arrays

Videos are uint8 ``[B, T, H, W, C]`` (C 1 or 3) or model tensors ``[B, C, T, H, W]`` in [-1, 1].
Everything is deterministic (no sampling) and runs on the CPU in well under a second for 64
clips of 16 frames once the classifier is loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kinema.errors import KinemaError

# Datasets whose clips show one object on a black background (object measures apply).
OBJECT_DATASETS = ("moving_digits", "bouncing_shapes")

# Object trajectory.
FOREGROUND_MARGIN = 0.1     # a pixel is foreground by how much it exceeds the frame's median (0..1)
MIN_MASS = 1.0              # a frame with less foreground mass (in full-pixel units) has no object
STATIC_SPEED = 0.01         # near-static clip: mean speed below 1% of the side per frame
BOUNCE_DEADBAND = 0.02      # a reversal counts after the object came back 2% of the side
IDENTITY_FRAMES = 14 / 16   # identity held: one class in >= 14 of 16 frames (ceil(0.875 T))
RECOGNISED_P = 0.9          # a frame is recognised when its class (not "none") has p >= 0.9

# Generic motion.
WORK_SIZE = 32              # frames are compared as 32x32 gray (kinema.metrics.digits.to_gray32)
BLOCK, BLOCK_STRIDE, SEARCH = 8, 4, 4   # 8x8 blocks every 4 px (BLOCK = 2 * BLOCK_STRIDE), +-4 px
TEXTURE_STD = 0.03          # blocks flatter than this (std of gray in 0..1) have no measurable motion
DIFF_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)  # |frame difference| bins, grey levels
DISP_EDGES = (0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.125, math.inf)  # fraction of side

# Targets of the motion benchmark (bench/bench_demo.py): (low, high), None = unbounded.
TARGETS = {
    "default": {"speed_ratio": (0.8, 1.25), "travel_ratio": (0.75, None), "static_frac": (None, 0.05),
                "identity_held": (0.8, None), "recognised": (0.8, None)},
    "15min": {"speed_ratio": (0.9, 1.1), "travel_ratio": (0.9, 1.1), "static_frac": (None, 0.05),
              "identity_held": (0.9, None), "recognised": (0.9, None)},
    # Extension: 64-frame clips of a model trained on 16; tail = speed of the last 16 frames / first 16.
    "extension": {"speed_ratio_64": (0.8, 1.2), "tail_ratio": (0.8, 1.25), "static_frac_64": (None, 0.05)},
}


# ---------------------------------------------------------------------------------------------
# Input.

def as_videos(videos) -> np.ndarray:
    """uint8 ``[B, T, H, W, C]`` (numpy or torch) or float model tensors ``[B, C, T, H, W]`` in
    [-1, 1] -> uint8 numpy ``[B, T, H, W, C]`` with C in (1, 3)."""
    if isinstance(videos, torch.Tensor):
        if videos.is_floating_point():
            from kinema.io import to_uint8

            if videos.dim() != 5:
                raise KinemaError(f"model videos must be float [B, C, T, H, W], got shape {tuple(videos.shape)}")
            videos = to_uint8(videos)
        else:
            videos = videos.cpu().numpy()
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] not in (1, 3):
        raise KinemaError(f"videos must be uint8 [B, T, H, W, 1|3] or float [B, C, T, H, W], "
                          f"got {videos.dtype} {videos.shape}")
    if videos.shape[1] < 2:
        raise KinemaError(f"motion needs at least 2 frames per clip, got {videos.shape[1]}")
    return videos


def builtin_dataset_of(source: str) -> str | None:
    """The built-in dataset behind a data source: ``builtin:NAME``, a bare built-in NAME, or an
    archive folder prepared from one (its index says which); None for anything else."""
    from kinema.data.builtin import BUILTINS

    source = str(source)
    if source.startswith("builtin:"):
        return source.split(":", 1)[1]
    if source in BUILTINS and not Path(source).exists():
        return source
    try:
        index = json.loads((Path(source) / "index.json").read_text(encoding="utf-8"))
        return index.get("settings", {}).get("builtin")
    except (OSError, ValueError, AttributeError):
        return None


def _gray(videos: np.ndarray) -> torch.Tensor:
    """uint8 [B, T, H, W, C] -> float32 [B, T, H, W] in [0, 1] (BT.601 luma for RGB)."""
    x = torch.from_numpy(np.ascontiguousarray(videos)).float().div_(255)
    if x.shape[-1] == 3:
        return x @ torch.tensor([0.299, 0.587, 0.114])
    return x[..., 0]


def _ratio(fake: float, real: float) -> float:
    return fake / real if real > 0 else (math.nan if fake > 0 else 1.0)


# ---------------------------------------------------------------------------------------------
# Object motion.

def trajectories(videos) -> tuple[np.ndarray, np.ndarray]:
    """Object centroid per frame -> (float64 [B, T, 2] as (y, x) fractions of the side, bool
    [B, T] frame has an object).

    Foreground weight of a pixel = max(0, gray - median gray of its frame - FOREGROUND_MARGIN);
    the centroid is the weighted mean of pixel centres. The median is the background level
    whatever its shade (the object covers well under half the frame). Frames without foreground
    take the centroid of the nearest frame that has one (a clip without any stays at the centre).
    """
    g = _gray(as_videos(videos))
    b, t, h, w = g.shape
    bg = g.flatten(2).median(-1).values  # [B, T]
    wgt = (g - bg[..., None, None] - FOREGROUND_MARGIN).clamp_min_(0)
    mass = wgt.sum((2, 3)).double()
    cy = (wgt.sum(3).double() * (torch.arange(h, dtype=torch.float64) + 0.5)).sum(2) / mass.clamp_min(1e-12) / h
    cx = (wgt.sum(2).double() * (torch.arange(w, dtype=torch.float64) + 0.5)).sum(2) / mass.clamp_min(1e-12) / w
    c = torch.stack([cy, cx], -1).numpy()
    valid = (mass >= MIN_MASS * (1 - FOREGROUND_MARGIN)).numpy()
    for i in np.flatnonzero(~valid.all(1)):  # fill frames without an object from the nearest one
        ok = np.flatnonzero(valid[i])
        if len(ok) == 0:
            c[i] = 0.5
            continue
        nearest = ok[np.abs(np.arange(t)[:, None] - ok[None]).argmin(1)]
        c[i] = c[i, nearest]
    return c, valid


def count_bounces(c: np.ndarray, deadband: float = BOUNCE_DEADBAND) -> np.ndarray:
    """Direction reversals per clip of trajectories ``[B, T, 2]``, summed over the two axes.

    Per axis a running extreme is kept in the current direction of travel; a reversal counts when
    the position comes back from that extreme by more than ``deadband`` (jitter smaller than the
    dead-band never counts; the first direction is set once the object has moved ``deadband``).
    """
    p = np.asarray(c, np.float64)
    p = p.transpose(0, 2, 1).reshape(-1, p.shape[1])  # [B*2, T]
    direction = np.zeros(len(p), np.int8)
    lo, hi = p[:, 0].copy(), p[:, 0].copy()  # running min/max of the current leg
    count = np.zeros(len(p), np.int64)
    for t in range(1, p.shape[1]):
        x = p[:, t]
        up, down = direction == 1, direction == -1
        # Undecided: the first move of more than the dead-band sets the direction.
        start_up = (direction == 0) & (x - lo > deadband)
        start_down = (direction == 0) & ~start_up & (hi - x > deadband)
        turn_down = up & (hi - x > deadband)
        turn_up = down & (x - lo > deadband)
        count += turn_down | turn_up
        direction[start_up | turn_up] = 1
        direction[start_down | turn_down] = -1
        # The leg's extreme: reset on a turn, else extended.
        lo = np.where(turn_up | start_up, x, np.where(turn_down | start_down, x, np.minimum(lo, x)))
        hi = np.where(turn_down | start_down, x, np.where(turn_up | start_up, x, np.maximum(hi, x)))
    return count.reshape(-1, 2).sum(1)


def _classifier_for(dataset: str, videos: np.ndarray, classifier, cache_dir, device):
    """``classifier``: a FrameClassifier, None (load, training it if missing), "cached" (load only
    if cached, else skip) or False (skip)."""
    if classifier is False or dataset not in OBJECT_DATASETS:
        return None
    if classifier is None or classifier == "cached":
        from kinema.metrics.digits import load_classifier

        return load_classifier(dataset, size=videos.shape[2], channels=1, cache_dir=cache_dir, device=device,
                               train_if_missing=classifier is None)
    return classifier


def object_motion(videos, dataset: str = "moving_digits", classifier=None, cache_dir=None,
                  device: str = "cpu") -> dict[str, np.ndarray]:
    """Per-clip object measures of uint8 ``[B, T, H, W, C]`` (or model tensors) -> dict of arrays [B]:

    ``speed`` (mean |c[t+1] - c[t]| over the clip, fraction of the side per frame), ``travel``
    (max |c[t] - c[0]|), ``bounces`` (direction reversals, both axes), ``static`` (speed <
    STATIC_SPEED), ``has_object`` (fraction of frames with foreground), and with a classifier
    ``identity_held`` (bool) and ``recognised`` (fraction of frames recognised). Also
    ``trajectory`` [B, T, 2]. ``classifier``: see ``_classifier_for`` (False: no identity).
    """
    if dataset not in OBJECT_DATASETS:
        raise KinemaError(f"object motion needs one of the single-object datasets {', '.join(OBJECT_DATASETS)}; "
                          f"got {dataset!r} (use generic_motion for other footage)")
    videos = as_videos(videos)
    c, valid = trajectories(videos)
    step = np.linalg.norm(np.diff(c, axis=1), axis=-1)  # [B, T-1]
    speed = step.mean(1)
    out = {"trajectory": c, "speed": speed, "travel": np.linalg.norm(c - c[:, :1], axis=-1).max(1),
           "bounces": count_bounces(c), "static": speed < STATIC_SPEED, "has_object": valid.mean(1)}
    clf = _classifier_for(dataset, videos, classifier, cache_dir, device)
    if clf is not None:
        from kinema.metrics.digits import clip_classes, frame_predictions

        pred, conf = frame_predictions(videos, clf)
        none = len(clf.class_names) - 1
        out["identity_held"] = clip_classes(pred, none, IDENTITY_FRAMES)[1]
        out["recognised"] = ((pred != none) & (conf >= RECOGNISED_P)).mean(1)
    return out


def _object_summary(per_clip: dict) -> dict[str, float]:
    """Per-clip arrays -> the set's values (means over clips)."""
    names = {"speed": "speed", "travel": "travel", "static": "static_frac", "bounces": "bounce_rate",
             "identity_held": "identity_held", "recognised": "recognised"}
    return {out: float(np.mean(per_clip[k])) for k, out in names.items() if k in per_clip}


# ---------------------------------------------------------------------------------------------
# Generic motion (any footage).

def _blocks(x: torch.Tensor) -> torch.Tensor:
    """Means over BLOCK x BLOCK windows every BLOCK_STRIDE px of [N, 1, S, S] (BLOCK = 2 strides:
    4x4 means, then each 2x2 group of them; 4x cheaper than one 8x8 pooling)."""
    q = F.avg_pool2d(x, BLOCK_STRIDE)
    return (q[..., :-1, :-1] + q[..., 1:, :-1] + q[..., :-1, 1:] + q[..., 1:, 1:]) / 4


def _block_motion(g0: torch.Tensor, g1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block matching g0 -> g1 (float [N, 1, S, S]) -> (displacement magnitude in pixels [N, K],
    textured-block mask [N, K]); K blocks of BLOCK px every BLOCK_STRIDE px.

    For each block of g0 the displacement d in [-SEARCH, SEARCH]^2 minimising the mean absolute
    difference to g1 shifted by d (replicate padding; a tiny penalty on |d|^2 prefers the
    shortest of equal matches), refined to sub-pixel by a parabola through the neighbouring costs.
    """
    r, n = SEARCH, 2 * SEARCH + 1
    s = g0.shape[-1]
    pad = F.pad(g1, (r, r, r, r), mode="replicate")
    costs = []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = pad[..., r + dy:r + dy + s, r + dx:r + dx + s]
            costs.append(_blocks((shifted - g0).abs()) + 1e-4 * (dy * dy + dx * dx) / (r * r))
    cost = torch.cat(costs, 1)  # [N, n*n, by, bx]
    cost = cost.flatten(2).transpose(1, 2)  # [N, K, n*n]
    best = cost.argmin(-1)
    iy, ix = best // n, best % n
    at = lambda y, x: cost.gather(-1, (y.clamp(0, n - 1) * n + x.clamp(0, n - 1))[..., None]).squeeze(-1)  # noqa: E731

    def refine(i, a, c):
        """Sub-pixel offset of index i from the costs a (at i - 1), b (at i), c (at i + 1)."""
        b = at(iy, ix)
        den = a - 2 * b + c
        # No refinement at the search border, or for an exact match (a frozen block stays at 0).
        inner = (i > 0) & (i < n - 1) & (den > 1e-9) & (b > 1e-4)
        off = torch.where(inner, 0.5 * (a - c) / den.clamp_min(1e-9), torch.zeros_like(b))
        return (i - r).float() + off.clamp(-0.5, 0.5)

    dy = refine(iy, at(iy - 1, ix), at(iy + 1, ix))
    dx = refine(ix, at(iy, ix - 1), at(iy, ix + 1))
    mean = _blocks(g0)
    var = (_blocks(g0 * g0) - mean * mean).clamp_min(0)
    textured = (var.flatten(1) > TEXTURE_STD ** 2)
    return torch.sqrt(dy * dy + dx * dx), textured


def generic_motion(videos, batch_frames: int = 4096) -> dict[str, np.ndarray]:
    """Per-clip generic motion statistics of uint8 ``[B, T, H, W, C]`` (or model tensors):

    ``diff_hist`` int64 [B, len(DIFF_EDGES) - 1]: counts of |gray[t+1] - gray[t]| per pixel (grey
    levels, frames as 32x32 gray); ``disp_hist`` int64 [B, len(DISP_EDGES) - 1]: counts of block
    displacement magnitudes (fraction of the side) over textured blocks; ``displacement`` float [B]:
    mean displacement magnitude over the clip's textured blocks (0 if none); ``static`` bool [B]:
    displacement < STATIC_SPEED.
    """
    from kinema.metrics.digits import to_gray32

    videos = as_videos(videos)
    b, t = videos.shape[:2]
    g = torch.cat([to_gray32(videos.reshape(b * t, *videos.shape[2:])[i:i + batch_frames])
                   for i in range(0, b * t, batch_frames)]).reshape(b, t, 1, WORK_SIZE, WORK_SIZE)
    diff = (g[:, 1:] - g[:, :-1]).abs().mul_(255).flatten(1)  # [B, (T-1)*S*S] grey levels
    d_edges = torch.tensor(DIFF_EDGES[1:-1], dtype=torch.float32)
    diff_bins = torch.bucketize(diff, d_edges, right=True)
    nd = len(DIFF_EDGES) - 1
    diff_hist = torch.zeros(b, nd, dtype=torch.int64).scatter_add_(1, diff_bins, torch.ones_like(diff_bins))
    mags, masks = [], []
    pairs_per_batch = max(1, batch_frames // max(t - 1, 1))
    for i in range(0, b, pairs_per_batch):
        gi = g[i:i + pairs_per_batch]
        m, k = _block_motion(gi[:, :-1].reshape(-1, 1, WORK_SIZE, WORK_SIZE), gi[:, 1:].reshape(-1, 1, WORK_SIZE, WORK_SIZE))
        mags.append(m.reshape(len(gi), -1) / WORK_SIZE)
        masks.append(k.reshape(len(gi), -1))
    mag, mask = torch.cat(mags).double(), torch.cat(masks)
    v_edges = torch.tensor(DISP_EDGES[1:-1], dtype=torch.float64)
    bins = torch.bucketize(mag, v_edges, right=True)
    nv = len(DISP_EDGES) - 1
    disp_hist = torch.zeros(b, nv, dtype=torch.int64).scatter_add_(1, bins, mask.long())
    n = mask.sum(1)
    displacement = torch.where(n > 0, (mag * mask).sum(1) / n.clamp_min(1), torch.zeros_like(mag[:, 0]))
    return {"diff_hist": diff_hist.numpy(), "disp_hist": disp_hist.numpy(), "displacement": displacement.numpy(),
            "static": displacement.numpy() < STATIC_SPEED}


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two histograms (normalised here)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.sum() <= 0 and q.sum() <= 0:
        return 0.0
    if p.sum() <= 0 or q.sum() <= 0:
        return 1.0  # one side has no samples at all: maximally different
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


# ---------------------------------------------------------------------------------------------
# Reports.

class MotionReference:
    """The real side of the comparison, computed once: ``MotionReference(real, dataset).report(fake)``.

    ``dataset``: a built-in name (``moving_digits`` / ``bouncing_shapes`` add the object measures),
    or None (generic measures only). ``classifier``: a FrameClassifier, None (load; trains and
    caches it the first time, about a minute), "cached" (only if already cached) or False.
    """

    def __init__(self, real, dataset: str | None = None, classifier=None, cache_dir=None, device: str = "cpu"):
        real = as_videos(real)
        self.dataset = dataset
        self.num_real, self.frames = int(real.shape[0]), int(real.shape[1])
        self.generic = generic_motion(real)
        self.objects = None
        self.classifier = None
        self.device = device
        if dataset in OBJECT_DATASETS:
            self.classifier = _classifier_for(dataset, real, classifier, cache_dir, device)
            self.objects = _object_summary(object_motion(real, dataset, self.classifier if self.classifier else False))

    def report(self, fake, per_clip: bool = False) -> dict:
        """-> {"dataset", "num_fake", "num_real", "frames": [fake, real], "object": {measure:
        {"fake", "real", "ratio"}} or None, "generic": {"motion_distance", "js_diff", "js_disp",
        "static_frac": {...}, "displacement": {...}}} (+ "per_clip" arrays when asked)."""
        fake = as_videos(fake)
        gen = generic_motion(fake)
        real = self.generic

        def triple(f, r):
            return {"fake": f, "real": r, "ratio": _ratio(f, r)}

        js_diff = js_divergence(gen["diff_hist"].sum(0), real["diff_hist"].sum(0))
        js_disp = js_divergence(gen["disp_hist"].sum(0), real["disp_hist"].sum(0))
        out = {"dataset": self.dataset, "num_fake": int(fake.shape[0]), "num_real": self.num_real,
               "frames": [int(fake.shape[1]), self.frames], "object": None,
               "generic": {"motion_distance": (js_diff + js_disp) / 2, "js_diff": js_diff, "js_disp": js_disp,
                           "static_frac": triple(float(gen["static"].mean()), float(real["static"].mean())),
                           "displacement": triple(float(gen["displacement"].mean()), float(real["displacement"].mean()))}}
        if self.objects is not None:
            clips = object_motion(fake, self.dataset, self.classifier if self.classifier else False)
            mine = _object_summary(clips)
            out["object"] = {k: triple(v, self.objects[k]) for k, v in mine.items()}
            if per_clip:
                out["per_clip"] = {k: v.tolist() for k, v in clips.items() if k != "trajectory"}
        return out


def motion_report(fake, real, dataset: str | None = None, classifier=None, cache_dir=None,
                  device: str = "cpu") -> dict:
    """Compare generated clips ``fake`` with real clips ``real`` (see :class:`MotionReference`)."""
    return MotionReference(real, dataset, classifier, cache_dir, device).report(fake)


def summary(report: dict) -> dict[str, float]:
    """A report -> flat {name: float}: speed_ratio, travel_ratio, static_frac, bounce_ratio,
    identity_held, recognised (object measures, generated side) and motion_distance,
    generic_static_frac, displacement_ratio (any footage)."""
    g = report["generic"]
    out = {"motion_distance": g["motion_distance"], "generic_static_frac": g["static_frac"]["fake"],
           "displacement_ratio": g["displacement"]["ratio"]}
    o = report.get("object")
    if o:
        out.update({"speed_ratio": o["speed"]["ratio"], "travel_ratio": o["travel"]["ratio"],
                    "static_frac": o["static_frac"]["fake"], "bounce_ratio": o["bounce_rate"]["ratio"]})
        for k in ("identity_held", "recognised"):
            if k in o:
                out[k] = o[k]["fake"]
    return out


def check_targets(values: dict[str, float], budget: str = "default") -> dict[str, bool | None]:
    """{name: value} (as from :func:`summary`) -> {name: PASS (True) / FAIL (False) / None (not
    measured)} for each target of ``TARGETS[budget]``."""
    if budget not in TARGETS:
        raise KinemaError(f"unknown target set {budget!r}; known: {', '.join(TARGETS)}")
    out = {}
    for name, (lo, hi) in TARGETS[budget].items():
        v = values.get(name)
        if v is None or not math.isfinite(v):
            out[name] = None
        else:
            out[name] = (lo is None or v >= lo) and (hi is None or v <= hi)
    return out


def format_target(name: str, budget: str = "default") -> str:
    lo, hi = TARGETS[budget][name]
    if lo is not None and hi is not None:
        return f"{lo:g}-{hi:g}"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}"


def format_report(report: dict) -> str:
    """A small text table of a report: measure, generated, real, ratio."""
    rows = [("measure", "generated", "real", "ratio")]
    f = lambda v: "-" if v is None else (f"{v:.4f}" if math.isfinite(v) else "nan")  # noqa: E731
    for name, t in (report.get("object") or {}).items():
        rows.append((name, f(t["fake"]), f(t["real"]), f(t["ratio"])))
    g = report["generic"]
    for name in ("static_frac", "displacement"):
        rows.append(("generic " + name, f(g[name]["fake"]), f(g[name]["real"]), f(g[name]["ratio"])))
    rows.append(("motion_distance (JS)", f(g["motion_distance"]), "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# ---------------------------------------------------------------------------------------------
# During training.

class TrainingProbe:
    """Motion of a generator during training on a built-in dataset, cheap enough for every snapshot.

    ``TrainingProbe.for_run(source, resolution, channels, G)`` -> a probe, or None when the run's
    data is not a built-in dataset (or ``num`` is 0). Real clips: ``num`` clips of the dataset drawn
    once (seed ``REAL_SEED``, not the training archive's seed 0); generated clips: seeds 0..num-1.
    Clips are 16 frames long for generators that can extend, else the generator's own length.
    Identity measures use the dataset's classifier only if it is already cached (training it takes
    minutes; ``kinema eval`` or bench/bench_demo.py caches it).
    """

    REAL_SEED = 987654
    FRAMES = 16

    def __init__(self, dataset: str, resolution: int, channels: int, frames: int, num: int = 64,
                 device: str = "cpu"):
        from kinema.data.builtin import generate_builtin

        self.dataset, self.frames, self.num, self.device = dataset, frames, num, device
        real = np.stack([v for v, _, _ in generate_builtin(dataset, num, frames, resolution, self.REAL_SEED,
                                                           channels=channels)])
        self.reference = MotionReference(real, dataset, classifier="cached")

    @classmethod
    def for_run(cls, source: str, resolution: int, channels: int, G, num: int = 64, device: str = "cpu"):
        dataset = builtin_dataset_of(source)
        if not num or dataset is None:
            return None
        frames = cls.FRAMES if getattr(G, "can_extend", False) else int(G.frames)
        return cls(dataset, int(resolution), int(channels), frames, num, device)

    @torch.no_grad()
    def __call__(self, G) -> dict[str, float]:
        """-> {"motion/NAME": value} of ``G`` (summary names), G's train/eval mode restored."""
        from kinema.metrics.sources import generate_clips

        was_training = G.training
        G.eval()
        try:
            fake = np.concatenate([generate_clips(G, range(i, min(i + 16, self.num)), self.frames, self.device)
                                   for i in range(0, self.num, 16)])
        finally:
            G.train(was_training)
        return {f"motion/{k}": float(v) for k, v in summary(self.reference.report(fake)).items()}


# ---------------------------------------------------------------------------------------------
# A generator's full motion score (bench/bench_demo.py, bench/bench_motion.py).

REAL_SEED = TrainingProbe.REAL_SEED  # real reference clips: a seed the training archives do not use


def real_clips(dataset: str, num: int, frames: int, resolution: int, channels: int, seed: int = REAL_SEED) -> np.ndarray:
    """``num`` clips of built-in ``dataset``: uint8 [num, frames, resolution, resolution, channels]."""
    from kinema.data.builtin import generate_builtin

    return np.stack([v for v, _, _ in generate_builtin(dataset, num, frames, resolution, seed, channels=channels)])


def score_generator(G, dataset: str, num: int = 64, frames: int = 16, truncation: float = 1.0, config=None,
                    extension_frames: int = 64, classifier=None, device: str = "cpu") -> dict:
    """Every motion measure of generator ``G`` (seeds 0..num-1, as ``kinema generate`` draws them)
    against ``num`` real clips of built-in ``dataset``.

    -> {"report": the 16-frame report, "values": flat {name: value} (:func:`summary` plus
    ``speed``/``real_speed``, and, for generators that can extend to ``extension_frames``:
    ``speed_ratio_64`` (speed over the whole long clip vs real long clips), ``tail_ratio`` (speed of
    the last 16 frames / the first 16; nan when the first 16 average below STATIC_SPEED),
    ``static_frac_64``), "frames": the scored length}.
    For generators that cannot extend, clips have the generator's own length if shorter than ``frames``.
    """
    from kinema.sample.generate import generate
    from kinema.io import to_uint8

    frames = min(frames, int(G.frames)) if not getattr(G, "can_extend", False) else frames
    seeds = list(range(num))

    def fake(n_frames):
        with torch.no_grad():
            return to_uint8(generate(G, seeds, frames=n_frames, config=config, truncation=truncation, device=device))

    clips = fake(frames)
    size, channels = clips.shape[2], clips.shape[-1]
    ref = MotionReference(real_clips(dataset, num, frames, size, channels), dataset, classifier, device=device)
    report = ref.report(clips)
    values = summary(report)
    if report["object"]:
        values["speed"], values["real_speed"] = report["object"]["speed"]["fake"], report["object"]["speed"]["real"]
    out = {"report": report, "values": values, "frames": frames}
    if getattr(G, "can_extend", False) and extension_frames > frames:
        long_fake = fake(extension_frames)
        long_real = real_clips(dataset, num, extension_frames, size, channels)
        if dataset in OBJECT_DATASETS:
            speed = lambda v: float(object_motion(v, dataset, classifier=False)["speed"].mean())  # noqa: E731
            per_clip = object_motion(long_fake, dataset, classifier=False)
            static = float(per_clip["static"].mean())
        else:
            speed = lambda v: float(generic_motion(v)["displacement"].mean())  # noqa: E731
            static = float(generic_motion(long_fake)["static"].mean())
        values["speed_ratio_64"] = _ratio(speed(long_fake), speed(long_real))
        # Clips (near-)static from the start have no movement for the tail to keep: nan, not measured.
        head = speed(long_fake[:, :16])
        values["tail_ratio"] = speed(long_fake[:, -16:]) / head if head >= STATIC_SPEED else math.nan
        values["static_frac_64"] = static
        out["extension_frames"] = extension_frames
    return out
