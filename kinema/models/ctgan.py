"""``ctgan``: a continuous-time video GAN (StyleGAN-V / DIGAN family) whose motion is a warp.

A video is a function of real-valued time. Each video draws

* a content code ``content [n, Zc]`` (+ class): it is turned **once per video** into a canvas
  ``[n, F, sH, sW]`` by a DCGAN image trunk (``s = canvas_scale``, 1 or 2): a picture in [-1, 1]
  (``render="image"``, default) or feature channels (``render="features"``);
* motion anchors ``motion [n, K, Zm]`` at times ``0, a, 2a, ...`` (``a = anchor_every`` frames),
  linearly interpolated to any real time ``t`` and combined with sinusoids of ``t`` whose phases the
  interpolated code sets: the time embedding ``e(t)``.

A frame at time ``t`` is the canvas **warped**: an MLP of ``(e(t), content)`` gives the centre of
the frame's window on the canvas (a translation of at most half a frame), optionally a coarse
displacement field (``flow_grid`` x ``flow_grid``, upsampled: parts that move on their own, turn or
deform) and a per-channel gain (brightness). Outside the canvas is black. With ``render="features"``
two small convolutions turn the warped features into pixels (appearance changes that are not
motion). Motion can only move what the canvas holds, so an object keeps its identity for as long as
the video runs. Why a warp: when appearance and time enter one generator input side by side, a
small GAN learns to redraw the picture from frame to frame (digits morph and jump) rather than to
move it.

Because time is continuous and each video's anchors come from its own random stream (seeded from
the video's draw), a clip of any length or frame rate comes from the same function (``times``), a
longer clip starts with the shorter one's frames, and streaming draws more anchors as it goes: no
freezing or looping after the training length.

Training sees ``sparse_frames`` (default 3) frames per clip at random times: the loop draws sorted
distinct frame indices ``times [B, k]`` in ``[0, frames)`` (``kinema.models.latents.draw_times``),
takes those frames of the real clips, and renders the generated clips at the same times. The
discriminator has an image head (a DCGAN discriminator on every frame) and a motion head that shares
its first layer, stacks the k frames' features along channels at half resolution (so the next
convolutions compare positions across frames) and is told the time gaps between them (Fourier
features projected onto its features), plus class projection when conditional. A training clip of
3 frames costs G one canvas and 3 warps, and D 3 frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.models.layers import (COMMON_OPTIONS, MAX_LATENT, MAX_WIDTH, ProjectionHead, apply_spectral_norm,
                                  down_conv, init_discriminator, init_generator, levels, need_labels, stage_channels)
from kinema.models.options import Bool, Choice, Int, bounded
from kinema.models.nets import ImageDiscriminator, ImageGenerator

# Periods (in frames) of the time sinusoids: from a couple of frames to several clip lengths.
MIN_PERIOD, MAX_PERIOD = 8.0, 128.0


def fourier_features(x: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """x [...] (frames) -> [..., 2P]: sin and cos of 2 pi x / period for each period."""
    angle = 2 * math.pi * x.unsqueeze(-1) / periods
    return torch.cat([angle.sin(), angle.cos()], -1)


def anchor_count(frames: int, anchor_every: int) -> int:
    """Motion anchors a clip of ``frames`` needs so that every frame has a right neighbour."""
    return (frames - 1) // anchor_every + 2


class CTGenerator(nn.Module):
    """latents {"content": [n, Zc], "motion": [n, K, Zm]} (+ labels [n]) -> video [n, C, T, H, W].

    ``forward(latents, labels, times=None)``: ``times`` [n, T'] (float, in frames) renders those
    times; None renders frames 0, 1, ... (see ``default_times``).
    """

    can_extend = True
    streaming = "continuous"

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 content_dim: int, motion_dim: int, anchor_every: int, flow_grid: int, sparse_frames: int,
                 canvas_scale: int = 1, render: str = "image", periods: int = 8, hidden: int = 128,
                 upsample: str = "transpose"):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.content_dim, self.motion_dim, self.anchor_every = content_dim, motion_dim, anchor_every
        self.flow_grid, self.sparse_frames, self.canvas_scale = flow_grid, sparse_frames, canvas_scale
        self.render = render
        # The canvas: a DCGAN image trunk at canvas_scale x the frame side. render="image": it paints
        # pixels (tanh) and frames are warps of that picture; render="features": it paints ``width``
        # feature channels, and two small convolutions turn each warped frame into pixels (richer
        # appearance changes, several times slower on a CPU).
        feat = channels if render == "image" else width
        self.canvas = ImageGenerator(content_dim, canvas_scale * resolution, feat, width, num_classes, upsample)
        # Time embedding: interpolated motion code + sinusoids whose phases that code sets.
        self.register_buffer("periods", torch.logspace(math.log10(MIN_PERIOD), math.log10(MAX_PERIOD), periods))
        self.phase = nn.Linear(motion_dim, periods)
        self.content_proj = nn.Linear(content_dim + (self.canvas.class_code.dim if num_classes else 0), hidden)
        self.mlp = nn.Sequential(nn.Linear(motion_dim + 2 * periods + hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.to_shift = nn.Linear(hidden, 2)
        self.to_flow = nn.Linear(hidden, 2 * flow_grid * flow_grid) if flow_grid else None
        self.to_gain = nn.Linear(hidden, feat)
        # Warped features -> pixels: a 1x1 and a 3x3 convolution (local: they cannot redraw a shape).
        self.render1 = nn.Conv2d(feat, 2 * feat, 1) if render == "features" else None
        self.render2 = nn.Conv2d(2 * feat, channels, 3, 1, 1) if render == "features" else None
        init_generator(self)
        # Start from a still video in the centre: warps and gains begin as the identity.
        for lin in (self.to_shift, self.to_flow, self.to_gain):
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        nn.init.normal_(self.to_shift.weight, 0.0, 0.01)   # a little motion from the start: D can pull on it

    # -- latents ---------------------------------------------------------------------------------
    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """{"content": [n, Zc], "motion": [n, K, Zm]}, standard normal, drawn on the CPU.

        ``generator`` gives each video its content code and a seed for its own stream of motion
        anchors, so the draws from ``generator`` do not depend on the clip length (a class drawn
        next is the same for any length), and a longer clip of a seed starts with the shorter
        clip's frames; streams draw further anchors from the same per-video stream.
        """
        k = anchor_count(frames or self.frames, self.anchor_every)
        content, streams = self.draw_video(n, generator)
        motion = torch.stack([torch.cat([self.next_anchor(g) for _ in range(k)]) for g in streams])
        return {"content": content.to(device), "motion": motion.to(device)}

    def draw_video(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list]:
        """Content codes [n, Zc] and one motion-anchor generator per video, from ``generator``."""
        content = torch.randn(n, self.content_dim, generator=generator)
        seeds = torch.randint(0, 2 ** 62, (n,), generator=generator).tolist()
        return content, [torch.Generator().manual_seed(s) for s in seeds]

    def next_anchor(self, stream: torch.Generator) -> torch.Tensor:
        """The next motion anchor [1, Zm] of one video's anchor stream (CPU)."""
        return torch.randn(1, self.motion_dim, generator=stream)

    def default_times(self, latents: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frames 0, 1, ...: the training length when the anchors are those of that length, else every
        frame the anchors cover ((K - 1) * anchor_every; callers cut what they did not ask for)."""
        n, k = latents["motion"].shape[:2]
        count = self.frames if k == anchor_count(self.frames, self.anchor_every) else (k - 1) * self.anchor_every
        return torch.arange(count, dtype=torch.float32, device=latents["motion"].device).expand(n, -1)

    # -- network ---------------------------------------------------------------------------------
    def motion_code(self, motion: torch.Tensor, times: torch.Tensor, anchor0: int = 0) -> torch.Tensor:
        """Anchors [n, K, Zm] linearly interpolated at ``times`` [n, T] (frames) -> [n, T, Zm].

        ``motion[:, 0]`` is anchor number ``anchor0`` (streaming keeps only a window of anchors).
        """
        pos = (times.double() / self.anchor_every - anchor0).clamp(0, motion.shape[1] - 1 - 1e-4).float()
        left = pos.floor().long()
        frac = (pos - left).unsqueeze(-1).to(motion.dtype)
        a = torch.gather(motion, 1, left.unsqueeze(-1).expand(-1, -1, motion.shape[2]))
        b = torch.gather(motion, 1, (left + 1).unsqueeze(-1).expand(-1, -1, motion.shape[2]))
        return a + (b - a) * frac

    def render_canvas(self, content: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (canvas [n, F, sH, sW], content embedding [n, hidden]); once per video. The canvas is
        pixels in [-1, 1] (render="image") or linear features (render="features")."""
        canvas = self.canvas.trunk(content, labels)                        # [n, F, sH, sW]
        if self.render == "image":
            canvas = torch.tanh(canvas)
        z = self.canvas.class_code(content.to(self.canvas.fc.weight.dtype), labels)   # content (+ class)
        return canvas, F.leaky_relu(self.content_proj(z), 0.2)

    def render_frames(self, canvas: torch.Tensor, c: torch.Tensor, motion: torch.Tensor,
                      times: torch.Tensor, anchor0: int = 0) -> torch.Tensor:
        """Canvas [n, F, sH, sW], content embedding [n, h], anchors, times [n, T] -> video [n, C, T, H, W]."""
        n, t = times.shape
        m = self.motion_code(motion, times, anchor0)                       # [n, T, Zm]
        phase = self.phase(m)                                              # [n, T, P]
        # Cycles of each period in float64, wrapped to [0, 1): exact however long a stream runs.
        cycles = torch.frac(times.double().unsqueeze(-1) / self.periods.double()).to(phase.dtype)
        angle = 2 * math.pi * cycles + phase
        e = torch.cat([m, angle.sin(), angle.cos(), c.unsqueeze(1).expand(-1, t, -1)], -1)
        h = self.mlp(e).reshape(n * t, -1)                                 # [n*T, hidden]
        # Sampling grid: the frame is a window of 1/canvas_scale of the canvas's side, centred at
        # `shift` (grid_sample's [-1, 1] canvas units), which moves at most half a frame side.
        k = self.canvas_scale
        shift = torch.tanh(self.to_shift(h)) / k                           # [n*T, 2] (x, y)
        res = self.resolution
        lin = ((torch.arange(res, device=canvas.device, dtype=canvas.dtype) + 0.5) / res * 2 - 1) / k
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        grid = torch.stack([gx, gy], -1).unsqueeze(0) + shift.view(-1, 1, 1, 2).to(canvas.dtype)  # [n*T, H, W, 2]
        if self.to_flow is not None:
            g = self.flow_grid
            flow = self.to_flow(h).view(-1, 2, g, g)
            flow = F.interpolate(flow, size=(res, res), mode="bilinear", align_corners=False)
            grid = grid + 0.1 * torch.tanh(flow).permute(0, 2, 3, 1).to(canvas.dtype)
        src = canvas.repeat_interleave(t, 0)                               # [n*T, F, sH, sW]
        gain = (1 + self.to_gain(h)).view(n * t, -1, 1, 1)
        if self.render == "image":
            # Outside the canvas is black (-1): warp (pixels + 1) with zero padding.
            x = F.grid_sample(src + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = (x * gain.to(x.dtype)).clamp(max=2) - 1                    # gain: per-frame brightness
        else:
            x = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = x * gain.to(x.dtype)
            x = torch.tanh(self.render2(F.leaky_relu(self.render1(x), 0.2)))
        return x.reshape(n, t, *x.shape[1:]).transpose(1, 2)               # [n, C, T, H, W]

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None,
                times: torch.Tensor | None = None) -> torch.Tensor:
        need_labels(self.num_classes, labels, "ctgan generator")
        if times is None:
            times = self.default_times(latents)
        canvas, c = self.render_canvas(latents["content"], labels)
        return self.render_frames(canvas, c, latents["motion"], times.to(canvas.device))


class CTDiscriminator(nn.Module):
    """frames [B, C, k, H, W] at ``times`` [B, k] (+ labels [B]) -> [motion logits [B], frame logits [B, k]].

    Without ``times`` a clip of any length is judged on k frames spread evenly over it.

    Two heads. The image head is a DCGAN discriminator on every frame ([B, k] logits): digit or
    object shapes are learned from it as fast as by an image GAN. The motion head shares its first
    layer: each frame goes through that strided convolution on its own; the k feature maps (time order)
    are stacked along channels at half resolution, so the following convolutions see where
    things are in every frame; the 4x4 map is flattened into a projection head, and the time
    gaps between the frames (Fourier features, normalised by the training clip length) are
    projected onto the same features: D judges motion against the time it had to happen in.
    """

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 sparse_frames: int, spectral_norm: bool, image_head: bool = True):
        super().__init__()
        self.num_classes, self.frames, self.k = num_classes, frames, sparse_frames
        self.image = ImageDiscriminator(resolution, channels, width, num_classes) if image_head else None
        steps = levels(resolution)
        ch = stage_channels(width, steps - 1)[::-1]  # w, 2w, ..., capped at 8w
        # The first, per-frame convolution is the image judge's own first layer when there is one.
        self.frame_conv = None if image_head else down_conv(channels, ch[0], 2)
        convs = [down_conv(ch[0] * sparse_frames, ch[1] if steps > 1 else ch[0], 2)]
        convs += [down_conv(ch[i], ch[i + 1], 2) for i in range(1, steps - 1)]
        self.convs = nn.ModuleList(convs)
        feat = ch[-1] * 16
        self.head = ProjectionHead(feat, num_classes)
        self.register_buffer("periods", torch.logspace(0, math.log10(4 * frames), 8))
        self.gap_embed = nn.Sequential(nn.Linear((sparse_frames - 1) * 16, 128), nn.LeakyReLU(0.2),
                                       nn.Linear(128, feat))
        init_discriminator(self)   # (ImageDiscriminator initialised itself the same way)
        nn.init.normal_(self.gap_embed[-1].weight, 0.0, 1.0 / math.sqrt(feat))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None,
                times: torch.Tensor | None = None) -> list[torch.Tensor]:
        need_labels(self.num_classes, labels, "ctgan discriminator")
        b, c, k, h, w = video.shape
        if times is None:
            # A whole clip: judge k frames spread evenly over it (first, ..., last).
            times = torch.linspace(0, k - 1, self.k, device=video.device).round().long().expand(b, -1)
            if k != self.k:
                video = video[:, :, times[0]]
                k = self.k
        if k != self.k or times.shape != (b, k):
            raise KinemaError(f"ctgan discriminator: built for {self.k} frames per clip at times [B, {self.k}], "
                              f"got {k} frames and times {tuple(times.shape)}")
        frames = video.transpose(1, 2).reshape(b * k, c, h, w)
        first = self.frame_conv if self.image is None else self.image.convs[0]
        x0 = F.leaky_relu(first(frames), 0.2)                              # [B*k, w, H/2, W/2]
        x = x0.reshape(b, k * x0.shape[1], *x0.shape[2:])                 # frames stacked on channels
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        feat = x.flatten(1)                                                # [B, 16 * C_last]
        gaps = times.float().diff(dim=1).to(feat.dtype)                    # [B, k-1] frames
        cond = self.gap_embed(fourier_features(gaps, self.periods.to(feat.dtype)).flatten(1))
        heads = [self.head(feat, labels) + (cond * feat).sum(1)]
        if self.image is not None:
            frame_labels = labels.repeat_interleave(k) if self.num_classes else None
            y = x0
            for conv in self.image.convs[1:]:
                y = F.leaky_relu(conv(y), 0.2)
            heads.append(self.image.head(y.flatten(1), frame_labels).view(b, k))  # [B, k] per-frame logits
        return heads


