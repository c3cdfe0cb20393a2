"""Inference export: generator weights as safetensors + a JSON sidecar saying how to rebuild it.

    export-000512k.safetensors   state_dict of the unwrapped, uncompiled generator (G_ema)
    export-000512k.json          {"format": "kinema-generator", "format_version": 1, "name": ...,
                                  "kwargs": {...}, "meta": {"kinema_version": ..., kimg, fps, ...},
                                  "sha256": <hash of the .safetensors file>}

Nothing is pickled: loading runs no code from the file. The sidecar is written after the
weights, each atomically, and carries the weights' hash, so a crash between the two writes, a
truncated or an edited weights file is reported instead of loading something else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from kinema import __version__
from kinema.errors import KinemaError
from kinema.fsutil import atomic_path, atomic_write_text

FORMAT = "kinema-generator"
FORMAT_VERSION = 1
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile / DDP wrappers


def find_export(path) -> Path:
    """The ``.safetensors`` of an export given it, its ``.json``, its stem, or a training run folder
    (then the newest ``export-NNNNNNk.safetensors`` in it: the tags are zero-padded, so name order
    is training order)."""
    path = Path(path)
    if path.is_dir():
        exports = sorted(p for p in path.glob("export-*.safetensors") if p.is_file())
        if not exports:
            raise KinemaError(f"{path}: folder holds no export-*.safetensors (has the run saved a snapshot?)")
        return exports[-1]
    return _paths(path)[0]


def _paths(path) -> tuple[Path, Path]:
    """Both files of an export, given either of them, the stem, or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = find_export(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def clean_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with wrapper prefixes stripped, every tensor contiguous on CPU (safetensors needs it)."""
    out = {}
    for key, value in unwrap(module).state_dict().items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value.detach().to("cpu").contiguous()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_generator(path, G: nn.Module, name: str, kwargs: dict, meta: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) and its .json sidecar atomically; returns the weights path.

    G: the generator to export (usually G_ema; wrappers are removed); name, kwargs: as in
    ``ModelSet`` (``build(name, **kwargs)`` must rebuild G); meta: JSON-able extras (kimg, fps,
    class_names, ...). ``kinema_version`` is added to meta.
    """
    from safetensors.torch import save_file

    weights, sidecar = _paths(path)
    with atomic_path(weights) as tmp:
        save_file(clean_state_dict(G), str(tmp), metadata={"format": FORMAT, "name": name})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "kwargs": dict(kwargs),
              "meta": {**(meta or {}), "kinema_version": __version__}, "sha256": _sha256(weights)}
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as err:
        raise KinemaError(f"{sidecar}: kwargs/meta are not JSON-able ({err})") from None
    atomic_write_text(sidecar, text + "\n")
    return weights


def read_config(path) -> dict:
    """The sidecar JSON of an export, checked; raises KinemaError naming the file."""
    from kinema.models import MODELS

    _, sidecar = _paths(path)
    if not sidecar.is_file():
        raise KinemaError(f"{sidecar}: export config not found (an export is a .safetensors file plus its .json)")
    try:
        config = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KinemaError(f"{sidecar}: unreadable export config ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise KinemaError(f"{sidecar}: not a kinema generator export (format field missing or wrong)")
    if config.get("format_version") != FORMAT_VERSION:
        raise KinemaError(f"{sidecar}: export format version {config.get('format_version')} is not supported "
                          f"(this kinema reads {FORMAT_VERSION})")
    if config.get("name") not in MODELS:
        raise KinemaError(f"{sidecar}: unknown model name {config.get('name')!r}; known: {', '.join(MODELS)}")
    if not isinstance(config.get("kwargs"), dict):
        raise KinemaError(f"{sidecar}: 'kwargs' must be an object")
    return config


def load_generator(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild the exported generator on ``device`` in eval mode -> (G, config dict).

    ``path`` may name the .safetensors or the .json. Missing/unknown/tampered/truncated files
    raise a one-line KinemaError naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kinema.models import build

    weights, sidecar = _paths(path)
    config = read_config(sidecar)
    if not weights.is_file():
        raise KinemaError(f"{weights}: export weights not found")
    if config.get("sha256") and _sha256(weights) != config["sha256"]:
        raise KinemaError(f"{weights}: weights do not match the checksum in {sidecar.name} "
                          f"(truncated, modified, or from another export)")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise KinemaError(f"{weights}: unreadable safetensors file ({err})") from None
    try:
        G = build(config["name"], **config["kwargs"]).G
    except (KinemaError, TypeError) as err:
        raise KinemaError(f"{sidecar}: bad model options ({err})") from None
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise KinemaError(f"{weights}: weights do not fit model {config['name']} "
                          f"({' '.join(first[:3])[:300]})") from None
    return G.to(device).eval(), config
