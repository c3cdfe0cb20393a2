"""Sampling: seeds -> latents -> generator -> videos, plus interpolation and streaming.

* :mod:`kinema.sample.seeds` - ``parse_seeds("0-63,70")``;
* :mod:`kinema.sample.generate` - seeded, batch-invariant generation (float ``[N, C, T, H, W]``);
* :mod:`kinema.sample.interpolate` - slerp paths between seeds, optionally looping;
* :mod:`kinema.sample.stream` - chunked generation encoded as it goes, any length;
* :mod:`kinema.sample.api` - ``load(path) -> Model`` with ``.generate(...)``, and ``save_video``.
"""

from kinema.sample.api import Model, load, save_video
from kinema.sample.generate import generate, generate_batches
from kinema.sample.interpolate import interpolate, interpolate_batches, slerp
from kinema.sample.seeds import format_seeds, parse_seeds
from kinema.sample.stream import stream

__all__ = ["Model", "load", "save_video", "generate", "generate_batches", "interpolate", "interpolate_batches",
           "slerp", "parse_seeds", "format_seeds", "stream"]