@bounded("ctgan", **COMMON_OPTIONS, d_width=Int(1, MAX_WIDTH, optional=True), content_dim=Int(1, MAX_LATENT),
         motion_dim=Int(1, MAX_LATENT), anchor_every=Int(1, 1024), flow_grid=Int(0, 64), sparse_frames=Int(2, 32),
         canvas_scale=Choice(1, 2), render=Choice("image", "features"), image_head=Bool(), spectral_norm=Bool())
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 16,
          d_width: int | None = None, content_dim: int = 64, motion_dim: int = 16, anchor_every: int = 4,
          flow_grid: int = 0, sparse_frames: int = 3, canvas_scale: int = 1, render: str = "image",
          image_head: bool = True,
          spectral_norm: bool = False,
          upsample: str = "transpose"):
    """Continuous-time GAN: warped per-video canvas + sparse-frame discriminator. Returns a ModelSet.

    width: channels of the canvas trunk's last stage and of the canvas features; d_width: D's
    (default = width). anchor_every: frames between motion anchors. flow_grid: side of the coarse
    displacement field (0 = translation only). sparse_frames: frames per training clip.
    """
    from kinema.models import ModelSet

    if sparse_frames > frames:
        raise KinemaError(f"model ctgan: sparse_frames ({sparse_frames}) must be at most frames ({frames})")
    d_width = d_width or width
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  d_width=d_width, content_dim=content_dim, motion_dim=motion_dim, anchor_every=anchor_every,
                  flow_grid=flow_grid, sparse_frames=sparse_frames, canvas_scale=canvas_scale, render=render, image_head=image_head,
                  spectral_norm=spectral_norm, upsample=upsample)
    G = CTGenerator(resolution, frames, channels, num_classes, width, content_dim, motion_dim, anchor_every,
                    flow_grid, sparse_frames, canvas_scale, render, upsample=upsample)
    D = CTDiscriminator(resolution, frames, channels, num_classes, d_width, sparse_frames, spectral_norm, image_head)
    return ModelSet(G=G, D=D, E=None, kind="gan", name="ctgan", kwargs=kwargs)
