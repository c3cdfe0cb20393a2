"""Training support for the flow model: a frozen VAE's latents, cached once per archive, a loader of
them, and the random draws of the rectified-flow objective.

Latent models (``model.vae`` names a ``videovae`` run with ``latent="grid"``):

1. the VAE's encoder and decoder come from one training state of that run (exports hold only the
   decoder; a state holds the pair that was trained together);
2. every clip of the archive is encoded once to its posterior mean, and the array is cached in
   ``$KINEMA_CACHE/latents`` (else ``~/.cache/kinema/latents``) under a key hashing the archive's
   content hash and the encoder's weights, so another archive or another VAE is never a stale
   hit; written atomically (a ``.npz``, read with ``allow_pickle=False``);
3. the flow model learns the latents normalised per channel (mean 0, std 1 over the archive);
   the statistics and the decoder travel inside the flow model (kwargs and weights), so an export
   samples videos on its own.

The loader of latents returns, step for step, the clips the pixel loader would have returned
(same order, same sharding, same resumable position), as their latents.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.fsutil import atomic_path

CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------
# The frozen VAE.

def _state_of(spec) -> Path:
    """A videovae run folder, training state, or export -> the training state holding E and G."""
    from kinema.train.checkpoint import EXPORT_RE, list_states

    path = Path(spec)
    if path.is_dir():
        states = list_states(path)
        if not states:
            raise KinemaError(f"{path}: no training-state-*.pt (the VAE's encoder is read from a training state)")
        return states[-1][1]
    if path.suffix == ".pt":
        return path
    m = EXPORT_RE.match(path.with_suffix(".safetensors").name)
    if not m:
        raise KinemaError(f"{path}: not a videovae run folder, training state or export")
    state = path.parent / f"training-state-{m.group(1)}.pt"   # saved together, same tag
    if not state.is_file():
        raise KinemaError(f"{path}: its training state {state.name} is gone (the encoder is read from it); "
                          f"name the run folder to use its newest state")
    return state


def load_vae(spec, device="cpu"):
    """-> (encoder, decoder, {"name", "kwargs"}, weights digest, state path), both in eval mode."""
    from kinema.models import build
    from kinema.train.checkpoint import _digest, load_state

    path = _state_of(spec)
    state = load_state(path)
    model = state.get("model") or {}
    kwargs = model.get("kwargs") or {}
    if model.get("name") != "videovae" or kwargs.get("latent") != "grid":
        raise KinemaError(f"{path}: the flow model needs a videovae with latent='grid' "
                          f"(this is {model.get('name')} {kwargs.get('latent', '')})".rstrip())
    if kwargs.get("num_classes"):
        raise KinemaError(f"{path}: the VAE must be unconditional (its decoder would need labels)")
    vae = build("videovae", **kwargs)
    vae.E.load_state_dict(state["E"])
    vae.G.load_state_dict(state["G"])
    digest = _digest({"E": state["E"], "G": state["G"]})  # the SHA-256 the state itself is checked with
    return vae.E.to(device).eval(), vae.G.to(device).eval(), {"name": "videovae", "kwargs": kwargs}, digest, path


# ----------------------------------------------------------------------------------------------
# The cache.

def cache_dir(path=None) -> Path:
    """``path``, else ``$KINEMA_CACHE/latents``, else ``~/.cache/kinema/latents``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("KINEMA_CACHE")
    return Path(env) / "latents" if env else Path.home() / ".cache" / "kinema" / "latents"


