"""Evaluation: FVD, KVD, FID, KID and IS under named, reproducible protocols.

- mathematics: ``frechet`` (Fréchet distance, float64, eigen-decomposition square root),
  ``mmd`` (unbiased cubic-kernel MMD with subsets: KID / KVD), ``inception_score``;
- extractors: ``builtin`` (random-feature 3D conv network, no download, NOT comparable to
  published numbers), ``i3d`` (I3D state dict or TorchScript), ``inception`` (TorchScript);
  files found by ``weights``;
- ``protocols`` (fvd2048_16f, ...), ``sources`` (archive, video folder, export), ``cache``
  (real statistics by content hash), ``evaluate`` (run + jsonl + table), ``proxy`` (cheap FVD
  during training), ``digits`` (classifier-based scores for the built-in datasets), ``motion``
  (generated vs real motion: object speed, travel, bounces, identity; a motion distance for any footage).
"""

from kinema.metrics.evaluate import evaluate
from kinema.metrics.frechet import frechet_distance
from kinema.metrics.inception_score import inception_score
from kinema.metrics.mmd import kernel_distance, mmd2_unbiased
from kinema.metrics.protocols import PROTOCOLS, Protocol, get_protocol
from kinema.metrics.proxy import ProxyFVD, proxy_fvd

__all__ = ["PROTOCOLS", "Protocol", "ProxyFVD", "evaluate", "frechet_distance", "get_protocol", "inception_score",
           "kernel_distance", "mmd2_unbiased", "proxy_fvd"]
