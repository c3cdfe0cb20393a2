"""The training loop: ``train(config)`` reads top to bottom; each phase is a function above it.

Each iteration takes one global batch of real clips and runs the phases that are due for the
model's kind (``STEPS``: ``gan_step``, ``vae_step``, ``flow_step``):

    D main   every step          D on augmented real vs. augmented G(z) clips (G frozen)
    D reg    every r1_interval   R1 on augmented reals, gamma scaled by the interval (lazy)
    G main   every d_steps       G through a frozen D (non-saturating or hinge)
    VAE main every step          (videovae) encoder + decoder on reconstruction + KL
    flow main every step         (flow) velocity of the straight noise-to-data path (rectified flow)

then updates the EMA generator, logs, and saves. Every phase has its own optimizer step and
sets ``requires_grad`` so that only the network it trains accumulates gradients. A phase reads
what it needs from a ``StepContext`` (config, networks, optimizers, random streams, augmentation,
autocast, NaN guard, statistics) passed to it; a new model kind adds its phase functions, a step
function that schedules them, an entry in ``STEPS`` and its optimizers in ``_optimizers``. Each phase is
labelled for ``torch.profiler`` (``kinema/data``, ``kinema/D_main``, ...) and ``on_step`` is
called after every step (e.g. ``profiler.step``), so a profile splits a step into data loading,
phases and kernels (``bench/suite.py`` does).

Hot loop without host syncs on CUDA: losses and statistics stay on the device until a log step,
NaN/Inf is checked every few steps, latents are drawn on the CPU and copied non-blocking from
pinned memory. ``runtime`` picks bf16 autocast, channels-last layouts and the fused optimizer
(``Runtime.resolve``: on for CUDA by default, available on CPU when asked for).

Distributed: under torchrun G, D (and E) are wrapped in DistributedDataParallel for the phases
that train them; frozen uses go through the plain module (no gradient sync needed), and the
EMA, samples and exports always use the unwrapped module. R1 needs a double backward through D:
``autograd.grad`` towards the input does not touch DDP's parameter hooks, and the penalty's own
backward does, once; ``0 * logits`` keeps every D parameter in that graph so DDP's reducer sees
all of them. Before every save all ranks compare their parameters (``dist.check_consistent``).
With ``schedule.world_invariant`` the random draws cover the global batch from one stream shared
by all ranks (each keeps its slice) and batch norm is synchronised: the run then matches one
process on the same global batches, and resumes exactly on another number of ranks.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.fsutil import atomic_write_text
from kinema import dist
from kinema.models.latents import draw_times, take_frames
from kinema.train import checkpoint, losses
from kinema.train import flow as flow_train
from kinema.devices import to_device
from kinema.train.augment import GlobalDraws, from_config as make_augment
from kinema.train.config import Runtime, TrainConfig, describe, to_json
from kinema.train.ema import ema_beta, make_ema, refresh_batchnorm, update_ema
from kinema.train.logging import RunLogger, Stats


class TrainingDiverged(KinemaError):
    """A loss became NaN or Inf; nothing was saved from that state."""


@dataclasses.dataclass
class TrainResult:
    out: Path
    nimg: int
    steps: int
    export: Path | None
    state: Path | None
    stopped_by: str          # "kimg" | "time" | "signal"
    seconds: float
    last_log: dict


class _StopSignal:
    """SIGINT/SIGTERM -> finish the current step, save, exit. A second SIGINT aborts at once."""

    def __init__(self):
        self.requested, self.old = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def model_kwargs(cfg: TrainConfig, channels: int, num_classes: int) -> dict:
    """The explicit keyword arguments ``kinema.models.build`` receives (never the config)."""
    kwargs = dict(resolution=cfg.data.resolution, frames=cfg.data.frames, channels=channels,
                  num_classes=num_classes if cfg.model.conditional else 0, width=cfg.model.width)
    if cfg.model.spectral_norm:
        kwargs["spectral_norm"] = True
    kwargs.update(cfg.model.extra)
    return kwargs


def _optimizer(params, lr, cfg, device, fused: bool) -> torch.optim.Optimizer:
    # Decoupled weight decay (AdamW): one fused kernel, or PyTorch's default multi-tensor loop on
    # CUDA and the plain per-parameter loop on CPU.
    extra = {"fused": True} if fused else ({} if device.type == "cuda" else {"foreach": False})
    return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay, **extra)


def _to_channels_last(module: torch.nn.Module) -> None:
    # channels_last for 4-D conv weights, channels_last_3d for 5-D ones (Module.to cannot mix them).
    for p in module.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        elif p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


def _open_data(cfg: TrainConfig):
    """-> (archive, cfg with the archive's resolution and length, num_classes for G and D)."""
    from kinema.data import open_archive, resolve_source

    # Rank 0 prepares a built-in dataset first; the others wait, then open the same cache.
    if not dist.is_main():
        dist.barrier()
    if Path(cfg.data.source).exists():
        archive = open_archive(cfg.data.source)   # an archive decides resolution and clip length
    else:
        archive = resolve_source(cfg.data.source, cfg.data.resolution, cfg.data.frames,
                                 cache_dir=cfg.data.cache_dir, channels=cfg.data.channels)
    if dist.is_main():
        dist.barrier()
    res, frames = int(archive.resolution[0]), int(archive.frames_per_clip)
    if (res, frames) != (cfg.data.resolution, cfg.data.frames):
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resolution=res, frames=frames))
    num_classes = len(archive.class_names) if cfg.model.conditional else 0
    if cfg.model.conditional and (num_classes == 0 or int(np.min(archive.labels)) < 0):
        raise KinemaError(f"{cfg.data.source}: --conditional needs labels, and this archive has none")
    return archive, cfg, num_classes


