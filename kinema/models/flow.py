"""``flow``: a rectified-flow video transformer, in pixels or in the latents of a frozen ``videovae``.

The generator ``G`` (:class:`FlowGenerator`) holds

* ``net``, a transformer that predicts the velocity ``v(x_t, t, y)`` of the straight path
  ``x_t = (1 - t) * noise + t * data`` (``t = 0`` is noise, ``t = 1`` is data; the target is
  ``data - noise``). Tokens are patches of ``[C, T, H, W]``; each block attends within a frame
  (spatial), then across frames at one position (temporal), then applies an MLP; all three are
  shifted, scaled and gated by adaptive layer norm on the flow time and the class, initialised to
  zero so that every block starts as the identity (DiT's adaLN-Zero). Attention goes through
  ``F.scaled_dot_product_attention`` (fused kernels where the device has them).
* for latent models, the frozen decoder of a ``videovae`` with a spatial latent grid (its batch
  norms folded into fixed affine maps), and the per-channel mean and std that normalise the
  latents to unit variance. Pixel models use the clip itself as the "latent".

Generator interface (as every kinema generator):
``make_latents(n, generator=...) -> {"noise": [n, *latent_shape]}`` (the ODE's starting point) and
``forward({"noise": ...}, labels) -> video [n, C, T, H, W]`` in [-1, 1], which integrates the ODE
with the settings in ``G.sampler`` (``steps``, ``solver``, ``cfg``) and decodes. Training calls
``forward({"x": x_t, "t": t}, labels)``, which returns the velocity: the same module, so DDP and
``torch.compile`` wrap the loop's ``G`` as for the other models. Labels ``num_classes`` mean
"no class" (classifier-free guidance); they appear only through class dropout in training and the
unconditional half of a guided step.

Losses (``flow_loss``) live here, as ``vae_loss`` lives with the VAE.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.models.layers import COMMON_OPTIONS, check_common, check_length, need_labels
from kinema.models.options import Choice, Float, Int, bounded

SOLVERS = ("euler", "heun")


# ----------------------------------------------------------------------------------------------
# Embeddings.

def sincos(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of ``positions`` [N] (float) -> [N, dim] (cos half, sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    args = positions.float()[:, None] * freqs[None]
    out = torch.cat([torch.cos(args), torch.sin(args)], 1)
    return F.pad(out, (0, dim - 2 * half))


class TimeEmbedding(nn.Module):
    """Flow time t [B] in [0, 1] -> [B, dim]: sinusoidal features of 1000 t through a small MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sincos(t * 1000, self.freq_dim).to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


# ----------------------------------------------------------------------------------------------
# The transformer.

class Attention(nn.Module):
    """Multi-head self-attention over [N, L, D] through scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        q, k, v = self.qkv(x).view(n, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # each [N, h, L, dh]
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, l, d))


class Block(nn.Module):
    """Factorised space-time block on tokens [B, T, S, D] conditioned on c [B, D]:
    spatial attention (within each frame), temporal attention (across frames at each position), MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(3))
        self.space, self.time = Attention(dim, heads), Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # shift, scale, gate for each of the three sub-layers (zeroed by FlowTransformer: identity at start).
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, video: int | None = None) -> torch.Tensor:
        """x [B, T, S, D]; c [B, 1, D] (one condition per clip) or [B, T, D] (per frame); the first
        ``video`` frames (default all) form the clip, the rest are independent images: they skip
        temporal attention (joint image-video training)."""
        b, t, s, d = x.shape
        v = t if video is None else video
        m = self.ada(c)[:, :, None].chunk(9, dim=-1)                         # each [B, 1 or T, 1, D]
        h = modulate(self.norms[0](x), m[0], m[1]).reshape(b * t, s, d)       # frames as sequences
        x = x + m[2] * self.space(h).view(b, t, s, d)
        xv = x[:, :v]
        h = modulate(self.norms[1](xv), m[3][:, :v], m[4][:, :v]).transpose(1, 2).reshape(b * s, v, d)  # positions
        xv = xv + m[5][:, :v] * self.time(h).view(b, s, v, d).transpose(1, 2)
        x = xv if v == t else torch.cat([xv, x[:, v:]], 1)
        return x + m[8] * self.mlp(modulate(self.norms[2](x), m[6], m[7]))


