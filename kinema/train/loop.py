"""The training loop: ``train(config)``, one function that reads top to bottom.

Each iteration takes one global batch of real clips and runs the phases that are due:

    D main   every step          D on augmented real vs. augmented G(z) clips (G frozen)
    D reg    every r1_interval   R1 on augmented reals, gamma scaled by the interval (lazy)
    G main   every d_steps       G through a frozen D (non-saturating or hinge)
    VAE main every step          (videovae) encoder + decoder on reconstruction + KL

then updates the EMA generator, logs, and saves. Every phase has its own optimizer step and
sets ``requires_grad`` so that only the network it trains accumulates gradients. Each phase is
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
from kinema.train import checkpoint, losses
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
    from kinema.models import build
    from kinema.models.videovae import vae_loss
    from kinema.sample.generate import generate
    from kinema.io import to_uint8

    cfg.validate()
    t_start = time.monotonic()
    deadline = t_start + cfg.schedule.minutes * 60 if cfg.schedule.minutes > 0 else None
    device = dist.init(cfg.runtime.device)
    say = log if dist.is_main() else (lambda *args: None)
    world, rank = dist.world_size(), dist.rank()
    if cfg.schedule.batch % world:
        raise KinemaError(f"batch: global batch {cfg.schedule.batch} is not divisible by {world} ranks")
    batch = cfg.schedule.batch // world
    out = Path(cfg.log.out)
    cuda = device.type == "cuda"
    rt = Runtime.resolve(cfg.runtime, device.type)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=rt.bf16)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    archive, cfg, num_classes = _open_data(cfg)

    # Build the networks: the same initial weights on every rank (DDP checks it), then per-rank RNG.
    kwargs = model_kwargs(cfg, int(archive.channels), num_classes)
    torch.manual_seed(cfg.schedule.seed)
    models = build(cfg.model.name, **kwargs)
    G, D, E = models.G.to(device), (models.D.to(device) if models.D is not None else None), \
        (models.E.to(device) if models.E is not None else None)
    if rt.channels_last:
        for net in (G, D, E):
            if net is not None:
                _to_channels_last(net)
    G_ema = make_ema(G)
    # Random streams: per rank (seed * world + rank), or, world-invariant, one stream shared by all
    # ranks whose draws cover the global batch and are sliced per rank (latents(), aug_draws).
    invariant = cfg.schedule.world_invariant
    seed = cfg.schedule.seed if invariant else dist.rank_seed(cfg.schedule.seed)
    random.seed(seed), np.random.seed(seed % 2**32), torch.manual_seed(seed)
    gen_latent = torch.Generator().manual_seed(seed * 2 + 1)    # latents and fake labels
    gen_aug = torch.Generator().manual_seed(seed * 2 + 2)       # D-input augmentation
    aug_draws = GlobalDraws(gen_aug, rank, world) if invariant else gen_aug
    augment = make_augment(cfg.loss.augment)

    # Optimizers: TTUR learning rates; the VAE trains E and G together.
    gan = models.kind == "gan"
    opt_G = _optimizer(G.parameters(), cfg.optim.g_lr, cfg, device, rt.fused) if gan else None
    opt_D = _optimizer(D.parameters(), cfg.optim.d_lr, cfg, device, rt.fused) if D is not None else None
    opt_VAE = _optimizer(list(E.parameters()) + list(G.parameters()), cfg.optim.g_lr, cfg, device,
                         rt.fused) if not gan else None
    optimizers = {k: v for k, v in (("G", opt_G), ("D", opt_D), ("VAE", opt_VAE)) if v is not None}
    loader = ClipLoader(archive, batch, seed=cfg.schedule.seed, augment=AugmentConfig(flip=cfg.data.flip),
                        rank=rank, world_size=world, num_workers=cfg.data.num_workers, device=device)
    nimg, step = 0, 0
    model_spec = {"name": models.name, "kwargs": models.kwargs}

    # Resume: weights, optimizers, counters, loader position and every RNG state.
    if resume:
        nimg, step = checkpoint.resume_into(resume, out, model_spec, {"G": G, "D": D, "E": E, "G_ema": G_ema}, optimizers,
                             loader, (gen_latent, gen_aug), seed, invariant, say)

    # Wrap for DDP: phases that train a network go through the wrapper, everything else not.
    G_train, D_train, E_train = G, D, E
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # R1's double backward hands DDP gradients of a transposed layout for some weights: harmless.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        ids = [device.index] if cuda else None
        if invariant:  # batch statistics over the global batch (G_ema keeps plain BN: eval only)
            for net in (G, D, E):
                if net is not None:
                    dist.sync_batchnorm(net)
        G_train = DDP(G, device_ids=ids)
        D_train = DDP(D, device_ids=ids) if D is not None else None
        E_train = DDP(E, device_ids=ids) if E is not None else None
    use_D = gan and D is not None
    D_main, D_frozen = D_train, D    # D reg always runs eagerly: compiled graphs do not double-backward
    if rt.compile:
        G_train = torch.compile(G_train)
        if use_D:
            D_main, D_frozen = torch.compile(D_train), torch.compile(D)

    # Write the run folder (rank 0): config.json, and the config printed once.
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        for tmp in checkpoint.remove_temporaries(out):
            say(f"removed {tmp.name} (left by an interrupted write)")
        atomic_write_text(out / "config.json", to_json(cfg))
        say(describe(cfg))
        say(f"model {models.name}: G {sum(p.numel() for p in G.parameters()) / 1e6:.2f}M params"
            + (f", D {sum(p.numel() for p in D.parameters()) / 1e6:.2f}M" if D is not None else "")
            + (f", E {sum(p.numel() for p in E.parameters()) / 1e6:.2f}M" if E is not None else "")
            + f"; device {device}, {world} rank(s), batch {batch}/rank, "
            + f"{'bf16 autocast' if rt.bf16 else 'fp32'}{', channels-last' if rt.channels_last else ''}"
            + f"{', fused AdamW' if rt.fused else ''}{', compiled' if rt.compile else ''}; out {out}")
    total_nimg = cfg.schedule.kimg * 1000 if cfg.schedule.kimg > 0 else float("inf")
    logger = RunLogger(out, total_nimg, nimg, deadline, cfg.log.tensorboard, cfg.log.progress)
    from kinema.metrics.motion import TrainingProbe  # motion vs real clips at snapshots (built-in data)
    motion = TrainingProbe.for_run(cfg.data.source, cfg.data.resolution, archive.channels, G, cfg.log.motion_clips,
                                   device) if dist.is_main() else None
    stats = Stats()
    sample_seeds = list(range(cfg.log.num_samples))
    next_log, next_sample, next_snapshot = (_next_tick(nimg, k) for k in
                                            (cfg.log.log_kimg, cfg.log.sample_kimg, cfg.log.snapshot_kimg))
    check_every = 1 if not cuda else 20     # NaN check: on CUDA only every few steps (host sync)
    bad = torch.zeros((), dtype=torch.bool, device=device)
    export_path = state_path = None
    record: dict = {}

    def guard(name: str, loss: torch.Tensor) -> None:
        nonlocal bad
        bad = bad | ~torch.isfinite(loss.detach())
        if not cuda and bool(bad):
            raise TrainingDiverged(f"loss {name} is {float(loss.detach())} at {nimg / 1000:.3f} kimg (step {step}); "
                                   f"stopping without saving, the last good state in {out} is intact")

    def share(x: torch.Tensor, n: int) -> torch.Tensor:
        # World-invariant: x holds the draws of the whole global batch [world * n, ...]; keep ours.
        return x[rank * n:(rank + 1) * n] if invariant else x

    def fake_labels(n: int):
        if not num_classes:
            return None
        return to_device(share(torch.randint(num_classes, (n * world if invariant else n,), generator=gen_latent), n),
                         device)

    def latents(n: int) -> dict:
        drawn = G.make_latents(n * world if invariant else n, generator=gen_latent)   # on the CPU
        return {k: to_device(share(v, n), device) for k, v in drawn.items()}

    def opt_step(opt, params, name: str, stats_on: bool) -> None:
        params = [p for p in params if p.grad is not None]
        if cfg.optim.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        elif stats_on:
            norm = _grad_norm(params)
        if stats_on:
            stats.add(f"gradnorm/{name}", norm)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def save_snapshot(final: bool) -> None:
        nonlocal export_path, state_path
        if bool(bad):
            raise TrainingDiverged(f"a loss became NaN/Inf before {nimg / 1000:.3f} kimg (step {step}); "
                                   f"stopping without saving, the last good state in {out} is intact")
        # Every rank must hold what rank 0 is about to save (collective: all ranks call it).
        dist.check_consistent({"G": G, "D": D, "E": E, "G_ema": G_ema}, f"{out} at step {step}: ")
        if dist.is_main():
            state_path = checkpoint.save_state(out, nimg, {
                "model": model_spec, "config": to_json(cfg),
                "G": G.state_dict(), "D": D.state_dict() if D is not None else None,
                "E": E.state_dict() if E is not None else None, "G_ema": G_ema.state_dict(),
                "opt": {k: o.state_dict() for k, o in optimizers.items()}, "scaler": None,
                "counters": {"nimg": nimg, "step": step, "world_size": world},
                "loader": loader.state_dict(), "ranks": ranks_state}, cfg.log.keep)
            meta = {"kimg": nimg / 1000, "fps": float(archive.fps or 8), "class_names": list(archive.class_names),
                    "source": cfg.data.source, "final": final}
            export_path = checkpoint.save_export(out, nimg, G_ema, models.name, models.kwargs, meta, cfg.log.keep)
            logger.message(f"saved {state_path.name} and {export_path.name}"
                           + (f" (parameters identical on {world} ranks)" if world > 1 else ""))
        dist.barrier()

    # Main loop.
    with _StopSignal() as stop:
        stopped_by = "kimg"
        while True:
            if nimg >= total_nimg:
                break
            stats_on = nimg + cfg.schedule.batch >= next_log
            with _phase("data"):
                real, labels = next(loader)                       # [B, C, T, H, W] in [-1, 1]
                if rt.channels_last:
                    real = real.contiguous(memory_format=torch.channels_last_3d)
            labels = labels if num_classes else None

            # D main: real vs. fake, G frozen (plain module, no grad, no DDP sync). One backward per
            # forward, so DDP sees each parameter exactly once per backward.
            if use_D:
                with _phase("D_main"):
                    D.requires_grad_(True)
                    with torch.no_grad(), amp:
                        y_fake = fake_labels(batch)
                        fake = G(latents(batch), y_fake)
                    with amp:
                        logits_fake = D_main(augment(fake, aug_draws), y_fake)
                    loss_fake = losses.d_loss_fake(logits_fake, cfg.loss.kind)
                    guard("D(fake)", loss_fake)
                    loss_fake.backward()
                    with amp:
                        logits_real = D_main(augment(real, aug_draws), labels)
                    loss_real = losses.d_loss_real(logits_real, cfg.loss.kind)
                    guard("D(real)", loss_real)
                    loss_real.backward()
                    opt_step(opt_D, D.parameters(), "D", stats_on)
                    stats.add("loss/D", loss_real.detach() + loss_fake.detach())
                    if stats_on:
                        stats.add("D/real", losses.logits_mean(logits_real))
                        stats.add("D/fake", losses.logits_mean(logits_fake))

            # D reg: lazy R1 on augmented reals, every r1_interval steps, gamma scaled by the interval.
            if use_D and cfg.loss.r1_gamma > 0 and step % cfg.loss.r1_interval == 0:
                with _phase("D_reg"):
                    x = augment(real, aug_draws).detach().requires_grad_(True)
                    with amp:
                        logits = D_train(x, labels)
                    r1 = losses.r1_penalty(x, logits)
                    guard("R1", r1)
                    zero = sum(h.float().sum() for h in logits) * 0     # keep every D weight in the graph (DDP)
                    (r1 * (cfg.loss.r1_gamma / 2) * cfg.loss.r1_interval + zero).backward()
                    opt_step(opt_D, D.parameters(), "D_reg", False)
                    stats.add("loss/R1", r1)

            # G main: through a frozen D (plain module: its weights need no gradient sync).
            if gan and step % cfg.optim.d_steps == 0:
                with _phase("G_main"):
                    D.requires_grad_(False)
                    with amp:
                        y_fake = fake_labels(batch)
                        fake = G_train(latents(batch), y_fake)
                        loss_G = losses.g_loss(D_frozen(augment(fake, aug_draws), y_fake), cfg.loss.kind)
                    guard("G", loss_G)
                    loss_G.backward()
                    opt_step(opt_G, G.parameters(), "G", stats_on)
                    stats.add("loss/G", loss_G)
                    if stats_on:
                        stats.add("diversity", losses.diversity(fake, real))

            # VAE main: reconstruct the reals through E and G, KL to the prior (models' own loss).
            if not gan:
                with _phase("VAE_main"):
                    with amp:
                        terms = vae_loss(E_train, G_train, real, cfg.loss.kl_weight, labels)
                    guard("VAE", terms["total"])
                    terms["total"].backward()
                    opt_step(opt_VAE, list(E.parameters()) + list(G.parameters()), "VAE", stats_on)
                    for k in ("total", "recon", "kl"):
                        stats.add(f"loss/VAE_{k}", terms[k])

            # Update the clock and the EMA generator.
            nimg += cfg.schedule.batch
            step += 1
            with _phase("ema"):
                update_ema(G_ema, G, ema_beta(cfg.schedule.batch, nimg, cfg.schedule.ema_kimg, cfg.schedule.ema_rampup))
            logger.step(nimg, cfg.schedule.batch)
            if cuda and step % check_every == 0 and bool(bad):
                raise TrainingDiverged(f"a loss became NaN/Inf before {nimg / 1000:.3f} kimg (step {step}); "
                                       f"stopping without saving, the last good state in {out} is intact")

            # Decide whether to stop (all ranks agree: a signal or the clock on any rank stops all).
            flags = torch.tensor([float(stop.requested), float(deadline is not None and time.monotonic() >= deadline)])
            # (Multi-rank: agreed every check_every steps only; with NCCL the reduce syncs the host.)
            if world > 1:
                flags = dist.all_reduce_max(flags) if step % check_every == 0 else torch.zeros(2)
            done = nimg >= total_nimg or bool(flags.any())
            if flags[0]:
                stopped_by = "signal"
            elif flags[1]:
                stopped_by = "time"

            # Log, sample, save.
            if stats_on or done:
                for name, opt in optimizers.items():
                    stats.add(f"lr/{name}", opt.param_groups[0]["lr"])
                record = logger.scalars(nimg, stats.collect()) or record
                next_log = _next_tick(nimg, cfg.log.log_kimg)
            if nimg >= next_sample or nimg >= next_snapshot or done:
                refresh_batchnorm(G_ema, device)
            if nimg >= next_sample or done:
                videos = generate(G_ema, sample_seeds, device=device)
                logger.samples(nimg, to_uint8(videos), fps=float(archive.fps or 8))
                next_sample = _next_tick(nimg, cfg.log.sample_kimg)
            if nimg >= next_snapshot or done:
                ranks_state = checkpoint.gather_rank_states(gen_latent, gen_aug)
                save_snapshot(final=done)
                if motion is not None:
                    logger.values(nimg, motion(G_ema), label="motion vs real")
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