def _next_tick(nimg: int, every_kimg: float) -> float:
    """The first multiple of ``every_kimg`` thousand clips after ``nimg``."""
    return (nimg // (every_kimg * 1000) + 1) * every_kimg * 1000


def _phase(name: str):
    """A label for torch.profiler (costs ~1 us when no profiler runs)."""
    return torch.profiler.record_function(f"kinema/{name}")


# The pieces of a run that the phases and the snapshot read. Plain objects passed as arguments
# (no closures), so each phase is a module-level function and adding a model kind is adding a
# step function to STEPS below.

@dataclasses.dataclass
class Nets:
    """The networks: plain modules (EMA, samples, exports, checkpoints) and the views that train.

    ``G_train``/``D_train``/``E_train`` are the DDP wrappers (or the modules themselves in one
    process), possibly compiled; ``D_main`` is D for the D main phase (compiled with
    ``--compile``), ``D_frozen`` the plain D that G trains through. D reg always uses
    ``D_train`` eagerly: compiled graphs do not double-backward.
    """

    G: torch.nn.Module
    D: torch.nn.Module | None
    E: torch.nn.Module | None
    G_ema: torch.nn.Module
    kind: str                 # "gan" | "vae", from the ModelSet
    name: str
    kwargs: dict
    G_train: torch.nn.Module | None = None
    D_train: torch.nn.Module | None = None
    E_train: torch.nn.Module | None = None
    D_main: torch.nn.Module | None = None
    D_frozen: torch.nn.Module | None = None

    def plain(self) -> dict:
        return {"G": self.G, "D": self.D, "E": self.E, "G_ema": self.G_ema}


@dataclasses.dataclass
class Draws:
    """The loop's random streams: latents and fake labels, and D-input augmentation.

    Per rank (seed * world + rank), or, world-invariant, one stream shared by all ranks whose
    draws cover the global batch and are sliced per rank. Drawn on the CPU, then copied.
    """

    seed: int                   # this rank's seed (the shared one when invariant)
    latent: torch.Generator
    aug: torch.Generator
    augment_draws: object       # gen_aug itself, or a GlobalDraws slicing it per rank
    rank: int
    world: int
    invariant: bool
    num_classes: int
    device: torch.device

    def _share(self, x: torch.Tensor, n: int) -> torch.Tensor:
        # World-invariant: x holds the draws of the whole global batch [world * n, ...]; keep ours.
        return x[self.rank * n:(self.rank + 1) * n] if self.invariant else x

    def latents(self, G, n: int) -> dict:
        drawn = G.make_latents(n * self.world if self.invariant else n, generator=self.latent)
        return {k: to_device(self._share(v, n), self.device) for k, v in drawn.items()}

    def times(self, G, n: int, frames: int):
        """Frame indices [n, k] (sorted, distinct, < frames) for a generator trained on k sparse
        frames per clip (``G.sparse_frames``, ctgan); None for generators trained on whole clips."""
        k = int(getattr(G, "sparse_frames", 0) or 0)
        if not k:
            return None
        drawn = draw_times(n * self.world if self.invariant else n, frames, k, self.latent)
        return to_device(self._share(drawn, n), self.device)

    def fake_labels(self, n: int):
        if not self.num_classes:
            return None
        drawn = torch.randint(self.num_classes, (n * self.world if self.invariant else n,), generator=self.latent)
        return to_device(self._share(drawn, n), self.device)


class Guard:
    """Non-finite losses: flagged on the device, checked on the host every step on CPU and every
    ``every`` steps on CUDA (a check is a host sync). Nothing is saved once a loss went bad."""

    def __init__(self, device: torch.device, out: Path, every: int):
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.eager, self.out, self.every = device.type != "cuda", out, every
        self.nimg = self.step = 0

    def at(self, nimg: int, step: int) -> None:
        self.nimg, self.step = nimg, step

    def add(self, name: str, loss: torch.Tensor) -> None:
        self.bad = self.bad | ~torch.isfinite(loss.detach())
        if self.eager and bool(self.bad):
            raise TrainingDiverged(f"loss {name} is {float(loss.detach())} at {self.nimg / 1000:.3f} kimg "
                                   f"(step {self.step}); stopping without saving, the last good state in "
                                   f"{self.out} is intact")

    def check(self) -> None:
        if bool(self.bad):
            raise TrainingDiverged(f"a loss became NaN/Inf before {self.nimg / 1000:.3f} kimg (step {self.step}); "
                                   f"stopping without saving, the last good state in {self.out} is intact")


@dataclasses.dataclass
class StepContext:
    """Everything a phase reads besides the batch."""

    cfg: TrainConfig
    nets: Nets
    opts: dict                  # "G" | "D" | "VAE" -> optimizer
    draws: Draws
    augment: object             # DiffAugment: (clips, draws) -> clips
    amp: object                 # autocast context (bf16 or disabled)
    guard: Guard
    stats: Stats


def _opt_step(opt, params, name: str, ctx: StepContext, stats_on: bool) -> None:
    """Clip (optionally), record the gradient norm on log steps, step, and clear the gradients."""
    params = [p for p in params if p.grad is not None]
    if ctx.cfg.optim.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, ctx.cfg.optim.grad_clip)
    elif stats_on:
        norm = _grad_norm(params)
    if stats_on:
        ctx.stats.add(f"gradnorm/{name}", norm)
    opt.step()
    opt.zero_grad(set_to_none=True)


