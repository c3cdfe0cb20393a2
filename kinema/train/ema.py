"""Exponential moving average of the generator's weights, with a half-life counted in clips.

Expressing the decay as a half-life in samples (rather than a per-step beta) makes it independent
of the batch size: after ``half_life`` clips an old weight's influence has halved, whatever the
batch. The per-step factor is ``beta = 0.5 ** (batch / half_life)``.

Ramp-up: early in training the weights move fast and a long half-life would average in the random
initialisation for a long time, so the half-life is capped at ``rampup * clips_seen``.
"""

from __future__ import annotations

import copy

import torch


def ema_beta(batch: int, nimg: int, half_life_kimg: float, rampup: float = 0.0) -> float:
    """Per-step decay for a step of ``batch`` clips taken when ``nimg`` clips have been seen."""
    half_life = half_life_kimg * 1000.0
    if rampup > 0:
        half_life = min(half_life, nimg * rampup)
    if half_life <= 0:
        return 0.0  # no history yet: copy the weights
    return 0.5 ** (batch / half_life)


def make_ema(G: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of the (unwrapped) generator to average into; kept in eval mode."""
    G_ema = copy.deepcopy(G).eval()
    G_ema.requires_grad_(False)
    return G_ema


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """``p_ema <- beta * p_ema + (1 - beta) * p``; buffers (e.g. norm statistics) are copied."""
    ema, live = list(G_ema.parameters()), [p.detach() for p in G.parameters()]
    if len(ema) != len(live):
        raise ValueError(f"update_ema: {len(ema)} EMA parameters for {len(live)} generator parameters")
    # One fused multi-tensor kernel instead of a launch per parameter (matters on GPUs).
    torch._foreach_lerp_(ema, [p.to(e.dtype) for e, p in zip(ema, live)], 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def refresh_batchnorm(G_ema: torch.nn.Module, device, batches: int = 8, batch: int = 32, seed: int = 0) -> None:
    """Recompute G_ema's BatchNorm statistics from its own outputs ("standing statistics").

    Why: the running statistics copied from G describe G's activations, not those of the averaged
    weights, and in eval mode that mismatch blurs or washes out samples early in training.
    Uses fixed-seed latents (its own generator: the training RNG streams are not touched) and
    leaves G_ema in eval mode. A no-op for generators without BatchNorm.
    """
    norms = [m for m in G_ema.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    gen = torch.Generator().manual_seed(seed)
    G_ema.train()
    try:
        for _ in range(batches):
            latents = G_ema.make_latents(batch, generator=gen, device=device)
            labels = torch.randint(G_ema.num_classes, (batch,), generator=gen).to(device) if G_ema.num_classes else None
            G_ema(latents, labels)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        G_ema.eval()
