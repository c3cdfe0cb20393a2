"""Inception-v3 (ImageNet, the 2015-12-05 TF graph) for FID / KID on frames, in two published forms.

1. ``pt_inception-2015-12-05-6726825d.pth``: pytorch-fid's state dict; kinema defines the
   network (:class:`FIDInceptionV3`, bottom of this file) with matching module names.
2. ``inception-2015-12-05.pt``: the TorchScript translation used by StyleGAN2-ADA, StyleGAN3,
   StyleGAN-V and clean-fid. Its calling convention, followed exactly:
* input: uint8 values as a tensor [N, 3, H, W] (gray repeated to 3 channels); the module
  itself resizes to 299x299 and rescales to the range the TF graph expects;
* ``net(x, return_features=True)`` -> pool3 features [N, 2048] (FID, KID);
* ``net(x, no_output_bias=True)`` -> softmax probabilities [N, 1008] (Inception Score), as
  StyleGAN-V's ``inception_score.py`` calls it.

kinema's frame protocols feed each sampled frame as a 1-frame clip [N, 1, H, W, C].
"""

from __future__ import annotations

import torch
import torch.nn as nn


class InceptionTorchScriptExtractor(nn.Module):
    """uint8 [N, 1, H, W, C] (single frames) -> 2048-d pool3 features (float64)."""

    kind = "frame"
    dim = 2048
    description = "Inception-v3 TorchScript (inception-2015-12-05.pt), resize to 299 inside the module"

    def __init__(self, module):
        super().__init__()
        self.net = module

    def _images(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos.reshape(-1, *videos.shape[2:]).permute(0, 3, 1, 2)  # [N*T, C, H, W] uint8
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.net(self._images(videos), return_features=True).double()

    @torch.no_grad()
    def probs_from_videos(self, videos: torch.Tensor) -> torch.Tensor:
        return self.net(self._images(videos), no_output_bias=True).double()


# ---------------------------------------------------------------------------------------------
# pytorch-fid's state dict (pt_inception-2015-12-05-6726825d.pth): kinema defines the network.
#
# Inception-v3 as in torchvision with the FID graph's differences: 1008 classes, no auxiliary
# head, average pools that do not count padding (TF behaviour), and max pooling in the last
# block's pool branch. Module names match the file's keys (``Mixed_5b.branch1x1.conv.weight``).
# Preprocessing as pytorch-fid: uint8 / 255, bilinear resize to 299x299 (align_corners=False,
# no antialias), then 2x - 1. Features: the 2048-d global average pool.

def _conv(cin, cout, k, s=1, p=0):
    return BasicConv2d(cin, cout, k, s, p)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 0.001) + ReLU; names ``conv`` and ``bn``."""

    def __init__(self, cin, cout, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def _avg3(x):  # TF's 3x3 average pool ignores the zero padding
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class BlockA(nn.Module):  # 35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1
    def __init__(self, cin, pool):
        super().__init__()
        self.branch1x1 = _conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _conv(cin, 48, 1), _conv(48, 64, 5, p=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _conv(cin, 64, 1), _conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, p=1)
        self.branch_pool = _conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class BlockB(nn.Module):  # 35 -> 17 reduction
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = _conv(cin, 384, 3, s=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _conv(cin, 64, 1), _conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, s=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          torch.nn.functional.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):  # 17x17 with factorised 7x7 convolutions
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = _conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = _conv(cin, c7, 1), _conv(c7, c7, (1, 7), p=(0, 3))
        self.branch7x7_3 = _conv(c7, 192, (7, 1), p=(3, 0))
        self.branch7x7dbl_1 = _conv(cin, c7, 1)
        self.branch7x7dbl_2, self.branch7x7dbl_3 = _conv(c7, c7, (7, 1), p=(3, 0)), _conv(c7, c7, (1, 7), p=(0, 3))
        self.branch7x7dbl_4, self.branch7x7dbl_5 = _conv(c7, c7, (7, 1), p=(3, 0)), _conv(c7, 192, (1, 7), p=(0, 3))
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class BlockD(nn.Module):  # 17 -> 8 reduction
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _conv(cin, 192, 1), _conv(192, 320, 3, s=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _conv(cin, 192, 1), _conv(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _conv(192, 192, (7, 1), p=(3, 0)), _conv(192, 192, 3, s=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, torch.nn.functional.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):  # 8x8 with split 1x3 / 3x1 outputs; ``max_pool`` in the last block (FID graph)
    def __init__(self, cin, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _conv(cin, 320, 1)
        self.branch3x3_1 = _conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _conv(384, 384, (1, 3), p=(0, 1)), _conv(384, 384, (3, 1), p=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _conv(cin, 448, 1), _conv(448, 384, 3, p=1)
        self.branch3x3dbl_3a = _conv(384, 384, (1, 3), p=(0, 1))
        self.branch3x3dbl_3b = _conv(384, 384, (3, 1), p=(1, 0))
        self.branch_pool = _conv(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = torch.nn.functional.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """float [N, 3, 299, 299] in [-1, 1] -> (pool features [N, 2048], logits [N, 1008])."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _conv(3, 32, 3, s=2), _conv(32, 32, 3)
        self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = _conv(32, 64, 3, p=1), _conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = BlockD(768), BlockE(1280, False), BlockE(2048, True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        mp = torch.nn.functional.max_pool2d
        x = mp(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, 2)  # [N, 64, 73, 73]
        x = mp(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)  # [N, 192, 35, 35]
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)  # -> [N, 2048, 8, 8]
        feats = x.mean(dim=(2, 3))
        return feats, self.fc(feats)


def load_fid_inception_state_dict(path) -> FIDInceptionV3:
    from kinema.untrusted import load_state_dict_file

    model = load_state_dict_file(path, FIDInceptionV3(), "pytorch-fid Inception state dict")
    return model.eval()


class FIDInceptionStateDictExtractor(nn.Module):
    """uint8 [N, 1, H, W, C] (single frames) -> 2048-d pool features, pytorch-fid preprocessing."""

    kind = "frame"
    dim = 2048
    description = "Inception-v3 pytorch-fid state dict (pt_inception-2015-12-05-6726825d.pth), bilinear resize to 299"

    def __init__(self, net: FIDInceptionV3):
        super().__init__()
        self.net = net

    def _prep(self, videos):
        x = videos.reshape(-1, *videos.shape[2:]).permute(0, 3, 1, 2).float() / 255  # [N, C, H, W]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return (2 * x - 1).to(self.net.fc.weight.device)

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.net(self._prep(videos))[0].double()

    @torch.no_grad()
    def probs_from_videos(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self._prep(videos))[1].double(), 1)