# Phases. Each trains one network with its own optimizer and sets requires_grad itself.

def _at(times) -> dict:
    """Keyword arguments that tell G and D the frame times of sparse-frame clips (none otherwise)."""
    return {} if times is None else {"times": times}


def d_main(ctx: StepContext, real, labels, batch: int, stats_on: bool, times=None) -> None:
    """D on augmented reals vs. augmented G(z), G frozen (plain module, no grad, no DDP sync).
    One backward per forward, so DDP sees each parameter exactly once per backward."""
    cfg, n, draws = ctx.cfg, ctx.nets, ctx.draws
    n.D.requires_grad_(True)
    with torch.no_grad(), ctx.amp:
        y_fake = draws.fake_labels(batch)
        fake = n.G(draws.latents(n.G, batch), y_fake, **_at(times))
    with ctx.amp:
        logits_fake = n.D_main(ctx.augment(fake, draws.augment_draws), y_fake, **_at(times))
    loss_fake = losses.d_loss_fake(logits_fake, cfg.loss.kind)
    ctx.guard.add("D(fake)", loss_fake)
    loss_fake.backward()
    with ctx.amp:
        logits_real = n.D_main(ctx.augment(real, draws.augment_draws), labels, **_at(times))
    loss_real = losses.d_loss_real(logits_real, cfg.loss.kind)
    ctx.guard.add("D(real)", loss_real)
    loss_real.backward()
    _opt_step(ctx.opts["D"], n.D.parameters(), "D", ctx, stats_on)
    ctx.stats.add("loss/D", loss_real.detach() + loss_fake.detach())
    if stats_on:
        ctx.stats.add("D/real", losses.logits_mean(logits_real))
        ctx.stats.add("D/fake", losses.logits_mean(logits_fake))


