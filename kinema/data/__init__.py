"""Data: built-in procedural datasets, ``prepare`` (videos -> clip archive), the archive, the loader.

    from kinema.data import prepare, open_archive, ClipLoader, AugmentConfig, resolve_source

Decoding goes through :mod:`kinema.io`; nothing here knows about models.
"""

from kinema.data.archive import Archive, open_archive
from kinema.data.augment import AugmentConfig
from kinema.data.builtin import BUILTINS, generate_builtin
from kinema.data.loader import ClipLoader
from kinema.data.prepare import prepare
from kinema.data.source import resolve_source

__all__ = ["Archive", "AugmentConfig", "BUILTINS", "ClipLoader", "generate_builtin", "open_archive", "prepare",
           "resolve_source"]