class FlowTransformer(nn.Module):
    """Velocity network: x [B, C, T, H, W], t [B] in [0, 1], y [B] (or None) -> v, shaped like x.

    ``patch`` = (pt, ph, pw) divides (T, H, W); tokens are [B, T/pt, (H/ph)(W/pw), D]. Positions:
    ``"learned"`` (a per-frame and a per-position table, added) or ``"sincos"`` (fixed sinusoids).
    Clips shorter than ``frames`` (e.g. single frames, with pt = 1) use the first rows of the
    time table. ``y == num_classes`` is the null class (classifier-free guidance).

    ``t`` and ``y`` are [B] (one per clip) or [B, T/pt] (one per token frame). ``video`` (frames):
    only the first ``video`` frames are a clip; the frames after them are independent images, with
    their own time and class, no time position and no temporal attention (joint training, pt = 1).
    """

    def __init__(self, channels: int, frames: int, height: int, width: int, patch=(1, 2, 2), dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, num_classes: int = 0, pos: str = "learned"):
        super().__init__()
        pt, ph, pw = patch
        self.patch, self.channels, self.num_classes = (pt, ph, pw), channels, num_classes
        tt, hh, ww = frames // pt, height // ph, width // pw
        self.embed = nn.Linear(channels * pt * ph * pw, dim)
        if pos == "learned":
            self.pos_t = nn.Parameter(torch.randn(1, tt, 1, dim) * 0.02)
            self.pos_s = nn.Parameter(torch.randn(1, 1, hh * ww, dim) * 0.02)
        else:  # sincos: time 1-D, space as row and column halves
            ys, xs = torch.meshgrid(torch.arange(hh), torch.arange(ww), indexing="ij")
            space = torch.cat([sincos(ys.flatten().float(), dim // 2), sincos(xs.flatten().float(), dim - dim // 2)], 1)
            self.register_buffer("pos_t", sincos(torch.arange(tt).float(), dim)[None, :, None])
            self.register_buffer("pos_s", space[None, None])
        self.t_embed = TimeEmbedding(dim)
        self.y_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, channels * pt * ph * pw)
        for m in self.modules():  # xavier everywhere, then the adaLN and output layers to zero
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for layer in [blk.ada[1] for blk in self.blocks] + [self.final_ada[1], self.out]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.y_embed is not None:
            nn.init.normal_(self.y_embed.weight, std=0.02)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                video: int | None = None) -> torch.Tensor:
        b, c, T, H, W = x.shape
        pt, ph, pw = self.patch
        tt, hh, ww = T // pt, H // ph, W // pw
        tv = tt if video is None else video // pt
        if video is not None and (pt != 1 or not 1 <= video <= T):
            raise KinemaError(f"flow: appended images need time patches of 1 and 1 <= video <= {T}; got "
                              f"patch {list(self.patch)}, video {video}")
        tokens = (x.reshape(b, c, tt, pt, hh, ph, ww, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
                  .reshape(b, tt, hh * ww, c * pt * ph * pw))                  # [B, T', S, patch]
        pos_t = F.pad(self.pos_t[:, :tv], (0, 0, 0, 0, 0, tt - tv))           # images: no time position
        h = self.embed(tokens.to(self.embed.weight.dtype)) + pos_t + self.pos_s
        cond = self.condition(t, y)                                            # [B, 1 or T', D]
        for block in self.blocks:
            h = block(h, cond, tv)
        shift, scale = self.final_ada(cond)[:, :, None].chunk(2, dim=-1)
        out = self.out(modulate(self.final_norm(h), shift, scale))             # [B, T', S, patch]
        return (out.reshape(b, tt, hh, ww, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
                .reshape(b, c, T, H, W))

    def condition(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Flow time [B] or [B, F] (+ class, same shapes) -> adaLN condition [B, 1 or F, D]."""
        t = t[:, None] if t.dim() == 1 else t
        cond = self.t_embed(t.flatten()).view(*t.shape, -1)
        if self.y_embed is not None:
            if y is None:
                raise KinemaError("flow: this model is class-conditional; labels are required")
            cond = cond + self.y_embed(y[:, None] if y.dim() == 1 else y)
        return cond


# ----------------------------------------------------------------------------------------------
# A frozen decoder: batch norms as fixed affine maps.

class FrozenNorm(nn.Module):
    """A BatchNorm layer's inference map ``(x - mean) / sqrt(var + eps) * weight + bias`` with
    every tensor a buffer under BatchNorm's own names (so a BatchNorm state dict loads as is).
    Nothing resets or re-estimates it: the loop's standing-statistics refresh leaves it alone."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.eps, self.affine = bn.eps, bn.affine
        for name in ("running_mean", "running_var", "num_batches_tracked") + (("weight", "bias") if bn.affine else ()):
            self.register_buffer(name, getattr(bn, name).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = (self.running_var + self.eps).rsqrt()
        shift = -self.running_mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)


def freeze(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``module`` by a FrozenNorm, stop gradients, eval mode; in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, FrozenNorm(child))
        else:
            freeze(child)
    module.requires_grad_(False)
    return module.eval()


# ----------------------------------------------------------------------------------------------
# The generator.

class FlowGenerator(nn.Module):
    """Noise {"noise": [n, *latent_shape]} (+ labels [n]) -> video [n, C, T, H, W] in [-1, 1] by an ODE.

    ``sampler`` (plain attribute, change it freely): ``steps`` (ODE steps), ``solver`` ("euler" |
    "heun"), ``cfg`` (guidance scale; 1 = the conditional model alone).
    """

    can_extend = False
    streaming = "continue"      # kinema.sample.stream: sliding-window continuation (sample(known=...))

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, net: dict,
                 vae: dict | None, latent_mean, latent_std, sampler: dict):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.decoder = None
        if vae is not None:
            from kinema.models import build
            vae_set = build(vae["name"], **vae["kwargs"])
            if vae_set.kind != "vae" or getattr(vae_set.G, "latent", None) != "grid":
                raise KinemaError("model flow: vae must be a videovae with latent='grid'")
            if vae_set.G.num_classes:
                raise KinemaError("model flow: the vae must be unconditional (its decoder would need labels)")
            self.decoder = freeze(vae_set.G)
            self.latent_shape = tuple(int(s) for s in self.decoder.latent_shape)
        else:
            self.latent_shape = (channels, frames, resolution, resolution)
        zc = self.latent_shape[0]
        mean = [0.0] * zc if latent_mean is None else [float(v) for v in latent_mean]
        std = [1.0] * zc if latent_std is None else [float(v) for v in latent_std]
        if len(mean) != zc or len(std) != zc or min(std) <= 0:
            raise KinemaError(f"model flow: latent_mean/latent_std must be {zc} numbers (std > 0)")
        # Saved with the weights as well as in the options: an export rebuilds every tensor from its file.
        self.register_buffer("latent_mean", torch.tensor(mean).view(1, zc, 1, 1, 1))
        self.register_buffer("latent_std", torch.tensor(std).view(1, zc, 1, 1, 1))
        self.net = FlowTransformer(zc, *self.latent_shape[1:], num_classes=num_classes, **net)
        self.sampler = dict(sampler)

    # Generator interface.

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """The ODE's starting noise {"noise": [n, *latent_shape]} ~ N(0, I), drawn on CPU from ``generator``."""
        check_length("flow", self.frames, frames)
        return {"noise": torch.randn((n,) + self.latent_shape, generator=generator).to(device)}

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        if "x" in latents:  # training: the velocity at (x_t, t) (frames after "video": appended images)
            return self.net(latents["x"], latents["t"], labels, latents.get("video"))
        need_labels(self.num_classes, labels, "flow")
        with torch.no_grad():  # sampling is never differentiated: no graph over the ODE's steps
            return self.decode(self.sample(latents["noise"], labels, **self.sampler))

    # Pieces, for samplers that need them (streams, interpolation).

    def velocity(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, cfg: float = 1.0) -> torch.Tensor:
        """v(x, t | y), guided with scale ``cfg`` when it is not 1 (see :func:`guided_velocity`)."""
        if cfg == 1.0 or not self.num_classes:
            return self.net(x, t, labels)
        return guided_velocity(self.net, x, t, labels, cfg)

    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None, steps: int = 16, solver: str = "euler",
               cfg: float = 1.0, known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Integrate from ``noise`` (t = 0) to t = 1: normalised latents shaped like ``noise``.

        ``known`` = (values, mask): entries where ``mask`` is 1 follow the straight path from
        ``noise`` to ``values`` instead of the ODE (used to continue a clip from its last frames).
        """
        from kinema.sample.ode import integrate

        check_sampler(steps, solver, cfg, self.num_classes)
        dtype = self.net.embed.weight.dtype
        x0 = noise.to(dtype)

        def v(x, t):
            return self.velocity(x, t.expand(x.shape[0]), labels, cfg)

        replace = None
        if known is not None:
            values, mask = known

            def replace(x, t):  # the known entries at time t of their straight path
                return torch.where(mask.bool(), (1 - t) * x0 + t * values.to(dtype), x)
        return integrate(v, x0, steps, solver, replace=replace)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> video [n, C, T, H, W] in [-1, 1]."""
        if self.decoder is None:
            return z.clamp(-1, 1)
        z = z.float() * self.latent_std + self.latent_mean
        return self.decoder({"z": z.to(self.decoder.fc.weight.dtype)})

    def train(self, mode: bool = True):
        super().train(mode)
        if self.decoder is not None:
            self.decoder.eval()  # frozen: always inference
        return self


def check_sampler(steps: int, solver: str, cfg: float, num_classes: int) -> None:
    if int(steps) != steps or steps < 1:
        raise KinemaError(f"flow: steps must be a whole number >= 1, got {steps}")
    if solver not in SOLVERS:
        raise KinemaError(f"flow: solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if not math.isfinite(cfg) or cfg < 0:
        raise KinemaError(f"flow: cfg must be a finite number >= 0, got {cfg}")
    if cfg != 1.0 and not num_classes:
        raise KinemaError("flow: --cfg needs a class-conditional model (this one is unconditional)")


def update_sampler(G, name: str, steps: int | None = None, cfg: float | None = None,
                   solver: str | None = None) -> dict:
    """Change the ODE settings ``G.sampler`` of a flow generator (``None`` keeps a setting).

    -> the settings now in force. KinemaError for a generator without a sampler (not a flow model)
    or for settings :func:`check_sampler` refuses; ``G`` is unchanged then.
    """
    if steps is None and cfg is None and solver is None:
        return dict(getattr(G, "sampler", {}))
    if not hasattr(G, "sampler"):
        raise KinemaError(f"model '{name}' is not a flow model; --steps, --cfg and --solver do not apply")
    new = dict(G.sampler)
    new.update({k: v for k, v in (("steps", steps), ("cfg", cfg), ("solver", solver)) if v is not None})
    check_sampler(new["steps"], new["solver"], float(new["cfg"]), getattr(G, "num_classes", 0))
    G.sampler = new
    return dict(new)


def guided_velocity(net: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``v_u + scale * (v_c - v_u)``, v_u with the null class.

    Conditional and unconditional halves go through the network as one batch of 2n.
    """
    null = torch.full_like(labels, net.num_classes)
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
    v_c, v_u = both.chunk(2)
    return v_u + scale * (v_c - v_u)


# ----------------------------------------------------------------------------------------------
# Training objective.

def flow_loss(G: nn.Module, x1: torch.Tensor, labels: torch.Tensor | None, noise: torch.Tensor, t: torch.Tensor,
              drop: torch.Tensor | None = None, video: int | None = None) -> dict[str, torch.Tensor]:
    """Rectified-flow loss for a batch of data ``x1`` [B, C, T, H, W] (pixels in [-1, 1] or
    normalised latents).

    ``noise`` shaped like x1; ``t`` in (0, 1), ``labels`` and ``drop`` (bool: whose class is
    replaced by the null class, for classifier-free guidance) are [B], or [B, T] per frame when the
    frames after the first ``video`` are appended images (:func:`kinema.train.flow.append_images`).
    ``x_t = (1 - t) noise + t x1``; the network regresses the velocity ``x1 - noise``; the loss is
    the mean squared error (fp32).
    """
    if labels is not None and drop is not None:
        num_classes = _unwrap(G).num_classes
        labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
    tb = (t[:, None, :, None, None] if t.dim() == 2 else t.view(-1, 1, 1, 1, 1)).to(x1.dtype)
    xt = (1 - tb) * noise + tb * x1
    latents = {"x": xt, "t": t} if video is None else {"x": xt, "t": t, "video": video}
    v = G(latents, labels)
    loss = F.mse_loss(v.float(), (x1 - noise).float())
    return {"total": loss}


def _unwrap(module: nn.Module) -> nn.Module:
    from kinema.models.export import unwrap
    return unwrap(module)


# ----------------------------------------------------------------------------------------------
# Registry factory.

class _Patch:
    """None, or three whole numbers 1..64 (pt, ph, pw)."""

    def problem(self, value) -> str | None:
        if value is None or (isinstance(value, (list, tuple)) and len(value) == 3
                             and all(type(v) is int and 1 <= v <= 64 for v in value)):
            return None
        return "must be three whole numbers 1..64 [pt, ph, pw] or null"


class _Numbers:
    """None, or a list of 1..4096 finite numbers."""

    def problem(self, value) -> str | None:
        if value is None or (isinstance(value, (list, tuple)) and 1 <= len(value) <= 4096 and all(
                type(v) in (int, float) and math.isfinite(v) for v in value)):
            return None
        return "must be a list of finite numbers or null"


class _VaeSpec:
    """None, or {"name": "videovae", "kwargs": {...}} (the kwargs are checked when the decoder is built)."""

    def problem(self, value) -> str | None:
        if value is None or (isinstance(value, dict) and value.get("name") == "videovae"
                             and isinstance(value.get("kwargs"), dict) and set(value) == {"name", "kwargs"}):
            return None
        return 'must be {"name": "videovae", "kwargs": {...}} or null'


@bounded("flow", **{k: v for k, v in COMMON_OPTIONS.items() if k != "upsample"}, depth=Int(1, 64),
         heads=Int(1, 64), mlp_ratio=Float(0.5, 16), patch=_Patch(), pos=Choice("learned", "sincos"), vae=_VaeSpec(),
         latent_mean=_Numbers(), latent_std=_Numbers(), steps=Int(1, 10000), solver=Choice(*SOLVERS),
         cfg=Float(0, 100))
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 128,
          depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, patch: list | tuple | None = None,
          pos: str = "learned", vae: dict | None = None, latent_mean: list | None = None,
          latent_std: list | None = None, steps: int = 16, solver: str = "euler", cfg: float = 1.0):
    """Flow transformer: G = FlowGenerator, D = E = None, kind "flow". Returns a ModelSet.

    width: token dimension; patch: (pt, ph, pw) dividing the latent's (T, H, W) (default (1, 2, 2)
    on a VAE's latents, (2, 4, 4) on pixels); vae: {"name": "videovae", "kwargs": {...}} of the
    frozen decoder (None: pixel space); latent_mean/std: per latent channel (from the latent
    cache); steps/solver/cfg: the default sampler.
    """
    from kinema.models import ModelSet

    check_common("flow", resolution, frames, channels, num_classes, width)
    if width % heads or (width // heads) % 2:
        raise KinemaError(f"model flow: width {width} must split into {heads} heads of an even size")
    patch = tuple(int(p) for p in (patch or ((1, 2, 2) if vae else (2, 4, 4))))
    check_sampler(steps, solver, cfg, num_classes)
    net = dict(patch=patch, dim=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, pos=pos)
    G = FlowGenerator(resolution, frames, channels, num_classes, net, vae, latent_mean, latent_std,
                      dict(steps=steps, solver=solver, cfg=cfg))
    if len(patch) != 3 or any(s % p for s, p in zip(G.latent_shape[1:], patch)):
        raise KinemaError(f"model flow: patch {list(patch)} must divide the latent's (T, H, W) {list(G.latent_shape[1:])}")
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  depth=depth, heads=heads, mlp_ratio=mlp_ratio, patch=list(patch), pos=pos, vae=vae,
                  latent_mean=None if latent_mean is None else [float(v) for v in latent_mean],
                  latent_std=None if latent_std is None else [float(v) for v in latent_std],
                  steps=steps, solver=solver, cfg=cfg)
    return ModelSet(G=G, D=None, E=None, kind="flow", name="flow", kwargs=kwargs)
