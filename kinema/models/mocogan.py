"""``mocogan``: motion and content decomposed (Tulyakov et al., 2018).

A clip is one content code held for the whole video plus a motion code per frame. The motion
codes come from a GRU driven by fresh noise at every step, so motion is a learned random
process: unrolling the GRU for more steps gives longer clips than the model was trained on.
Each frame is drawn by a DCGAN image generator from concat(content, motion_t).

Two discriminators look at the result: an image discriminator on ``image_frames`` frames
picked at random from each clip (is every frame plausible?) and a 3-D convolutional video
discriminator on the whole clip (is the motion plausible?). D returns both heads' logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from kinema.errors import KinemaError
from kinema.models.layers import COMMON_OPTIONS, MAX_FRAMES, MAX_LATENT, MAX_WIDTH, fold_time, need_labels, unfold_time
from kinema.models.nets import ImageDiscriminator, ImageGenerator, VideoDiscriminator
from kinema.models.options import Bool, Int, bounded


class MoCoGANGenerator(nn.Module):
    """latents {"content": [n, Zc], "motion": [n, T, Ze]} (+ labels [n]) -> video [n, C, T, H, W]."""

    can_extend = True
    streaming = "recurrent"     # kinema.sample.stream: the GRU state carried chunk to chunk (advance)

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 content_dim: int, motion_dim: int, noise_dim: int, upsample: str):
        super().__init__()
        self.resolution, self.frames, self.channels, self.num_classes = resolution, frames, channels, num_classes
        self.content_dim, self.noise_dim = content_dim, noise_dim
        # Motion: GRU over per-frame noise [n, T, Ze] -> motion codes [n, T, Zm] (h0 = 0).
        self.gru = nn.GRU(noise_dim, motion_dim, batch_first=True)
        self.net = ImageGenerator(content_dim + motion_dim, resolution, channels, width, num_classes, upsample)

    def make_latents(self, n: int, frames: int | None = None, generator: torch.Generator | None = None,
                     device="cpu") -> dict[str, torch.Tensor]:
        """{"content": [n, Zc], "motion": [n, T, Ze]}, standard normal, drawn on CPU from ``generator``."""
        content = torch.randn(n, self.content_dim, generator=generator)
        motion = torch.randn(n, frames or self.frames, self.noise_dim, generator=generator)
        return {"content": content.to(device), "motion": motion.to(device)}

    def forward(self, latents: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
        need_labels(self.num_classes, labels, "mocogan generator")
        motion, _ = self.unroll(latents["motion"])  # [n, T, Zm]
        return self.render(latents["content"], motion, labels)

    def advance(self, latents: dict[str, torch.Tensor], state: dict[str, torch.Tensor] | None = None,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Continue a video: frames for ``latents`` (content held, fresh motion noise) starting
        from ``state`` ({"h": GRU state [1, n, Zm]}, None = the start) -> (video, next state).
        Streams call this chunk after chunk; the chunks join exactly as one long unroll."""
        motion, h = self.unroll(latents["motion"], None if state is None else state["h"])
        return self.render(latents["content"], motion, labels), {"h": h}

    def onnx_graph(self):
        """ONNX export (kinema.models.onnx): content, motion, h (+ labels) -> video, h_next."""
        from kinema.models.onnx import OnnxGraph

        def step(content, motion, h, labels=None):
            video, state = self.advance({"content": content, "motion": motion}, {"h": h}, labels)
            return video, state["h"]

        return OnnxGraph(step, {"content": torch.zeros(1, self.content_dim), "motion": torch.zeros(1, 2, self.noise_dim)},
                         {"content": {0: "batch"}, "motion": {0: "batch", 1: "frames"}, "h": {1: "batch"}},
                         state={"h": torch.zeros(1, 1, self.gru.hidden_size)})

    def unroll(self, noise: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion codes from noise [n, T, Ze], continuing from GRU state h [1, n, Zm] (None: start).

        Returns (motion [n, T, Zm], h [1, n, Zm]); streaming feeds h back to go on seamlessly.
        """
        return self.gru(noise.to(self.gru.weight_ih_l0.dtype), h)

    def render(self, content: torch.Tensor, motion: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Frames from content [n, Zc] held over motion codes [n, T, Zm] -> video [n, C, T, H, W]."""
        n, t = motion.shape[:2]
        z = torch.cat([content.to(motion.dtype).unsqueeze(1).expand(n, t, -1), motion], 2)  # [n, T, Zc+Zm]
        frame_labels = labels[:, None].expand(n, t).reshape(-1) if self.num_classes else None  # [n*T], frame-major
        frames = self.net(z.reshape(n * t, -1), frame_labels)  # [n*T, C, H, W]
        return unfold_time(frames, n)  # [n, C, T, H, W]


class MoCoGANDiscriminator(nn.Module):
    """video [B, C, T, H, W] (+ labels [B]) -> [image logits [B, k], video logits [B]].

    The k = ``image_frames`` frames are drawn afresh on every call from the torch RNG of the
    video's device (0 or >= T: all frames), the same frame indices for the whole batch.
    """

    def __init__(self, resolution: int, frames: int, channels: int, num_classes: int, width: int,
                 video_width: int, image_frames: int, spectral_norm: bool):
        super().__init__()
        self.num_classes, self.image_frames = num_classes, image_frames
        self.image = ImageDiscriminator(resolution, channels, width, num_classes, spectral_norm)
        self.video = VideoDiscriminator(resolution, frames, channels, video_width, num_classes, spectral_norm)

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        need_labels(self.num_classes, labels, "mocogan discriminator")
        b, t = video.shape[0], video.shape[2]
        k = self.image_frames if 0 < self.image_frames < t else t
        picked = video
        if k < t:
            idx = torch.randperm(t, device=video.device)[:k]
            picked = video.index_select(2, idx)  # [B, C, k, H, W]
        frame_labels = labels.repeat_interleave(k) if self.num_classes else None
        image_logits = self.image(fold_time(picked), frame_labels).view(b, k)
        return [image_logits, self.video(video, labels)]


@bounded("mocogan", **COMMON_OPTIONS, d_width=Int(1, MAX_WIDTH, optional=True),
         video_width=Int(1, MAX_WIDTH, optional=True), content_dim=Int(1, MAX_LATENT), motion_dim=Int(1, MAX_LATENT),
         noise_dim=Int(1, MAX_LATENT), image_frames=Int(0, MAX_FRAMES), spectral_norm=Bool())
def build(*, resolution: int = 32, frames: int = 16, channels: int = 1, num_classes: int = 0, width: int = 32,
          d_width: int | None = None, video_width: int | None = None, content_dim: int = 50, motion_dim: int = 10,
          noise_dim: int = 10, image_frames: int = 4, spectral_norm: bool = False, upsample: str = "transpose"):
    """MoCoGAN generator + image/video discriminators. Returns a ModelSet.

    width / d_width / video_width: channels at half resolution of G, the image D and the video D
    (D widths default to ``width`` and ``width // 2``: the 3-D head costs more per channel).
    content_dim, motion_dim (GRU size), noise_dim: latent sizes (MoCoGAN's 50 / 10 / 10).
    image_frames: frames per clip the image D judges (0 = all).
    """
    from kinema.models import ModelSet

    d_width = d_width or width
    video_width = video_width or max(width // 2, 1)
    kwargs = dict(resolution=resolution, frames=frames, channels=channels, num_classes=num_classes, width=width,
                  d_width=d_width, video_width=video_width, content_dim=content_dim, motion_dim=motion_dim,
                  noise_dim=noise_dim, image_frames=image_frames, spectral_norm=spectral_norm, upsample=upsample)
    G = MoCoGANGenerator(resolution, frames, channels, num_classes, width, content_dim, motion_dim, noise_dim,
                         upsample)
    D = MoCoGANDiscriminator(resolution, frames, channels, num_classes, d_width, video_width, image_frames,
                             spectral_norm)
    return ModelSet(G=G, D=D, E=None, kind="gan", name="mocogan", kwargs=kwargs)
