"""The Python API: ``kinema.load(path)`` and ``kinema.save_video(frames, path)``.

    import kinema
    model = kinema.load("runs/demo/export-0000512000.safetensors")
    videos = model.generate(seeds=range(4), frames=32)      # uint8 [4, 32, H, W, C]
    kinema.save_video(videos[0], "seed0.mp4", fps=model.fps)

Everything here is a thin layer over :mod:`kinema.sample` (generation, interpolation,
streaming) and :mod:`kinema.io` (encoding); no state beyond the loaded generator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.sample.generate import generate as _generate
from kinema.sample.interpolate import interpolate as _interpolate
from kinema.sample.seeds import parse_seeds

DEFAULT_FPS = 16.0


def _output(video: torch.Tensor, output: str):
    """Model tensor ``[N, C, T, H, W]`` -> uint8 ``[N, T, H, W, C]`` or the float tensor itself."""
    if output == "tensor":
        return video
    if output == "uint8":
        from kinema.io import to_uint8
        return to_uint8(video)
    raise KinemaError(f"output must be 'uint8' or 'tensor', got {output!r}")


class Model:
    """A loaded inference export. Attributes: ``G`` (the generator, eval mode), ``config``
    (the export JSON), ``name``, ``fps``, ``frames``, ``resolution``, ``channels``,
    ``num_classes``, ``class_names``, ``can_extend``, ``device``."""

    def __init__(self, G, config: dict, device: str | torch.device = "cpu", path: str | None = None):
        self.G = G.eval()
        self.config = config
        self.device = torch.device(device)
        self.path = path
        meta = config.get("meta") or {}
        self.name = str(config.get("name") or type(G).__name__)
        self.fps = float(meta.get("fps") or DEFAULT_FPS)
        self.class_names = list(meta.get("class_names") or [])
        self.frames, self.resolution, self.channels = int(G.frames), int(G.resolution), int(G.channels)
        self.num_classes, self.can_extend = int(G.num_classes), bool(G.can_extend)

    def __repr__(self) -> str:
        return (f"kinema.Model({self.name}, {self.resolution}x{self.resolution}x{self.frames}, "
                f"channels={self.channels}, classes={self.num_classes}, device={self.device})")

    def set_sampler(self, steps: int | None = None, cfg: float | None = None, solver: str | None = None) -> dict:
        """ODE settings of a flow model (``None`` keeps the current one): ``steps``, ``cfg`` (guidance
        scale, 1 = none), ``solver`` ("euler" | "heun"). Returns the settings now in force."""
        from kinema.models.flow import update_sampler

        return update_sampler(self.G, self.name, steps, cfg, solver)

    def _device(self, device):
        if device is not None and check_device(device) != self.device:
            self.device = torch.device(device)
            self.G.to(self.device)
        return self.device

    def generate(self, seeds=0, frames: int | None = None, class_=None, truncation: float = 1.0,
                 output: str = "uint8", batch: int = 8, device=None):
        """Videos for ``seeds`` (an int, a list, a range or ``"0-7,12"``).

        Returns uint8 ``[N, T, H, W, C]`` (``output="uint8"``) or float ``[N, C, T, H, W]`` in
        [-1, 1] on the CPU (``output="tensor"``). ``frames`` beyond the trained length works for
        models that can extend (``model.can_extend``) and raises a clear error otherwise.
        """
        video = _generate(self.G, parse_seeds(seeds), frames, class_, truncation, batch,
                          self._device(device), self.config)
        return _output(video, output)

    def interpolate(self, seeds, steps: int = 8, frames: int | None = None, space: str = "all",
                    loop: bool = False, class_=None, truncation: float = 1.0, output: str = "uint8",
                    batch: int = 8, device=None):
        """Clips along a latent path through ``seeds`` (see :mod:`kinema.sample.interpolate`):
        uint8 ``[K, T, H, W, C]`` or float ``[K, C, T, H, W]``."""
        clips = _interpolate(self.G, parse_seeds(seeds), steps, frames=frames, space=space, loop=loop,
                             class_=class_, truncation=truncation, batch=batch,
                             device=self._device(device), config=self.config)
        return _output(clips, output)

    def walk_loop(self, seeds, frames: int, class_=None, truncation: float = 1.0, output: str = "uint8",
                  device=None):
        """A seamless looping video through ``seeds`` for frame-per-latent models (dcgan):
        uint8 ``[frames, H, W, C]`` or float ``[C, frames, H, W]`` (see
        :func:`kinema.sample.interpolate.walk_loop`)."""
        from kinema.sample.interpolate import walk_loop
        video = walk_loop(self.G, parse_seeds(seeds), frames, class_, truncation, device=self._device(device),
                          config=self.config)
        return _output(video, output)

    def stream(self, out, frames: int, seed: int = 0, **kwargs) -> dict:
        """Generate ``frames`` frames in chunks straight into ``out`` (a path, ``"-"`` for stdout,
        or a binary file object); returns speed statistics. See :func:`kinema.sample.stream.stream`."""
        from kinema.sample.stream import stream
        kwargs.setdefault("fps", self.fps)
        return stream(self.G, out, frames, seed=seed, device=self.device, config=self.config, **kwargs)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """Load an inference export (``.safetensors`` + ``.json`` beside it) onto ``device``.

    ``path`` may also be a training run folder, in which case its latest export is used.
    """
    from kinema.models.export import find_export, load_generator

    check_device(device)
    path = find_export(path)
    G, config = load_generator(path, device=device)
    return Model(G, config, device, str(path))


def check_device(device) -> torch.device:
    """``device`` as a torch.device, or a one-line error when it does not exist here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise KinemaError(f"device {device!r}: not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise KinemaError(f"device {device!r}: no such CUDA device on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise KinemaError(f"device {device!r}: MPS is not available on this machine")
    return dev


def as_frames(frames) -> np.ndarray:
    """uint8 ``[T, H, W, C]`` / ``[N, T, H, W, C]`` arrays pass; float tensors ``[C, T, H, W]`` /
    ``[N, C, T, H, W]`` in [-1, 1] are converted with :func:`kinema.io.to_uint8`."""
    if isinstance(frames, torch.Tensor):
        from kinema.io import to_uint8
        if frames.dtype == torch.uint8:
            return frames.cpu().numpy()
        return to_uint8(frames)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise KinemaError(f"save_video: expected uint8 frames or a float tensor, got {frames.dtype}")
    return frames


def save_video(frames, path: str | os.PathLike, fps: float = DEFAULT_FPS, codec: str | None = None,
               crf: int | None = None, overwrite: bool = False, force: bool | None = None, **kwargs) -> Path:
    """Encode ``frames`` to ``path`` atomically; returns the path.

    ``frames``: uint8 ``[T, H, W, C]``, or a batch ``[N, T, H, W, C]`` (written as a tiled grid),
    or the matching float tensors. ``codec`` defaults from the extension (h264 for .mp4/.mkv,
    vp9 for .webm, gif for .gif, png frames for a name without extension; see
    :mod:`kinema.io.write`). Like :func:`kinema.io.write_video`: an existing file is refused
    unless ``overwrite=True`` (``force`` is the same switch), and ``save_video(path, frames)``,
    the argument order of ``write_video``, is accepted too.
    """
    from kinema.io import tile, write_video
    from kinema.io.write import frames_and_path

    frames, path = frames_and_path(frames, path)
    overwrite = overwrite if force is None else force
    path = Path(path)
    frames = as_frames(frames)
    if frames.ndim == 5:
        frames = frames[0] if len(frames) == 1 else tile(frames)
    if frames.ndim != 4:
        raise KinemaError(f"{path}: expected frames [T, H, W, C] or [N, T, H, W, C], got shape {frames.shape}")
    write_video(path, frames, fps, codec=codec, crf=crf, overwrite=overwrite, **kwargs)
    return path
