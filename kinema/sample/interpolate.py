"""Latent interpolation between seeds, in the content and/or motion latents, optionally looping.

A path through the seeds ``s0, s1, ..., sk`` is cut into ``steps`` clips per segment. Clip ``i``
of the path is generated from latents mixed between its segment's two seeds with weight ``t``:

    not looping: s0 -> s1 -> ... -> sk            (k * steps + 1 clips; the last is exactly sk)
    looping:     s0 -> s1 -> ... -> sk -> s0      (k+1 segments, (k + 1) * steps clips; the
                                                   clip after the last would be exactly s0, so the
                                                   sequence plays seamlessly on repeat)

Gaussian latents are mixed by spherical interpolation (slerp), which keeps their norm typical
(a straight line between two gaussian samples passes through low-norm, washed-out latents).
At ``t = 0`` and ``t = 1`` the seed's own latents are used verbatim, so the end clips equal the
seeds' videos from :func:`kinema.sample.generate.generate` byte for byte.

``space`` picks which latent keys move (e.g. ``"content"`` morphs appearance while the motion
stays the first seed's; ``"motion"`` the reverse; ``"all"`` moves everything). Keys that do not
move stay at the first seed's value, so then only the start clip equals a seed video.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from kinema.errors import KinemaError
from kinema.models.latents import slerp
from kinema.sample.generate import (cat_latents, check_truncation, model_name, resolve_frames,
                                    resolve_label, run_generator, seed_latents)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    return a + (b - a) * t


def interpolation_path(num_seeds: int, steps: int, loop: bool = False) -> list[tuple[int, int, float]]:
    """``[(i, j, t), ...]``: clip ``k`` mixes seed ``i`` and seed ``j`` with weight ``t`` on ``j``."""
    if num_seeds < 2:
        raise KinemaError(f"interpolation needs at least 2 seeds, got {num_seeds}")
    if int(steps) != steps or steps < 1:
        raise KinemaError(f"steps must be a whole number >= 1, got {steps}")
    segments = [(i, (i + 1) % num_seeds) for i in range(num_seeds if loop else num_seeds - 1)]
    path = [(i, j, k / steps) for i, j in segments for k in range(int(steps))]
    if not loop:
        path.append((num_seeds - 2, num_seeds - 1, 1.0))
    return path


def resolve_space(space: str | Sequence[str], keys: Sequence[str], name: str) -> list[str]:
    """The latent keys to interpolate: ``"all"``, one key, or a comma list (must exist)."""
    if isinstance(space, str):
        space = list(keys) if space == "all" else [s.strip() for s in space.split(",") if s.strip()]
    missing = [s for s in space if s not in keys]
    if missing or not space:
        raise KinemaError(f"model '{name}' has latents {', '.join(keys)}; cannot interpolate {', '.join(missing) or 'nothing'}")
    return list(space)


def interpolate_batches(G, seeds: Sequence[int], steps: int = 8, frames: int | None = None,
                        space: str | Sequence[str] = "all", loop: bool = False, class_=None,
                        truncation: float = 1.0, batch: int = 8, device="cpu", method: str = "slerp",
                        config: dict | None = None) -> Iterator[torch.Tensor]:
    """Yield the path's clips in order, ``batch`` at a time: float ``[b, C, T, H, W]`` in [-1, 1].

    Labels: ``class_`` when given, else each clip takes the class of its nearer seed.
    """
    if method not in ("slerp", "lerp"):
        raise KinemaError(f"interpolation method must be slerp or lerp, got {method!r}")
    mix = slerp if method == "slerp" else lerp
    name = model_name(G, config)
    n_frames = resolve_frames(G, frames, name)
    label = resolve_label(G, class_, ((config or {}).get("meta") or {}).get("class_names"), name)
    truncation = check_truncation(truncation)
    path = interpolation_path(len(seeds), steps, loop)
    G.eval()
    keys_of = [seed_latents(G, s, n_frames, device, label, truncation) for s in seeds]
    moving = resolve_space(space, list(keys_of[0][0]), name)
    clips, labels = [], []
    for idx, (i, j, t) in enumerate(path):
        (la, ya), (lb, yb) = keys_of[i], keys_of[j]
        lat = {k: (mix(la[k], lb[k], t) if k in moving else keys_of[0][0][k].clone()) for k in la}
        clips.append(lat)
        labels.append(ya if t < 0.5 else yb)
        if len(clips) == batch or idx == len(path) - 1:
            yield run_generator(G, cat_latents(clips), labels, device)[:, :, :n_frames]
            clips, labels = [], []


def interpolate(G, seeds: Sequence[int], steps: int = 8, **kwargs) -> torch.Tensor:
    """All clips of the path: float ``[K, C, T, H, W]`` on the CPU (see :func:`interpolate_batches`)."""
    return torch.cat([v.cpu() for v in interpolate_batches(G, seeds, steps, **kwargs)])


def join_clips(clips: torch.Tensor) -> torch.Tensor:
    """Play clips one after another: ``[K, C, T, H, W]`` -> one video ``[C, K*T, H, W]``."""
    k, c, t, h, w = clips.shape
    return clips.permute(1, 0, 2, 3, 4).reshape(c, k * t, h, w)


def count_clips(num_seeds: int, steps: int, loop: bool) -> int:
    """Number of clips :func:`interpolate` returns (for progress bars and file sizes)."""
    return len(interpolation_path(num_seeds, steps, loop))



def walk_loop(G, seeds: Sequence[int], frames: int, class_=None, truncation: float = 1.0, chunk: int = 32,
              device="cpu", config: dict | None = None, closed: bool = True) -> torch.Tensor:
    """One seamless looping video for frame-per-latent models (dcgan): float ``[C, frames, H, W]``.

    Frame ``i``'s latent sits at position ``p = i * len(seeds) / frames`` on the closed path
    through the seeds' first-frame latents (slerp inside each segment), so frame ``frames`` would
    be frame 0 again: played on repeat there is no seam. ``closed=False`` returns ``frames + 1``
    frames including that repeat (the tests use it to check the seam). Whole-clip models have no
    per-frame latent to walk; for them use :func:`interpolate` with ``loop=True``.
    """
    from kinema.sample.stream import pick_strategy

    name = model_name(G, config)
    if pick_strategy(G) != "walk":
        raise KinemaError(f"model '{name}' has no per-frame latent to walk; loop clips instead "
                          f"(--interpolate STEPS --loop)")
    if len(seeds) < 2:
        raise KinemaError(f"a walk loop needs at least 2 seeds, got {len(seeds)}")
    if int(frames) != frames or frames < 2:
        raise KinemaError(f"frames must be a whole number >= 2, got {frames}")
    label = resolve_label(G, class_, ((config or {}).get("meta") or {}).get("class_names"), name)
    keys, labels = zip(*[seed_latents(G, s, int(G.frames), "cpu", label,
                                                   check_truncation(truncation)) for s in seeds])
    anchors = [k["z"][:, 0] for k in keys]                    # each [1, Z]: first-frame latent of the seed's video
    k = len(anchors)
    G.eval()
    out = []
    total = int(frames) + (0 if closed else 1)
    for start in range(0, total, chunk):
        zs = []
        for i in range(start, min(total, start + chunk)):
            seg, t = divmod(i * k / frames, 1.0)
            seg = int(seg) % k
            zs.append(slerp(anchors[seg], anchors[(seg + 1) % k], float(t)))
        z = torch.stack(zs, 1).to(device)                     # [1, t, Z]
        out.append(run_generator(G, {"z": z}, [labels[0]], device)[0].cpu())
    return torch.cat(out, 1)