def d_reg(ctx: StepContext, real, labels, times=None) -> None:
    """Lazy R1 on augmented reals, gamma scaled by the interval."""
    cfg, n = ctx.cfg, ctx.nets
    x = ctx.augment(real, ctx.draws.augment_draws).detach().requires_grad_(True)
    with ctx.amp:
        logits = n.D_train(x, labels, **_at(times))
    r1 = losses.r1_penalty(x, logits)
    ctx.guard.add("R1", r1)
    zero = sum(h.float().sum() for h in logits) * 0     # keep every D weight in the graph (DDP)
    (r1 * (cfg.loss.r1_gamma / 2) * cfg.loss.r1_interval + zero).backward()
    _opt_step(ctx.opts["D"], n.D.parameters(), "D_reg", ctx, False)
    ctx.stats.add("loss/R1", r1)


def g_main(ctx: StepContext, real, batch: int, stats_on: bool, times=None) -> None:
    """G through a frozen D (plain module: its weights need no gradient sync)."""
    cfg, n, draws = ctx.cfg, ctx.nets, ctx.draws
    n.D.requires_grad_(False)
    with ctx.amp:
        y_fake = draws.fake_labels(batch)
        fake = n.G_train(draws.latents(n.G, batch), y_fake, **_at(times))
        loss_G = losses.g_loss(n.D_frozen(ctx.augment(fake, draws.augment_draws), y_fake, **_at(times)),
                               cfg.loss.kind)
    ctx.guard.add("G", loss_G)
    loss_G.backward()
    _opt_step(ctx.opts["G"], n.G.parameters(), "G", ctx, stats_on)
    ctx.stats.add("loss/G", loss_G)
    if stats_on:
        ctx.stats.add("diversity", losses.diversity(fake, real))


def vae_main(ctx: StepContext, real, labels, stats_on: bool) -> None:
    """Reconstruct the reals through E and G, KL to the prior (the model's own loss)."""
    from kinema.models.videovae import vae_loss

    n = ctx.nets
    with ctx.amp:
        terms = vae_loss(n.E_train, n.G_train, real, ctx.cfg.loss.kl_weight, labels)
    ctx.guard.add("VAE", terms["total"])
    terms["total"].backward()
    _opt_step(ctx.opts["VAE"], list(n.E.parameters()) + list(n.G.parameters()), "VAE", ctx, stats_on)
    for k in ("total", "recon", "kl"):
        ctx.stats.add(f"loss/VAE_{k}", terms[k])


def flow_main(ctx: StepContext, real, labels, stats_on: bool) -> None:
    """Regress the velocity ``real - noise`` at logit-normal times; each clip's class dropped with
    probability ``class_dropout`` (the unconditional model of classifier-free guidance). ``real``
    is a batch of clips, or of a frozen VAE's normalised latents."""
    from kinema.models.flow import flow_loss

    cfg, d, n = ctx.cfg.loss, ctx.draws, ctx.nets
    gen = GlobalDraws(d.latent, d.rank, d.world) if d.invariant else d.latent
    video = None
    if cfg.joint_images:  # independent frames appended to each clip (refused with world_invariant)
        real, labels, video = flow_train.append_images(d.latent, real, labels, cfg.joint_images)
    noise, t, drop = flow_train.draws(gen, real, cfg.class_dropout, cfg.time_mean, cfg.time_std, video)
    with ctx.amp:
        terms = flow_loss(n.G_train, real, labels, noise, t, drop, video)
    ctx.guard.add("flow", terms["total"])
    terms["total"].backward()
    _opt_step(ctx.opts["G"], [p for p in n.G.parameters() if p.requires_grad], "flow", ctx, stats_on)
    ctx.stats.add("loss/flow", terms["total"])


