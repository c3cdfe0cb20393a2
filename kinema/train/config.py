"""Training configuration: a frozen dataclass tree, named presets, JSON round trip.

The tree is printed at the start of a run and saved as ``OUT/config.json``. Presets are plain
Python functions returning a full ``TrainConfig``; the CLI starts from one and overrides a few
fields with ``dataclasses.replace``. Models never see this object: the loop turns ``model`` into
explicit keyword arguments for ``kinema.models.build``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass

from kinema.errors import KinemaError
from kinema.models import MODELS
from kinema.models.layers import COMMON_OPTIONS


@dataclass(frozen=True)
class DataConfig:
    source: str = "builtin:moving_digits"  # archive folder or builtin:NAME
    resolution: int = 32                   # square frames, power of two 32..256
    frames: int = 16                       # frames per training clip
    channels: int | None = None            # None: whatever the archive holds
    cache_dir: str | None = None           # where builtin:NAME is prepared (None: data's default)
    flip: bool = False                     # loader augmentation of the real clips (horizontal flip)
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mocogan"                  # a name in kinema.models.MODELS
    width: int = 32                        # base channel count
    conditional: bool = False              # condition on the archive's labels (if it has any)
    spectral_norm: bool = False            # passed to the models that support it
    extra: dict = field(default_factory=dict)  # other model-specific kwargs, passed through as is
    vae: str | None = None                 # flow: a videovae (latent="grid") run/state/export whose latents to learn


@dataclass(frozen=True)
class DiffAugConfig:
    """Differentiable augmentation of D's inputs, same parameters for every frame of a clip."""
    translation: float = 0.125             # max shift as a fraction of the side (0 = off)
    cutout: float = 0.0                    # side of the cut square as a fraction (0 = off)
    color: bool = False                    # brightness / saturation / contrast jitter


@dataclass(frozen=True)
class LossConfig:
    kind: str = "ns"                       # "ns" (non-saturating BCE) | "hinge"
    r1_gamma: float = 1.0                  # R1 weight (0 = off)
    r1_interval: int = 4                   # lazy regularisation: every N D steps, gamma scaled by N
    augment: DiffAugConfig = field(default_factory=DiffAugConfig)
    kl_weight: float = 1.0                 # videovae: beta, the weight of the KL term
    class_dropout: float = 0.1             # flow: share of clips trained without their class (for --cfg)
    time_mean: float = 0.0                 # flow: flow times t = sigmoid(N(time_mean, time_std^2))
    time_std: float = 1.0
    joint_images: int = 0                  # flow: independent frames appended to each clip (image-video joint training)


@dataclass(frozen=True)
class OptimConfig:
    g_lr: float = 5e-4                     # TTUR: separate learning rates
    d_lr: float = 5e-4
    betas: tuple = (0.0, 0.99)
    weight_decay: float = 0.0              # decoupled (AdamW) weight decay
    grad_clip: float = 0.0                 # max global grad norm per network (0 = off)
    d_steps: int = 1                       # D main steps per G step


@dataclass(frozen=True)
class ScheduleConfig:
    kimg: float = 500.0                    # stop after this many thousand clips (0 = no limit)
    minutes: float = 0.0                   # also stop after this wall-clock budget (0 = none)
    batch: int = 32                        # global batch (per rank = batch / world)
    seed: int = 0
    ema_kimg: float = 10.0                 # EMA half-life in thousands of clips
    ema_rampup: float = 0.05               # half-life <= rampup * clips seen (0 = off)
    # True: results do not depend on the number of ranks (same global batch): latents, fake labels
    # and D augmentation are drawn for the whole global batch from one stream shared by all ranks
    # (each takes its slice), and batch-norm statistics are synchronised over ranks. False: per-rank
    # streams seeded seed * world + rank, rank-local batch norm (cheaper: no extra all-reduces).
    world_invariant: bool = False


