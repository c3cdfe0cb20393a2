"""Seeded generation: one seed -> one video, whatever the batch size or the device.

Procedure for each seed ``s`` (a plain function outside the network, StyleGAN-style):

    gen = torch.Generator().manual_seed(s)                       # CPU generator
    latents = G.make_latents(1, frames, generator=gen, device)   # dict of [1, ...] tensors
    label = class_ if given else randint(num_classes, generator=gen)
    latents = truncate(latents, psi)

and the per-seed latents are concatenated into batches of ``batch`` videos for ``G(latents, labels)``
-> ``[B, C, T, H, W]`` in [-1, 1]. The latents depend on the seed alone and G runs in eval mode (no
batch statistics), so a seed's video does not depend on its batch-mates except through the float
summation order of BLAS/convolution kernels, which differs with the batch size: on CPU that flips
at most one grey level in a few values out of 10^5 (tests/test_sample.py). Same seed, same batch
composition, same device and software: byte-identical.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from kinema.errors import KinemaError


def model_name(G, config: dict | None = None) -> str:
    """A short name for messages: the registry name from the export config, else the class."""
    if config and config.get("name"):
        return str(config["name"])
    return type(G).__name__


def resolve_frames(G, frames: int | None, name: str) -> int:
    """Check a requested clip length against the model; ``None`` means the trained length."""
    if frames is None:
        return int(G.frames)
    if int(frames) != frames or frames < 1:
        raise KinemaError(f"frames must be a whole number >= 1, got {frames}")
    if frames > G.frames and not getattr(G, "can_extend", False):
        raise KinemaError(
            f"model '{name}' generates clips of exactly {G.frames} frames and cannot extend them to "
            f"{frames}; ask for at most {G.frames} or use `kinema stream`, which chains clips")
    return int(frames)


def resolve_label(G, class_, class_names: Sequence[str] | None, name: str) -> int | None:
    """``class_`` as an index: an int, a numeric string, or one of the export's class names."""
    if class_ is None:
        return None
    if not G.num_classes:
        raise KinemaError(f"model '{name}' is unconditional; --class cannot be used")
    if isinstance(class_, str) and not class_.lstrip("-").isdigit():
        names = list(class_names or [])
        if class_ not in names:
            raise KinemaError(f"model '{name}' has no class named {class_!r} (classes: {', '.join(names) or 'unnamed'})")
        return names.index(class_)
    k = int(class_)
    if not 0 <= k < G.num_classes:
        raise KinemaError(f"class {k} out of range: model '{name}' has {G.num_classes} classes (0..{G.num_classes - 1})")
    return k


def truncate(latents: dict[str, torch.Tensor], psi: float) -> dict[str, torch.Tensor]:
    """Truncation as temperature: pull every float latent towards its prior mean (zero) by ``psi``.

    psi = 1 leaves the samples untouched; smaller psi trades variety for typical-looking samples.
    """
    if psi == 1:
        return latents
    return {k: (v * psi if v.is_floating_point() else v) for k, v in latents.items()}


def seed_latents(G, seed: int, frames: int | None, device: str | torch.device = "cpu",
                 label: int | None = None, truncation: float = 1.0) -> tuple[dict[str, torch.Tensor], int | None]:
    """The latents ``{key: [1, ...]}`` and class index of one seed's video.

    ``frames`` goes to ``make_latents`` only for models that can extend; fixed-length models
    always draw their own length (the caller cuts a shorter request afterwards).
    """
    gen = torch.Generator().manual_seed(int(seed))
    n_frames = frames if getattr(G, "can_extend", False) else None
    latents = G.make_latents(1, frames=n_frames, generator=gen, device=device)
    if G.num_classes and label is None:
        # Drawn after the latents from the same stream, so one seed also fixes its class.
        label = int(torch.randint(G.num_classes, (1,), generator=gen))
    return truncate(latents, truncation), label


def cat_latents(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-video latent dicts along the batch axis: ``[1, ...]`` x n -> ``[n, ...]``."""
    return {k: torch.cat([d[k] for d in items]) for k in items[0]}


@torch.no_grad()
def run_generator(G, latents: dict[str, torch.Tensor], labels: list[int | None], device) -> torch.Tensor:
    """``G(latents, labels)`` -> float ``[n, C, T, H, W]`` in [-1, 1] (labels None if unconditional)."""
    y = torch.tensor(labels, dtype=torch.long, device=device) if G.num_classes else None
    return G(latents, y)


def check_truncation(truncation: float) -> float:
    if not 0 <= truncation <= 2:
        raise KinemaError(f"truncation must be in [0, 2], got {truncation}")
    return float(truncation)


def default_frames(G, config: dict | None) -> int:
    """The clip length a generator is sampled at when none is asked for: the export's
    ``meta.preview_frames`` (what its training preview showed) for models that can extend their
    clips, else the trained length."""
    preview = int(((config or {}).get("meta") or {}).get("preview_frames") or 0)
    return preview if preview > 0 and getattr(G, "can_extend", False) else int(G.frames)


def generate_batches(G, seeds: Sequence[int], frames: int | None = None, class_=None,
                     truncation: float = 1.0, batch: int = 8, device: str | torch.device = "cpu",
                     config: dict | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(seeds_of_batch, video float [b, C, T, H, W] in [-1, 1])`` for ``seeds`` in order.

    Only one batch of videos is alive at a time, so any number of seeds fits in memory.
    """
    name = model_name(G, config)
    n_frames = resolve_frames(G, frames if frames is not None else default_frames(G, config), name)
    class_names = ((config or {}).get("meta") or {}).get("class_names")
    label = resolve_label(G, class_, class_names, name)
    truncation = check_truncation(truncation)
    if int(batch) != batch or batch < 1:
        raise KinemaError(f"batch must be a whole number >= 1, got {batch}")
    G.eval()
    for i in range(0, len(seeds), int(batch)):
        chunk = list(seeds[i:i + int(batch)])
        per_seed = [seed_latents(G, s, n_frames, device, label, truncation) for s in chunk]
        video = run_generator(G, cat_latents([lat for lat, _ in per_seed]), [y for _, y in per_seed], device)
        yield chunk, video[:, :, :n_frames]


def generate(G, seeds: Sequence[int], frames: int | None = None, class_=None, truncation: float = 1.0,
             batch: int = 8, device: str | torch.device = "cpu", config: dict | None = None) -> torch.Tensor:
    """All of ``seeds`` at once: float ``[len(seeds), C, T, H, W]`` in [-1, 1] on the CPU."""
    parts = [v.cpu() for _, v in generate_batches(G, seeds, frames, class_, truncation, batch, device, config)]
    return torch.cat(parts)
