"""kinema: train, sample, encode, edit and evaluate generative video models.

Conventions used everywhere (docs/design.md, "Conventions"):
  * model tensors are float ``[B, C, T, H, W]`` in ``[-1, 1]``;
  * I/O arrays are uint8 ``[T, H, W, C]`` (one video) or ``[B, T, H, W, C]``;
  * conversion between the two lives only in :mod:`kinema.io`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import kinema` stays light: kinema.load / kinema.save_video live in kinema.sample.api.
    if name in ("load", "save_video"):
        from kinema.sample import api

        return getattr(api, name)
    raise AttributeError(f"module 'kinema' has no attribute {name!r}")
