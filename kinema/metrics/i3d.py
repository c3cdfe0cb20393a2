"""I3D (Inception-v1 inflated to 3D, Kinetics-400) for FVD / KVD, in its two published forms.

1. ``i3d_pretrained_400.pt``: a PyTorch state dict for the ``InceptionI3d`` module of
   piergiaj/pytorch-i3d, used by VideoGPT, DIGAN and TATS. kinema defines the architecture
   itself (:class:`InceptionI3d`) with the same module names, so the file loads key for key
   (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ``logits.conv3d.bias``...).
   Preprocessing as VideoGPT's ``videogpt/fvd/fvd.py`` (``preprocess``, which calls
   ``videogpt/data.py``'s per-video ``preprocess``): uint8 frames / 255, each frame resized
   bilinearly (align_corners=False, no antialias) so its SHORT side is 224 (the long side
   ``ceil(long * 224 / short)``), centre-cropped to 224x224 (offsets ``(size - 224) // 2``), minus
   0.5, and then multiplied by 2: the network sees values in [-1, 1], as in VideoGPT, TATS and
   DIGAN. Features: the 400 logits of ``InceptionI3d.forward`` (average pool [2, 7, 7], 1x1x1
   logits convolution, mean over the remaining time steps).
2. ``i3d_torchscript.pt``: StyleGAN-V's TorchScript export of the TF-Hub I3D. It takes uint8
   values [B, 3, T, H, W] and is called ``detector(x, rescale=True, resize=True,
   return_features=True)``: the module itself maps [0, 255] to [-1, 1], resizes to 224x224 and
   returns the 400-d features before the softmax.

Both take kinema's uint8 [B, T, H, W, C] batches; gray (C = 1) is repeated to 3 channels.

Padding: TensorFlow "SAME" padding computed from the input size at run time (convolutions and
max-pools alike, zeros padded, asymmetric with the extra pixel at the end), exactly as the
reference; this is what makes the state dict produce the published logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kinema.errors import KinemaError

# Mixed block output channels: (b0, b1a, b1b, b2a, b2b, b3b), from the I3D paper / reference.
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    """Zero-pad x [B, C, T, H, W] like TensorFlow's SAME for this kernel and stride."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    # F.pad wants the last dimension first: (W_front, W_back, H_front, H_back, T_front, T_back).
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


class Unit3D(nn.Module):
    """SAME-padded Conv3d (+ BatchNorm3d) (+ ReLU); submodule names ``conv3d`` and ``bn``."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True,
                 relu: bool = True, bias: bool = False, bn_eps: float = 1e-5):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        # eps 1e-5 as in VideoGPT's copy (piergiaj's original says 1e-3); it is a protocol detail.
        self.bn = nn.BatchNorm3d(cout, eps=bn_eps) if bn else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated on channels."""

    def __init__(self, cin: int, out: tuple, bn_eps: float):
        super().__init__()
        u = lambda a, b, k: Unit3D(a, b, (k, k, k), bn_eps=bn_eps)  # noqa: E731
        self.b0 = u(cin, out[0], 1)
        self.b1a, self.b1b = u(cin, out[1], 1), u(out[1], out[2], 3)
        self.b2a, self.b2b = u(cin, out[3], 1), u(out[3], out[4], 3)
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), u(cin, out[5], 1)

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """x [B, 3, T, H, W] (T >= 9, H = W = 224 for the published pooling) -> logits [B, num_classes].

    With 16x224x224 input the last block is [B, 1024, 2, 7, 7]; the [2, 7, 7] average pool
    (stride 1) leaves [B, 1024, 1, 1, 1]; logits are averaged over what remains of time.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, bn_eps: float = 1e-5):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, (1, 1, 1), bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Mixed(*MIXED["Mixed_3b"], bn_eps)
        self.Mixed_3c = Mixed(*MIXED["Mixed_3c"], bn_eps)
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, Mixed(*MIXED[name], bn_eps))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Mixed(*MIXED["Mixed_5b"], bn_eps)
        self.Mixed_5c = Mixed(*MIXED["Mixed_5c"], bn_eps)
        self.logits = Unit3D(1024, num_classes, (1, 1, 1), bn=False, relu=False, bias=True)
        self.order = [n for n in self._modules if n != "logits"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, T, H, W] -> Mixed_5c output [B, 1024, T/8, H/32, W/32]."""
        for name in self.order:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(self.features(x), (2, 7, 7), stride=1)  # dropout is identity at eval
        return self.logits(x).flatten(3).mean(dim=(2, 3))  # [B, classes, T', 1] -> [B, classes]


def load_i3d_state_dict(path) -> InceptionI3d:
    """Build :class:`InceptionI3d` and load a published state dict (``torch.load(weights_only=True)``)."""
    from kinema.untrusted import load_state_dict_file

    model = load_state_dict_file(path, InceptionI3d(), "InceptionI3d state dict")
    return model.eval()


def videogpt_preprocess(videos: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 [B, T, H, W, C] -> float [B, 3, T, size, size] in [-1, 1] (VideoGPT's FVD rule)."""
    b, t, h, w, c = videos.shape
    x = videos.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w).float() / 255  # frames [BT, C, H, W]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    scale = size / min(h, w)
    target = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
    x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = (x[:, :, top:top + size, left:left + size] - 0.5) * 2  # data.py's [-0.5, 0.5], then fvd.py's x2
    return x.reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


class I3DStateDictExtractor(nn.Module):
    """uint8 [B, T, H, W, C] -> 400-d logits (VideoGPT / DIGAN / TATS FVD features)."""

    kind = "video"
    dim = 400
    description = "I3D Kinetics-400 state dict (i3d_pretrained_400.pt), VideoGPT preprocessing"

    def __init__(self, net: InceptionI3d):
        super().__init__()
        self.net = net

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.net(videogpt_preprocess(videos).to(next(self.net.parameters()).device)).double()


class I3DTorchScriptExtractor(nn.Module):
    """uint8 [B, T, H, W, C] -> 400-d features of StyleGAN-V's ``i3d_torchscript.pt``."""

    kind = "video"
    dim = 400
    description = "I3D TorchScript (i3d_torchscript.pt), StyleGAN-V preprocessing (rescale, resize inside)"

    def __init__(self, module):
        super().__init__()
        self.net = module

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos.permute(0, 4, 1, 2, 3)  # [B, C, T, H, W] uint8, as StyleGAN-V passes it
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1, 1)
        return self.net(x, rescale=True, resize=True, return_features=True).double()
