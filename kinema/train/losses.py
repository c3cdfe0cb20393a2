"""GAN and VAE objectives.

A discriminator returns a list of logit tensors, one per head (e.g. MoCoGAN's image head
``[B*T', 1]`` and video head ``[B, 1]``). Every loss here is averaged within a head and summed
over heads, so a model with two heads weighs each of them equally, whatever their sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(kind: str) -> None:
    if kind not in ("ns", "hinge"):
        raise ValueError(f"unknown loss kind {kind!r} (ns, hinge)")


def _heads(logits) -> list[torch.Tensor]:
    # Accept a bare tensor as a one-head discriminator; compute in fp32 even under bf16 autocast.
    if isinstance(logits, torch.Tensor):
        logits = [logits]
    return [x.float() for x in logits]


def d_loss_real(real_logits, kind: str = "ns") -> torch.Tensor:
    """D's loss on real clips, scalar: ``softplus(-D(x))`` (ns) or ``relu(1 - D(x))`` (hinge)."""
    _check(kind)
    f = (lambda x: F.softplus(-x)) if kind == "ns" else (lambda x: F.relu(1 - x))
    return sum(f(h).mean() for h in _heads(real_logits))


def d_loss_fake(fake_logits, kind: str = "ns") -> torch.Tensor:
    """D's loss on generated clips, scalar: ``softplus(D(G(z)))`` (ns) or ``relu(1 + D(G(z)))`` (hinge)."""
    _check(kind)
    f = F.softplus if kind == "ns" else (lambda x: F.relu(1 + x))
    return sum(f(h).mean() for h in _heads(fake_logits))


def d_loss(real_logits, fake_logits, kind: str = "ns") -> torch.Tensor:
    """Full discriminator loss: real part + fake part (binary cross-entropy or hinge)."""
    return d_loss_real(real_logits, kind) + d_loss_fake(fake_logits, kind)


def g_loss(fake_logits, kind: str = "ns") -> torch.Tensor:
    """Generator loss, scalar: non-saturating ``softplus(-D(G(z)))`` or hinge ``-D(G(z))``."""
    _check(kind)
    f = (lambda x: F.softplus(-x)) if kind == "ns" else (lambda x: -x)
    return sum(f(h).mean() for h in _heads(fake_logits))


def r1_penalty(real: torch.Tensor, real_logits) -> torch.Tensor:
    """R1 = E ||d sum(D(x)) / dx||^2 for ``real`` [B, C, T, H, W] that requires grad.

    Returns the per-sample squared gradient norm averaged over the batch (unweighted; the caller
    multiplies by gamma / 2 and by the lazy interval). ``create_graph=True`` so the penalty itself
    can be backpropagated into D's weights (a double backward).
    """
    heads = _heads(real_logits)
    # Each head is averaged elsewhere; summing logits here gives the gradient of every head at once.
    outputs = sum(h.sum() for h in heads)
    (grad,) = torch.autograd.grad(outputs=outputs, inputs=real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def logits_mean(logits) -> float | torch.Tensor:
    """Mean raw logit over heads (for logging D(real) / D(fake)), detached."""
    heads = _heads(logits)
    return sum(h.detach().mean() for h in heads) / len(heads)


def diversity(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mode-collapse alarm: mean pairwise distance among fakes / the same among reals.

    ``fake``, ``real``: [B, C, T, H, W] with B >= 2. About 1 when G is as varied as the data,
    heading to 0 when every sample looks the same. Pairs are (i, i+1 mod B), cheap and unbiased.
    """
    def spread(x):
        x = x.detach().float().flatten(1)
        return (x - x.roll(1, dims=0)).square().mean(1).sqrt().mean()
    return spread(fake) / spread(real).clamp_min(1e-8)