# One training step per model kind: which phases run, and when.

def gan_step(ctx: StepContext, step: int, real, labels, batch: int, stats_on: bool) -> None:
    cfg = ctx.cfg
    # Sparse-frame models (ctgan) see k frames per clip at random times, the same for real and fake.
    times = ctx.draws.times(ctx.nets.G, batch, real.shape[2])
    real = take_frames(real, times)
    with _phase("D_main"):
        d_main(ctx, real, labels, batch, stats_on, times)
    if cfg.loss.r1_gamma > 0 and step % cfg.loss.r1_interval == 0:
        with _phase("D_reg"):
            d_reg(ctx, real, labels, times)
    if step % cfg.optim.d_steps == 0:
        with _phase("G_main"):
            g_main(ctx, real, batch, stats_on, times)


def vae_step(ctx: StepContext, step: int, real, labels, batch: int, stats_on: bool) -> None:
    with _phase("VAE_main"):
        vae_main(ctx, real, labels, stats_on)


def flow_step(ctx: StepContext, step: int, real, labels, batch: int, stats_on: bool) -> None:
    with _phase("flow_main"):
        flow_main(ctx, real, labels, stats_on)


STEPS = {"gan": gan_step, "vae": vae_step, "flow": flow_step}


# Set-up helpers, in the order train() calls them.

