"""Size and speed of the registered models: parameters, forward FLOPs, forward+backward time.

    python -m kinema.models.speed                       # every model, default (CPU demo) config
    python -m kinema.models.speed --models videogan --batch 16 --set width=32 --set attention=true

Times one training-like step: G forward on fresh latents, D (or E for the VAE) forward on the
result, backward through both. Threads are whatever torch uses (set OMP_NUM_THREADS to pin).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kinema.models import MODELS, ModelSet, build, count_params, flops_per_clip
from kinema.models.videovae import vae_loss


def step_seconds(ms: ModelSet, batch: int = 16, steps: int = 3, warmup: int = 1, device="cpu") -> float:
    """Best-of-``steps`` seconds of one G+D (or E+G) forward+backward on ``batch`` clips.

    The minimum, not the median: on a shared machine other processes only ever add time.
    """
    G = ms.G.to(device).train()
    other = (ms.D or ms.E).to(device).train()
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(batch, dtype=torch.long, device=device) if G.num_classes else None
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        if ms.kind == "vae":
            video = G(G.make_latents(batch, generator=gen, device=device), labels).detach()
            loss = vae_loss(ms.E, G, video, 1.0, labels)["total"]
        else:
            video = G(G.make_latents(batch, generator=gen, device=device), labels)
            loss = sum(l.float().mean() for l in ms.D(video, labels))
        loss.backward()
        if device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        G.zero_grad(set_to_none=True)
        other.zero_grad(set_to_none=True)
    return min(times)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model option (JSON value)")
    args = p.parse_args(argv)
    options = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for name in args.models:
        ms = build(name, **options)
        f = flops_per_clip(ms)
        sec = step_seconds(ms, args.batch, args.steps)
        k = ms.kwargs
        print(f"{name:9s} {k['resolution']}x{k['resolution']}x{k['frames']} c{k['channels']} width={k['width']}: "
              f"G {count_params(ms.G) / 1e6:.2f}M params, {'D' if ms.D else 'E'} "
              f"{count_params(ms.D or ms.E) / 1e6:.2f}M; fwd GFLOP/clip G {f['G'] / 1e9:.3f} "
              f"{'D' if ms.D else 'E'} {(f['D'] + f['E']) / 1e9:.3f}; fwd+bwd {sec * 1e3:.0f} ms/batch "
              f"= {args.batch / sec:.1f} clips/s")


if __name__ == "__main__":
    main()
