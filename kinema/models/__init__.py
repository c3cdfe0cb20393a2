"""Generative video models: a registry of named presets, each built from explicit keyword arguments.

    from kinema.models import build
    ms = build("mocogan", resolution=32, frames=16, channels=1)
    latents = ms.G.make_latents(8, generator=torch.Generator().manual_seed(0))
    video = ms.G(latents)            # [8, C, T, H, W] in [-1, 1]
    logits = ms.D(video)             # list, one tensor per head, batch dim first

Every generator has ``resolution, frames, channels, num_classes, can_extend``,
``make_latents(n, frames=None, generator=None, device="cpu") -> dict`` and
``forward(latents, labels=None) -> [n, C, T, H, W]``. Every discriminator has
``forward(video [B, C, T, H, W], labels=None) -> list[Tensor]``. The VAE has ``E(video) ->
(mu, logvar)`` and ``videovae.vae_loss``; the flow transformer (kind "flow") has ``flow.flow_loss``
and integrates an ODE inside ``forward`` (``G.sampler``: steps, solver, cfg). Call ``G.eval()`` before sampling: generators use
BatchNorm, whose batch statistics would otherwise tie a video to the rest of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from kinema.errors import KinemaError
from kinema.models import ctgan, dcgan, flow, mocogan, videogan, videovae
from kinema.models.options import check


@dataclass
class ModelSet:
    """The networks of one model: G always, D for GANs, E for the VAE; ``kwargs`` as resolved (JSON-able)."""

    G: nn.Module
    D: nn.Module | None
    E: nn.Module | None
    kind: str  # "gan" | "vae" | "flow"
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


# name -> factory(**kwargs) -> ModelSet. Defaults of each factory are the fast CPU configuration
# (32x32x16, 1 channel) that learns the moving-digits demo; scale ``width`` up on a GPU.
MODELS: dict[str, Callable[..., ModelSet]] = {
    "dcgan": dcgan.build,
    "mocogan": mocogan.build,
    "videogan": videogan.build,
    "videovae": videovae.build,
    "ctgan": ctgan.build,
    "flow": flow.build,
}


def model_options(name: str) -> dict:
    """The option bounds model ``name`` declares with its build (``kinema.models.options.bounded``)."""
    if name not in MODELS:
        raise KinemaError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    schema = getattr(MODELS[name], "options", None)
    if schema is None:  # every registered model must declare its bounds: nothing is built unchecked
        raise KinemaError(f"model {name}: declares no option bounds (decorate its build with kinema.models.options.bounded)")
    return schema


def accepted_options(name: str, options: dict) -> dict:
    """The entries of ``options`` that model ``name`` has (a preset's model options carried over to
    another model keep only those)."""
    schema = model_options(name)
    return {k: v for k, v in options.items() if k in schema}


def check_options(name: str, kwargs: dict) -> None:
    """Validate ``kwargs`` (e.g. read from a file) against model ``name``'s declared bounds without
    building anything; one-line KinemaError naming the option otherwise."""
    if not isinstance(kwargs, dict):
        raise KinemaError(f"model {name}: options must be an object")
    check(name, model_options(name), kwargs)


def build(name: str, **kwargs) -> ModelSet:
    """Build model ``name`` with keyword options; unknown names, unknown options and options
    outside their declared bounds -> KinemaError (before anything is allocated)."""
    check_options(name, kwargs)
    return MODELS[name](**kwargs)


def count_params(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def flops_per_clip(model_set: ModelSet, frames: int | None = None) -> dict[str, int]:
    """Forward FLOPs per clip of each network: {"G": ..., "D": ..., "E": ..., "total": ...}.

    Counted by torch's FlopCounterMode (2 FLOPs per multiply-add over convolutions, matmuls and
    attention) on one clip at the model's resolution, in eval mode (modes restored afterwards).
    ``frames`` lets extendable generators be measured at another length. Training costs about
    3x forward (forward + backward): MFU = 3 * total * clips/s / peak FLOP/s. The global RNG
    state is left untouched (mocogan's D draws frames), so calling this mid-training is harmless.
    """
    from torch.utils.flop_counter import FlopCounterMode

    G = model_set.G
    device = next(G.parameters()).device
    labels = torch.zeros(1, dtype=torch.long, device=device) if G.num_classes else None
    nets = {"G": G, "D": model_set.D, "E": model_set.E}
    modes = {m: m.training for net in nets.values() if net is not None for m in net.modules()}
    out = {"G": 0, "D": 0, "E": 0}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            latents = G.eval().make_latents(1, frames=frames, generator=torch.Generator().manual_seed(0),
                                            device=device)
            with FlopCounterMode(display=False) as counter:
                video = G(latents, labels)  # [1, C, T, H, W]
            out["G"] = counter.get_total_flops()
            k = int(getattr(G, "sparse_frames", 0) or 0)   # a continuous-time D sees k frames per clip
            for key in ("D", "E"):
                if nets[key] is not None:
                    with FlopCounterMode(display=False) as counter:
                        nets[key].eval()(video[:, :, :k] if k and key == "D" else video, labels)
                    out[key] = counter.get_total_flops()
    finally:
        for m, mode in modes.items():
            m.train(mode)
    out["total"] = out["G"] + out["D"] + out["E"]
    return out


from kinema.models.export import load_generator, save_generator  # noqa: E402  (needs build above)

__all__ = ["MODELS", "ModelSet", "accepted_options", "build", "check_options", "model_options", "count_params", "flops_per_clip", "save_generator", "load_generator"]