def _runtime(cfg: TrainConfig, device: torch.device):
    """-> (Runtime, autocast context); on CUDA also cuDNN benchmark and TF32."""
    rt = Runtime.resolve(cfg.runtime, device.type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return rt, torch.autocast(device.type, dtype=torch.bfloat16, enabled=rt.bf16)


def _build_nets(cfg: TrainConfig, channels: int, num_classes: int, device, rt: Runtime,
                flow_data: "flow_train.FlowData | None" = None) -> Nets:
    """The same initial weights on every rank (from the shared seed; DDP checks it) + G_ema.
    ``flow_data``: a flow model's VAE (options and frozen decoder weights) and latent statistics."""
    from kinema.models import build

    torch.manual_seed(cfg.schedule.seed)
    kwargs = model_kwargs(cfg, channels, num_classes)
    models = build(cfg.model.name, **(kwargs if flow_data is None else {**kwargs, **flow_data.model_kwargs}))
    if flow_data is not None:
        flow_data.attach(models.G)
    G, D, E = (m.to(device) if m is not None else None for m in (models.G, models.D, models.E))
    if rt.channels_last:
        for net in (G, D, E):
            if net is not None:
                _to_channels_last(net)
    return Nets(G=G, D=D, E=E, G_ema=make_ema(G), kind=models.kind, name=models.name, kwargs=models.kwargs)


def _seed_draws(cfg: TrainConfig, num_classes: int, device) -> Draws:
    """Seed python/numpy/torch and the loop's generators, per rank or world-invariant."""
    invariant, rank, world = cfg.schedule.world_invariant, dist.rank(), dist.world_size()
    seed = cfg.schedule.seed if invariant else dist.rank_seed(cfg.schedule.seed)
    random.seed(seed), np.random.seed(seed % 2**32), torch.manual_seed(seed)
    gen_latent = torch.Generator().manual_seed(seed * 2 + 1)    # latents and fake labels
    gen_aug = torch.Generator().manual_seed(seed * 2 + 2)       # D-input augmentation
    return Draws(seed=seed, latent=gen_latent, aug=gen_aug, augment_draws=GlobalDraws(gen_aug, rank, world) if invariant else gen_aug,
                 rank=rank, world=world, invariant=invariant, num_classes=num_classes, device=device)


def _optimizers(nets: Nets, cfg: TrainConfig, device, fused: bool) -> dict:
    """TTUR learning rates for the GANs; the VAE trains E and G together; flow: G's unfrozen weights."""
    if nets.kind == "flow":
        return {"G": _optimizer([p for p in nets.G.parameters() if p.requires_grad], cfg.optim.g_lr, cfg, device, fused)}
    if nets.kind == "gan":
        return {"G": _optimizer(nets.G.parameters(), cfg.optim.g_lr, cfg, device, fused),
                "D": _optimizer(nets.D.parameters(), cfg.optim.d_lr, cfg, device, fused)}
    return {"VAE": _optimizer(list(nets.E.parameters()) + list(nets.G.parameters()), cfg.optim.g_lr, cfg, device,
                              fused)}


def _wrap_for_training(nets: Nets, device, invariant: bool, compile: bool) -> None:
    """DDP wrappers for the phases that train a network (several ranks), then torch.compile."""
    nets.G_train, nets.D_train, nets.E_train = nets.G, nets.D, nets.E
    if dist.world_size() > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # R1's double backward hands DDP gradients of a transposed layout for some weights: harmless.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        ids = [device.index] if device.type == "cuda" else None
        if invariant:  # batch statistics over the global batch (G_ema keeps plain BN: eval only)
            for net in (nets.G, nets.D, nets.E):
                if net is not None:
                    dist.sync_batchnorm(net)
        nets.G_train, nets.D_train, nets.E_train = (DDP(n, device_ids=ids) if n is not None else None
                                                    for n in (nets.G, nets.D, nets.E))
    nets.D_main, nets.D_frozen = nets.D_train, nets.D
    if compile:
        nets.G_train = torch.compile(nets.G_train)
        if nets.D is not None:
            nets.D_main, nets.D_frozen = torch.compile(nets.D_train), torch.compile(nets.D)


def _start_run_folder(out: Path, cfg: TrainConfig, nets: Nets, rt: Runtime, device, batch: int, say) -> None:
    """Rank 0: clear interrupted writes, write config.json, print the config and the model once."""
    out.mkdir(parents=True, exist_ok=True)
    for tmp in checkpoint.remove_temporaries(out):
        say(f"removed {tmp.name} (left by an interrupted write)")
    atomic_write_text(out / "config.json", to_json(cfg))
    say(describe(cfg))
    size = {k: sum(p.numel() for p in n.parameters()) / 1e6 for k, n in (("G", nets.G), ("D", nets.D), ("E", nets.E))
            if n is not None}
    say(f"model {nets.name}: " + ", ".join(f"{k} {m:.2f}M" + (" params" if k == "G" else "") for k, m in size.items())
        + f"; device {device}, {dist.world_size()} rank(s), batch {batch}/rank, "
        + f"{'bf16 autocast' if rt.bf16 else 'fp32'}{', channels-last' if rt.channels_last else ''}"
        + f"{', fused AdamW' if rt.fused else ''}{', compiled' if rt.compile else ''}; out {out}")


def _next_batch(loader, rt: Runtime, num_classes: int):
    real, labels = next(loader)                       # [B, C, T, H, W] in [-1, 1]
    if rt.channels_last:
        real = real.contiguous(memory_format=torch.channels_last_3d)
    return real, (labels if num_classes else None)


def _stop_reason(stop: "_StopSignal", deadline, step: int, every: int) -> str | None:
    """"signal" | "time" | None; all ranks agree (a signal or the clock on any rank stops all),
    multi-rank only every ``every`` steps (with NCCL the reduce syncs the host)."""
    flags = torch.tensor([float(stop.requested), float(deadline is not None and time.monotonic() >= deadline)])
    if dist.world_size() > 1:
        flags = dist.all_reduce_max(flags) if step % every == 0 else torch.zeros(2)
    return "signal" if flags[0] else ("time" if flags[1] else None)


def save_snapshot(out: Path, cfg: TrainConfig, nets: Nets, opts: dict, loader, archive, nimg: int, step: int,
                  ranks_state: list, guard: Guard, logger: RunLogger, final: bool) -> tuple[Path | None, Path | None]:
    """Training state + inference export (rank 0 writes; every rank takes part). -> (state, export)."""
    guard.check()
    # Every rank must hold what rank 0 is about to save (collective: all ranks call it).
    dist.check_consistent(nets.plain(), f"{out} at step {step}: ")
    state_path = export_path = None
    if dist.is_main():
        n, world = nets, dist.world_size()
        state_path = checkpoint.save_state(out, nimg, {
            "model": {"name": n.name, "kwargs": n.kwargs}, "config": to_json(cfg),
            "G": n.G.state_dict(), "D": n.D.state_dict() if n.D is not None else None,
            "E": n.E.state_dict() if n.E is not None else None, "G_ema": n.G_ema.state_dict(),
            "opt": {k: o.state_dict() for k, o in opts.items()}, "scaler": None,
            "counters": {"nimg": nimg, "step": step, "world_size": world},
            "loader": loader.state_dict(), "ranks": ranks_state}, cfg.log.keep)
        meta = {"kimg": nimg / 1000, "fps": float(archive.fps or 8), "class_names": list(archive.class_names),
                "source": cfg.data.source, "final": final}
        if cfg.log.preview_frames and n.G_ema.can_extend:
            meta["preview_frames"] = int(cfg.log.preview_frames)
        export_path = checkpoint.save_export(out, nimg, n.G_ema, n.name, n.kwargs, meta, cfg.log.keep)
        logger.message(f"saved {state_path.name} and {export_path.name}"
                       + (f" (parameters identical on {world} ranks)" if world > 1 else ""))
    dist.barrier()
    return state_path, export_path


def train(cfg: TrainConfig, resume: str | None = None, log=print, on_step=None) -> TrainResult:
    """Train ``cfg`` (from scratch, or from ``resume`` = "latest" | a state path) -> TrainResult.

    ``log``: where messages go (rank 0). ``on_step(step)``: called after every training step.
    Rank 0 keeps ``OUT/status.json`` (:mod:`kinema.train.status`): running, then finished /
    stopped / diverged / failed.
    """
    from kinema.train.status import write_status

    cfg.validate()
    out, main = Path(cfg.log.out), dist.is_main()
    started = round(time.time(), 3)
    if main:
        write_status(out, "running", started=started)
    try:
        result = _train(cfg, resume, log, on_step)
    except TrainingDiverged as err:
        if main:
            write_status(out, "diverged", started=started, message=str(err))
        raise
    except BaseException as err:
        if main:
            write_status(out, "failed", started=started, message=str(err) or type(err).__name__)
        raise
    if main:
        write_status(out, "finished" if result.stopped_by == "kimg" else "stopped", started=started,
                     stopped_by=result.stopped_by, kimg=result.nimg / 1000, steps=result.steps,
                     export=result.export.name if result.export else None)
    return result


def _train(cfg: TrainConfig, resume: str | None, log, on_step) -> TrainResult:
    from kinema.data import AugmentConfig, ClipLoader
    from kinema.io import to_uint8
    from kinema.metrics.motion import TrainingProbe
    from kinema.sample.generate import generate

    # Set up: device, data, networks, random streams, optimizers, loader.
    cfg.validate()
    t_start = time.monotonic()
    deadline = t_start + cfg.schedule.minutes * 60 if cfg.schedule.minutes > 0 else None
    device = dist.init(cfg.runtime.device)
    say = log if dist.is_main() else (lambda *args: None)
    world, rank = dist.world_size(), dist.rank()
    if cfg.schedule.batch % world:
        raise KinemaError(f"batch: global batch {cfg.schedule.batch} is not divisible by {world} ranks")
    batch, out = cfg.schedule.batch // world, Path(cfg.log.out)
    rt, amp = _runtime(cfg, device)
    archive, cfg, num_classes = _open_data(cfg)
    # Flow models on a VAE's latents: the archive encoded once (cached), the VAE's options and decoder.
    flow_data = flow_train.setup(cfg, archive, device, say) if cfg.model.name == "flow" else None
    nets = _build_nets(cfg, int(archive.channels), num_classes, device, rt, flow_data)
    draws = _seed_draws(cfg, num_classes, device)
    opts = _optimizers(nets, cfg, device, rt.fused)
    loader = ClipLoader(archive, batch, seed=cfg.schedule.seed, augment=AugmentConfig(flip=cfg.data.flip),
                        rank=rank, world_size=world, num_workers=cfg.data.num_workers, device=device)
    if flow_data is not None:
        loader = flow_data.loader(loader)   # latent models: the cached latents of the same clips

    # Resume: weights, optimizers, counters, loader position and every RNG state.
    nimg, step = 0, 0
    if resume:
        nimg, step = checkpoint.resume_into(resume, out, {"name": nets.name, "kwargs": nets.kwargs}, nets.plain(),
                                            opts, loader, (draws.latent, draws.aug), draws.seed, draws.invariant, say)
    _wrap_for_training(nets, device, draws.invariant, rt.compile)
    if dist.is_main():
        _start_run_folder(out, cfg, nets, rt, device, batch, say)

    # Clocks: log, sample and snapshot ticks in clips seen.
    total_nimg = cfg.schedule.kimg * 1000 if cfg.schedule.kimg > 0 else float("inf")
    logger = RunLogger(out, total_nimg, nimg, deadline, cfg.log.tensorboard, cfg.log.progress)
    # Motion of G_ema against real clips at snapshots (built-in data only; rank 0).
    motion = TrainingProbe.for_run(cfg.data.source, cfg.data.resolution, archive.channels, nets.G,
                                   cfg.log.motion_clips, device) if dist.is_main() else None
    check_every = 20 if device.type == "cuda" else 1   # NaN and stop checks: on CUDA every few steps (host sync)
    ctx = StepContext(cfg, nets, opts, draws, make_augment(cfg.loss.augment), amp, Guard(device, out, check_every),
                      Stats())
    next_log, next_sample, next_snapshot = (_next_tick(nimg, k) for k in
                                            (cfg.log.log_kimg, cfg.log.sample_kimg, cfg.log.snapshot_kimg))
    export_path = state_path = None
    record: dict = {}
    stopped_by = "kimg"

    with _StopSignal() as stop:
        while nimg < total_nimg:
            # Run the phases due at this step on one global batch.
            stats_on = nimg + cfg.schedule.batch >= next_log
            with _phase("data"):
                real, labels = _next_batch(loader, rt, num_classes)
            ctx.guard.at(nimg, step)
            STEPS[nets.kind](ctx, step, real, labels, batch, stats_on)

            # Advance the clock and the EMA generator; check for NaN; decide whether to stop.
            nimg, step = nimg + cfg.schedule.batch, step + 1
            with _phase("ema"):
                update_ema(nets.G_ema, nets.G,
                           ema_beta(cfg.schedule.batch, nimg, cfg.schedule.ema_kimg, cfg.schedule.ema_rampup))
            logger.step(nimg, cfg.schedule.batch)
            ctx.guard.at(nimg, step)
            if device.type == "cuda" and step % check_every == 0:
                ctx.guard.check()
            reason = _stop_reason(stop, deadline, step, check_every)
            stopped_by = reason or stopped_by
            done = nimg >= total_nimg or reason is not None

            # Log, sample, save.
            if stats_on or done:
                for name, opt in opts.items():
                    ctx.stats.add(f"lr/{name}", opt.param_groups[0]["lr"])
                record = logger.scalars(nimg, ctx.stats.collect()) or record
                next_log = _next_tick(nimg, cfg.log.log_kimg)
            if nimg >= next_sample or nimg >= next_snapshot or done:
                refresh_batchnorm(nets.G_ema, device)
            if nimg >= next_sample or done:
                videos = generate(nets.G_ema, list(range(cfg.log.num_samples)), device=device)
                logger.samples(nimg, to_uint8(videos), fps=float(archive.fps or 8))
                next_sample = _next_tick(nimg, cfg.log.sample_kimg)
            if nimg >= next_snapshot or done:
                ranks_state = checkpoint.gather_rank_states(draws.latent, draws.aug)
                state_path, export_path = save_snapshot(out, cfg, nets, opts, loader, archive, nimg, step, ranks_state,
                                                        ctx.guard, logger, final=done)
                if motion is not None:
                    logger.values(nimg, motion(nets.G_ema), label="motion vs real")
                next_snapshot = _next_tick(nimg, cfg.log.snapshot_kimg)
            if on_step is not None:
                on_step(step)
            if done:
                break
    logger.close()
    seconds = time.monotonic() - t_start
    say(f"stopped ({stopped_by}) at {nimg / 1000:.3f} kimg, step {step}, after {seconds:.1f} s")
    return TrainResult(out=out, nimg=nimg, steps=step, export=export_path, state=state_path,
                       stopped_by=stopped_by, seconds=seconds, last_log=record)