def cache_key(archive_hash: str, vae_digest: str) -> str:
    text = json.dumps({"archive": archive_hash, "vae": vae_digest, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@torch.no_grad()
def encode_archive(archive, E, device="cpu", batch: int = 64) -> np.ndarray:
    """Posterior means of every clip of ``archive``: float32 [N, Zc, t, g, g], in clip order."""
    from kinema.io.convert import from_uint8

    out = []
    for start in range(0, archive.num_clips, batch):
        idx = np.arange(start, min(start + batch, archive.num_clips))
        clips = torch.from_numpy(np.ascontiguousarray(archive.clips(idx)))      # uint8 [b, T, H, W, C]
        mu, _ = E(from_uint8(clips).to(device))                                   # [b, Zc, t, g, g]
        out.append(mu.float().cpu().numpy())
    return np.concatenate(out)


def cached_latents(archive, E, vae_digest: str, device="cpu", folder=None, log=print) -> np.ndarray:
    """The archive's latents from the cache, or encoded now and cached (atomic write)."""
    path = cache_dir(folder) / f"latents-{cache_key(archive.content_hash, vae_digest)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                mu = z["mu"]
            if len(mu) == archive.num_clips:
                log(f"latents: {path} ({len(mu)} clips, cached)")
                return mu
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # torn or foreign file: encode again and replace it
    mu = encode_archive(archive, E, device)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=mu)
    log(f"latents: encoded {len(mu)} clips to {tuple(mu.shape[1:])}, cached in {path}")
    return mu


# ----------------------------------------------------------------------------------------------
# Loop glue.

@dataclass
class FlowData:
    """What a flow run adds to the model's options and data: the VAE's options and latent
    statistics (``model_kwargs``), the decoder's weights and the normalised latents (pixel
    models: all empty)."""
    model_kwargs: dict = field(default_factory=dict)
    decoder_state: dict | None = None
    latents: torch.Tensor | None = None      # float32 [N, Zc, t, g, g], normalised

    def attach(self, G) -> None:
        """Load the frozen decoder's weights into a freshly built flow generator."""
        if self.decoder_state is not None:
            G.decoder.load_state_dict(self.decoder_state)

    def loader(self, clips) -> "LatentLoader | object":
        """The loop's batch source: latents in ``clips``' order, or ``clips`` itself for pixels."""
        return clips if self.latents is None else LatentLoader(clips, self.latents)


def setup(cfg, archive, device, log=print) -> FlowData:
    """The data of a flow run: pixel space, or the latents of ``cfg.model.vae``.

    Under torchrun rank 0 encodes and caches first; the others then read the cache.
    """
    from kinema import dist

    if not cfg.model.vae:
        return FlowData()
    if not dist.is_main():
        dist.barrier()
    E, G, vae_spec, digest, path = load_vae(cfg.model.vae, device)
    vae_kwargs = vae_spec["kwargs"]
    want = (int(archive.resolution[0]), int(archive.frames_per_clip), int(archive.channels))
    got = (vae_kwargs["resolution"], vae_kwargs["frames"], vae_kwargs["channels"])
    if want != got:
        raise KinemaError(f"{path}: the VAE makes {got[1]} frames of {got[0]}x{got[0]}x{got[2]}, the archive "
                          f"{cfg.data.source} holds {want[1]} frames of {want[0]}x{want[0]}x{want[2]}")
    mu = cached_latents(archive, E, digest, device, log=log if dist.is_main() else (lambda *a: None))
    if dist.is_main():
        dist.barrier()
    mu = torch.from_numpy(mu)
    dims = [0] + list(range(2, mu.dim()))
    mean, std = mu.mean(dim=dims, dtype=torch.float64), mu.std(dim=dims).double().clamp_min(1e-6)
    shape = (1, -1) + (1,) * (mu.dim() - 2)
    latents = ((mu.double() - mean.view(shape)) / std.view(shape)).float()
    return FlowData(model_kwargs={"vae": vae_spec, "latent_mean": mean.tolist(), "latent_std": std.tolist()},
                    decoder_state={k: v.cpu() for k, v in G.state_dict().items()}, latents=latents)


class LatentLoader:
    """Endless ``(latents [B, Zc, t, g, g], labels [B])`` for the clips a :class:`ClipLoader` would
    return next: its order, sharding and resumable state, without reading a frame."""

    def __init__(self, clips, latents: torch.Tensor):
        self.clips, self.latents = clips, latents
        self.labels = torch.from_numpy(np.asarray(clips.archive.labels, dtype=np.int64))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        from kinema.devices import to_device

        idx = torch.from_numpy(self.clips.next_indices())
        return to_device(self.latents[idx], self.clips.device), to_device(self.labels[idx], self.clips.device)

    def state_dict(self) -> dict:
        return self.clips.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.clips.load_state_dict(state)


def draws(gen, x1: torch.Tensor, class_dropout: float, time_mean: float, time_std: float,
          video: int | None = None):
    """The random inputs of one flow step for data ``x1`` [B, C, T, ...]: (noise like x1, t, drop).

    t is logit-normal: sigmoid(N(time_mean, time_std^2)), which spends the training on the middle
    of the path where the velocity is hardest to predict (mean 0, std 1 as in SD3); ``drop``: whose
    class is dropped. Both are [B], or, when the frames after the first ``video`` are appended
    images, [B, T]: the clip's frames share one draw, each image has its own. ``gen`` is a CPU
    generator, or a :class:`kinema.train.augment.GlobalDraws` (world-invariant runs: the draws
    cover the global batch and each rank keeps its rows).
    """
    from kinema.devices import to_device
    from kinema.train.augment import GlobalDraws

    b = x1.shape[0]
    g, rows = gen, slice(0, b)
    if isinstance(gen, GlobalDraws):
        g, rows = gen.gen, slice(gen.rank * b, (gen.rank + 1) * b)
        b *= gen.world
    each = 1 if video is None else 1 + x1.shape[2] - video     # the clip, then each image
    noise = torch.randn((b,) + tuple(x1.shape[1:]), generator=g)[rows]
    t = torch.sigmoid(time_mean + time_std * torch.randn(b, each, generator=g))[rows]
    drop = (torch.rand(b, each, generator=g) < class_dropout)[rows]
    if video is None:
        t, drop = t[:, 0], drop[:, 0]
    else:  # per frame: the clip's draw repeated over its frames
        clip = [0] * video + list(range(1, each))
        t, drop = t[:, clip], drop[:, clip]
    return (to_device(noise, x1.device).to(x1.dtype), to_device(t, x1.device), to_device(drop, x1.device))


def append_images(gen: torch.Generator, x1: torch.Tensor, labels: torch.Tensor | None, k: int):
    """Video-image joint training (as in Latte): after each clip of ``x1`` [B, C, T, H, W], ``k``
    frames of random clips of the batch at random times, each an independent image for the
    transformer (no temporal attention, its own flow time and class).

    -> (x1 [B, C, T + k, H, W], labels [B, T + k] per frame or None, T). Drawn from ``gen`` (the
    loop's latent generator: resumable). On a VAE's latents a "frame" is a latent frame.
    """
    from kinema.devices import to_device

    b, T = x1.shape[0], x1.shape[2]
    j = torch.randint(b, (b, k), generator=gen)
    tau = torch.randint(T, (b, k), generator=gen)
    j, tau = to_device(j, x1.device), to_device(tau, x1.device)
    images = x1[j, :, tau].permute(0, 2, 1, 3, 4)                  # [B, k, C, H, W] -> [B, C, k, H, W]
    if labels is not None:
        labels = torch.cat([labels[:, None].expand(b, T), labels[j]], 1)
    return torch.cat([x1, images], 2), labels, T