@dataclass(frozen=True)
class LogConfig:
    out: str = "runs/train"
    snapshot_kimg: float = 50.0            # training state + export every N kimg (and at the end)
    sample_kimg: float = 10.0              # sample grid (mp4 + png) every N kimg
    log_kimg: float = 1.0                  # scalars to jsonl / TensorBoard every N kimg
    keep: int = 3                          # keep the last K training states and exports
    num_samples: int = 8                   # videos in the fixed-seed grid
    # Clip length `kinema generate` and `kinema.load(...).generate()` default to, written into every
    # export's meta (models that can extend their clips; 0 = the trained length).
    preview_frames: int = 0
    # Motion vs real clips at every snapshot (built-in datasets only; kinema.metrics.motion):
    # this many generated and real clips, 0 = off.
    motion_clips: int = 64
    tensorboard: bool = True
    progress: bool = True                  # tqdm bar


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run, not what to learn. "auto" picks the fast setting on CUDA and the exact one on
    CPU; every setting also runs on CPU when asked for (bf16 autocast is ~2x faster for 3D
    convolutions on CPUs with AVX-512 BF16 or AMX, at bf16 precision)."""
    device: str = "auto"                   # auto | cpu | cuda
    precision: str = "auto"                # auto (bf16 on CUDA, fp32 on CPU) | bf16 (autocast) | fp32
    channels_last: str = "auto"            # channels-last(-3d) weights and batches: auto (CUDA) | on | off
    fused: str = "auto"                    # fused AdamW kernel: auto (CUDA) | on | off
    compile: bool = False                  # torch.compile G and D


@dataclass(frozen=True)
class Runtime:
    """``RuntimeConfig`` resolved for one device: plain booleans the loop acts on."""
    bf16: bool
    channels_last: bool
    fused: bool
    compile: bool

    @classmethod
    def resolve(cls, rc: RuntimeConfig, device_type: str) -> "Runtime":
        fast = device_type == "cuda"
        return cls(bf16=rc.precision == "bf16" or (rc.precision == "auto" and fast),
                   channels_last=rc.channels_last == "on" or (rc.channels_last == "auto" and fast),
                   fused=rc.fused == "on" or (rc.fused == "auto" and fast), compile=rc.compile)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> "TrainConfig":
        """Raise a one-line KinemaError for impossible settings; return self."""
        checks = [
            (self.model.name in MODELS, f"model: unknown model {self.model.name!r} ({', '.join(MODELS)})"),
            (not self.model.vae or self.model.name == "flow", "vae: only the flow model learns a VAE's latents"),
            (not (self.model.vae and self.data.flip), "flip: not available with --vae (latents are cached unflipped)"),
            (0 <= self.loss.class_dropout < 1, "class_dropout: must be in [0, 1)"),
            (self.loss.time_std > 0, "time_std: must be > 0"),
            (0 <= self.loss.joint_images <= 64, "joint_images: must be between 0 and 64"),
            (not self.loss.joint_images or self.model.name == "flow", "joint_images: only the flow model trains on "
             "appended images"),
            (not (self.loss.joint_images and self.schedule.world_invariant),
             "joint_images: not available with world_invariant (images are drawn from each rank's own clips)"),
            (self.loss.kind in ("ns", "hinge"), f"loss: unknown kind {self.loss.kind!r} (ns, hinge)"),
            (self.schedule.batch >= 1, "batch: must be >= 1"),
            (self.schedule.kimg > 0 or self.schedule.minutes > 0, "kimg: must be > 0 (or give --minutes)"),
            (self.loss.r1_interval >= 1, "r1_interval: must be >= 1"),
            (self.optim.d_steps >= 1, "d_steps: must be >= 1"),
            (self.log.keep >= 1, "keep: must be >= 1"),
            (self.log.motion_clips >= 0, "motion_clips: must be >= 0 (0 = no motion measures at snapshots)"),
            (0 <= self.log.preview_frames <= 4096, "preview_frames: must be between 0 (the trained length) and 4096"),
            (self.runtime.device in ("auto", "cpu", "cuda") or self.runtime.device.startswith("cuda:"),
             f"device: unknown device {self.runtime.device!r}"),
            (self.runtime.precision in ("auto", "bf16", "fp32"),
             f"precision: unknown precision {self.runtime.precision!r} (auto, bf16, fp32)"),
            (self.runtime.channels_last in ("auto", "on", "off"),
             f"channels_last: must be auto, on or off, not {self.runtime.channels_last!r}"),
            (self.runtime.fused in ("auto", "on", "off"), f"fused: must be auto, on or off, not {self.runtime.fused!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise KinemaError(message)
        # Clip shape: the models' own bounds (kinema.models.layers), checked before any data is prepared.
        for key in ("resolution", "frames"):
            value = getattr(self.data, key)
            problem = COMMON_OPTIONS[key].problem(value)
            if problem:
                raise KinemaError(f"{key}: {problem}, got {value!r}")
        return self


# Presets.

def preset_default() -> TrainConfig:
    """MoCoGAN at 32x32x16 on moving digits: the `kinema train` default."""
    return TrainConfig()


def preset_demo() -> TrainConfig:
    """What `kinema demo` trains: the continuous-time GAN (ctgan) on moving digits, ~3 CPU minutes.

    ctgan draws one picture per video and moves it (a warp driven by a time embedding), and its
    discriminator sees 3 frames of each 16-frame clip at random times with their time gaps plus
    every frame on its own: digits keep their identity by construction, shapes are learned as fast
    as by an image GAN, and motion (speed, bounces) is what the 3-frame judge teaches. A
    3-frame training clip costs less than dcgan's 4-frame one, so the budget buys as many steps.
    Motion anchors every 8 frames (not 4): straighter paths between bounces (travel closer to the
    data's, fewer spurious reversals). Class-conditional; hinge loss, lazy R1 every 16 steps, Adam
    2e-3 with betas (0.5, 0.9).
    """
    return TrainConfig(
        data=DataConfig(resolution=32, frames=16),
        model=ModelConfig(name="ctgan", width=16, conditional=True, extra={"anchor_every": 8}),
        loss=LossConfig(kind="hinge", r1_gamma=1.0, r1_interval=16, augment=DiffAugConfig(translation=0.125)),
        optim=OptimConfig(g_lr=2e-3, d_lr=2e-3, betas=(0.5, 0.9)),
        schedule=ScheduleConfig(kimg=0.0, minutes=3.0, batch=16, ema_kimg=0.5, ema_rampup=0.1),
        log=LogConfig(out="runs/demo", snapshot_kimg=1e9, sample_kimg=1e9, log_kimg=0.5, num_samples=8,
                      preview_frames=16),
    )


def preset_tiny() -> TrainConfig:
    """Smallest sensible run (tests, smoke checks): width 8, 32x32x4, batch 4."""
    return TrainConfig(
        data=DataConfig(resolution=32, frames=4),
        model=ModelConfig(name="mocogan", width=8),
        loss=LossConfig(r1_interval=2, augment=DiffAugConfig(translation=0.125, cutout=0.25, color=True)),
        schedule=ScheduleConfig(kimg=0.016, batch=4, ema_kimg=0.01),
        log=LogConfig(snapshot_kimg=1e9, sample_kimg=1e9, log_kimg=0.008, num_samples=2, motion_clips=0,
                      tensorboard=False, progress=False),
        runtime=RuntimeConfig(device="cpu"),
    )


def preset_gpu64() -> TrainConfig:
    """The GPU reference setting: video GAN at 64x64x16, batch 64, bf16."""
    return TrainConfig(
        data=DataConfig(resolution=64, frames=16, num_workers=4),   # pinned, prefetched uint8 batches
        model=ModelConfig(name="videogan", width=64),
        schedule=ScheduleConfig(kimg=5000.0, batch=64),
        runtime=RuntimeConfig(device="cuda", compile=False),
    )


def preset_vaegrid() -> TrainConfig:
    """A videovae with a spatial latent grid ([8, 4, 8, 8] at 32x32x16), the flow model's latent space.

    KL weight 1e-2 per pixel: on moving digits it reconstructed better than 1e-3 in the same
    budget (posterior noise regularises the shallow decoder); the flow model learns the posterior
    means, normalised per channel.
    """
    return TrainConfig(
        model=ModelConfig(name="videovae", width=32, extra={"latent": "grid", "grid_res": 8, "z_dim": 8}),
        loss=LossConfig(kl_weight=1e-2),
        optim=OptimConfig(g_lr=2e-3, betas=(0.9, 0.99)),
        schedule=ScheduleConfig(kimg=0.0, minutes=5.0, batch=32, ema_kimg=1.0),
        log=LogConfig(out="runs/vae", snapshot_kimg=5.0, sample_kimg=1e9),
    )


def preset_flow() -> TrainConfig:
    """The flow transformer on a VAE's latents (give ``--vae RUN``), class-conditional, 15 minutes.

    Batch 16: on a CPU budget optimizer steps are what counts. No motion probe at snapshots (it
    would sample 64 clips through the ODE each time; bench/bench_flow.py scores the snapshots).
    """
    return TrainConfig(
        model=ModelConfig(name="flow", width=128, conditional=True, extra={"depth": 4, "heads": 4}),
        optim=OptimConfig(g_lr=1e-3, betas=(0.9, 0.99)),
        schedule=ScheduleConfig(kimg=0.0, minutes=15.0, batch=16, ema_kimg=2.0, ema_rampup=0.1),
        log=LogConfig(out="runs/flow", snapshot_kimg=5.0, sample_kimg=1e9, motion_clips=0),
    )


PRESETS = {"default": preset_default, "demo": preset_demo, "tiny": preset_tiny, "gpu64": preset_gpu64,
           "vaegrid": preset_vaegrid, "flow": preset_flow}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise KinemaError(f"preset: unknown preset {name!r} ({', '.join(PRESETS)})")
    return PRESETS[name]()


# JSON round trip.

def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def to_json(cfg: TrainConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=False) + "\n"


def _from_dict(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise KinemaError(f"{where}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING \
            else known[name].default
        if is_dataclass(default) and isinstance(value, dict):
            value = _from_dict(type(default), value, where)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif not _same_kind(default, value):  # a config file may come from someone else
            raise KinemaError(f"{where}: {name} must be {_KINDS.get(type(default), type(default).__name__)} "
                              f"like its default {default!r}, got {str(value)[:40]!r}")
        kwargs[name] = value
    return cls(**kwargs)


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", tuple: "a list"}


def _same_kind(default, value) -> bool:
    """A JSON value fits a field whose default is ``default`` (None: any value, checked later)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return type(value) is bool
    if isinstance(default, int):
        return type(value) is int
    if isinstance(default, float):
        return type(value) in (int, float)
    if isinstance(default, (str, tuple, dict)) or is_dataclass(default):
        return isinstance(value, type(default))
    return True


def from_dict(data: dict, where: str = "config") -> TrainConfig:
    """Inverse of ``to_dict``; missing keys take their defaults, unknown keys are an error."""
    if not isinstance(data, dict):
        raise KinemaError(f"{where}: expected a JSON object")
    return _from_dict(TrainConfig, data, where)


def load_json(path) -> TrainConfig:
    from kinema.untrusted import MiB, read_json

    return from_dict(read_json(path, MiB, what="training config"), str(path))


def override(cfg: TrainConfig, **sections) -> TrainConfig:
    """``override(cfg, schedule={"kimg": 10}, loss={"augment": {"cutout": 0.5}})`` -> new config.

    Fields not named keep their values; unknown names raise TypeError (a programming error).
    """
    return _replace(cfg, sections)


def _replace(obj, values: dict):
    # Nested dataclasses (e.g. loss.augment) may be given as dicts of their own fields.
    updates = {}
    for key, value in values.items():
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            value = _replace(current, value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        updates[key] = value
    return dataclasses.replace(obj, **updates) if updates else obj


def describe(cfg: TrainConfig) -> str:
    """The resolved config as indented ``section.key = value`` lines (printed at start)."""
    lines = []
    for section in fields(cfg):
        lines.append(f"{section.name}:")
        for key, value in to_dict(getattr(cfg, section.name)).items():
            lines.append(f"  {key:<14} {value}")
    return "\n".join(lines)
