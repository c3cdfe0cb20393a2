"""Finding and loading the pretrained extractors' files; kinema never downloads them.

Search order for an extractor: ``--weights PATH`` (a file, or a folder to search), then the
folder named by the ``KINEMA_WEIGHTS`` environment variable. Within a folder the known file
names are tried in the order below. When nothing is found, the error names each expected file
and the public place it is published, so the user can fetch it once by hand.

Formats are told apart by content, not name: a zip archive with a ``code/`` entry is
TorchScript (``torch.jit.load``: TorchScript programs, no arbitrary Python); anything else must
be a plain state dict, read with ``torch.load(weights_only=True)`` (no unpickling of objects).
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import torch

from kinema.errors import KinemaError

MAX_TORCHSCRIPT_BYTES = 1 << 30  # the published files are 50-100 MB

# extractor -> [(file name, where it is published)]
KNOWN = {
    "i3d": [
        ("i3d_torchscript.pt", "StyleGAN-V (github.com/universome/stylegan-v): "
                               "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"),
        ("i3d_pretrained_400.pt", "VideoGPT (github.com/wilson1yan/VideoGPT, videogpt/download.py, "
                                  "Google Drive); also used by DIGAN and TATS"),
    ],
    "vgg19": [
        ("vgg19-dcbb9e9d.pth", "torchvision (ImageNet VGG-19, used by kinema edit style --method neural): "
                               "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    ],
    "inception": [
        ("inception-2015-12-05.pt", "StyleGAN2-ADA / clean-fid: https://nvlabs-fi-cdn.nvidia.com/"
                                    "stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"),
        ("pt_inception-2015-12-05-6726825d.pth", "pytorch-fid: https://github.com/mseitzer/pytorch-fid/"
                                                 "releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"),
    ],
}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def find_weights(extractor: str, weights: str | os.PathLike | None = None) -> Path:
    """Path of the weights file for ``extractor`` ("i3d" or "inception"); KinemaError if absent."""
    names = KNOWN[extractor]
    if weights is not None and Path(weights).is_file():
        return Path(weights)
    folders = []
    if weights is not None:
        if not Path(weights).is_dir():
            raise KinemaError(f"{weights}: --weights file not found")
        folders.append(Path(weights))
    if os.environ.get("KINEMA_WEIGHTS"):
        folders.append(Path(os.environ["KINEMA_WEIGHTS"]))
    for folder in folders:
        for name, _ in names:
            if (folder / name).is_file():
                return folder / name
    where = " or ".join(str(f) for f in folders) or "nowhere (no --weights, KINEMA_WEIGHTS unset)"
    expected = "; ".join(f"{n} (published by {src})" for n, src in names)
    raise KinemaError(f"{extractor} weights not found in {where}: expected {expected}; "
                      f"download one and pass --weights FILE or set KINEMA_WEIGHTS=FOLDER")


def is_torchscript(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _jit_load(path, device):
    """``torch.jit.load`` (the reference files are TorchScript; newer PyTorch warns it is deprecated).

    A TorchScript file is a program: its shapes cannot be checked before it is loaded, so only
    its size and container are (at most ``MAX_TORCHSCRIPT_BYTES``, stored zip records inside the
    file); compare the printed sha256 with the published file's."""
    from kinema.untrusted import check_zip

    check_zip(path, MAX_TORCHSCRIPT_BYTES, "TorchScript file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:
            raise KinemaError(f"{path}: unreadable TorchScript file ({type(err).__name__})") from None


def _load_extractor(name: str, weights, device, scripted, from_state_dict):
    """-> (extractor, weights path, sha256): a TorchScript file wrapped by ``scripted``, anything
    else read as a state dict by ``from_state_dict(path)``."""
    path = find_weights(name, weights)
    ext = scripted(_jit_load(path, device)) if is_torchscript(path) else from_state_dict(path).to(device)
    return ext.eval(), path, sha256_file(path)


def load_video_extractor(weights=None, device: str = "cpu"):
    """-> (I3D extractor module, weights path, sha256)."""
    from kinema.metrics.i3d import I3DStateDictExtractor, I3DTorchScriptExtractor, load_i3d_state_dict

    return _load_extractor("i3d", weights, device, I3DTorchScriptExtractor,
                           lambda path: I3DStateDictExtractor(load_i3d_state_dict(path)))


def load_frame_extractor(weights=None, device: str = "cpu"):
    """-> (Inception-v3 extractor module, weights path, sha256)."""
    from kinema.metrics.inception import (FIDInceptionStateDictExtractor, InceptionTorchScriptExtractor,
                                          load_fid_inception_state_dict)

    return _load_extractor("inception", weights, device, InceptionTorchScriptExtractor,
                           lambda path: FIDInceptionStateDictExtractor(load_fid_inception_state_dict(path)))
