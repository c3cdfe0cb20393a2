"""Inference export: generator weights as safetensors + a JSON sidecar saying how to rebuild it.

    export-0000512000.safetensors   state_dict of the unwrapped, uncompiled generator (G_ema)
    export-0000512000.json          {"format": "kinema-generator", "format_version": 2, "name": ...,
                                     "kwargs": {...}, "meta": {"kinema_version": ..., kimg, fps, ...},
                                     "sha256": <hash of the .safetensors file>,
                                     "checksum": <hash of every other field of this JSON>}

Nothing is pickled: loading runs no code from the file. The sidecar is written after the
weights, each atomically, and carries the weights' hash, so a crash between the two writes, a
truncated or an edited weights file is reported instead of loading something else; the
``checksum`` covers the options and meta too, so an edited sidecar is reported as edited.

Neither hash is a signature (anyone can recompute them), so loading never trusts the options:
they are checked against the model's declared bounds, then the model is built on the ``meta``
device (no memory) and its tensor names, dtypes and shapes are compared with the safetensors
header before a byte of weights is read. A file that passes allocates no more than its own size.
Version 1 sidecars (weights hash only) still load: the same bound and shape checks apply, but an
edit of their options can only be caught by those checks, not named as an edit.
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
from kinema.models.layers import MAX_CLASSES
from kinema.untrusted import (json_float, json_strings, layout_mismatch, meta_build, read_json,
                              read_safetensors_header, state_layout)

FORMAT = "kinema-generator"
FORMAT_VERSION = 2          # 2: "checksum" over the sidecar; 1: the weights' sha256 only (still read)
READ_VERSIONS = (1, 2)
MAX_SIDECAR_BYTES = 1 << 20
MAX_FPS, MAX_CLASS_NAME = 1000.0, 256
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile / DDP wrappers


def find_export(path) -> Path:
    """The ``.safetensors`` of an export given it, its ``.json``, its stem, or a training run folder
    (then the newest export in it: the most clips seen, ``kinema.train.checkpoint.list_exports``;
    other ``export-*.safetensors`` names only when the folder has no snapshot-named one)."""
    from kinema.train.checkpoint import list_exports

    path = Path(path)
    if path.is_dir():
        snapshots = list_exports(path)
        if snapshots:
            return snapshots[-1][1]
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


def config_checksum(config: dict) -> str:
    """sha256 of the sidecar's canonical JSON without its own ``checksum`` field."""
    body = {k: v for k, v in config.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
        config["checksum"] = config_checksum(config)
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as err:
        raise KinemaError(f"{sidecar}: kwargs/meta are not JSON-able ({err})") from None
    atomic_write_text(sidecar, text + "\n")
    return weights


def read_config(path) -> dict:
    """The sidecar JSON of an export, checked (size, format, checksum, option bounds, meta);
    raises KinemaError naming the file. Nothing is built."""
    from kinema.models import MODELS, check_options

    _, sidecar = _paths(path)
    if not sidecar.is_file():
        raise KinemaError(f"{sidecar}: export config not found (an export is a .safetensors file plus its .json)")
    config = read_json(sidecar, MAX_SIDECAR_BYTES, max_depth=8, what="export config")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise KinemaError(f"{sidecar}: not a kinema generator export (format field missing or wrong)")
    version = config.get("format_version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise KinemaError(f"{sidecar}: export format version {str(version)[:20]} is not supported "
                          f"(this kinema reads {', '.join(map(str, READ_VERSIONS))})")
    sha = config.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise KinemaError(f"{sidecar}: no sha256 of the weights recorded (required to load an export)")
    if version >= 2 and config.get("checksum") != config_checksum(config):
        raise KinemaError(f"{sidecar}: export config was edited after export (checksum mismatch; "
                          f"its options or meta no longer match what was saved)")
    if config.get("name") not in MODELS:
        raise KinemaError(f"{sidecar}: unknown model name {str(config.get('name'))[:40]!r}; known: {', '.join(MODELS)}")
    if not isinstance(config.get("kwargs"), dict):
        raise KinemaError(f"{sidecar}: 'kwargs' must be an object")
    try:
        check_options(config["name"], config["kwargs"])
    except KinemaError as err:
        raise KinemaError(f"{sidecar}: {err}") from None
    meta = config.get("meta", {})
    if not isinstance(meta, dict):
        raise KinemaError(f"{sidecar}: 'meta' must be an object")
    if meta.get("fps") is not None:
        json_float(meta, "fps", 1e-3, MAX_FPS, f"{sidecar}: meta")
    if meta.get("class_names") is not None:
        json_strings(meta, "class_names", MAX_CLASSES, MAX_CLASS_NAME, f"{sidecar}: meta")
    return config


def _alternatives(rule, value) -> list:
    """A few valid values of an option other than ``value`` (to see which tensors it sizes)."""
    from kinema.models.options import Bool, Choice, Float, Int

    if isinstance(rule, Bool):
        return [not value]
    if isinstance(rule, Choice):
        return [v for v in rule.values if v != value][:3]
    if isinstance(rule, Int):
        if value is None:
            return [rule.lo]
        return [v for v in dict.fromkeys((value + 1, value - 1, rule.lo)) if rule.lo <= v <= rule.hi and v != value]
    if isinstance(rule, Float):
        return [v for v in (value * 0.5, (value + rule.hi) / 2) if v != value]
    return []


def _suspects(name: str, kwargs: dict, expected: dict, found: dict) -> tuple[list[str], str]:
    """The options to blame for a layout mismatch, and a hint: an option with a value that makes
    the layout fit the file; else those whose change alters exactly the tensors that differ (else
    all of them, else any). Found by rebuilding on the meta device with one option changed at a
    time (error path only, a few builds without memory)."""
    from kinema.models import build, model_options

    wrong = {k for k in set(expected) | set(found) if expected.get(k) != found.get(k)}
    schema, sized = model_options(name), {}
    for opt, value in kwargs.items():
        for alt in _alternatives(schema[opt], value):
            try:
                with meta_build():
                    other = state_layout(build(name, **{**kwargs, opt: alt}).G)
            except (KinemaError, TypeError, ValueError, RuntimeError, ZeroDivisionError):
                continue
            if other == found:
                return [opt], f" (they fit {opt}={alt!r})"
            sized.setdefault(opt, {k for k in set(other) | set(expected) if other.get(k) != expected.get(k)})
    for rule in (lambda ch: ch == wrong, lambda ch: ch >= wrong, lambda ch: bool(ch & wrong)):
        hits = [opt for opt, ch in sized.items() if rule(ch)]
        if hits:
            return hits, ""
    return [], ""


def load_generator(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild the exported generator on ``device`` in eval mode -> (G, config dict).

    ``path`` may name the .safetensors or the .json. Missing/unknown/tampered/truncated files,
    options outside their bounds and weights whose header disagrees with the options raise a
    one-line KinemaError naming the file (and the option) before any weight is allocated.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kinema.models import build

    weights, sidecar = _paths(path)
    config = read_config(sidecar)
    if not weights.is_file():
        raise KinemaError(f"{weights}: export weights not found")
    if _sha256(weights) != config["sha256"]:
        raise KinemaError(f"{weights}: weights do not match the checksum in {sidecar.name} "
                          f"(truncated, modified, or from another export)")
    found, _ = read_safetensors_header(weights)
    name, kwargs = config["name"], config["kwargs"]
    try:
        with meta_build():  # shapes only: nothing is allocated yet
            G = build(name, **kwargs).G
    except (KinemaError, TypeError, ValueError) as err:
        raise KinemaError(f"{sidecar}: bad model options ({err})") from None
    expected = state_layout(G)
    problem = layout_mismatch(expected, found)
    if problem:
        blame, hint = _suspects(name, kwargs, expected, found)
        opts = ", ".join(f"{k}={kwargs[k]!r}" for k in blame) or "the options"
        verb = "option {} does" if len(blame) == 1 else "options {} do"
        raise KinemaError(f"{sidecar}: {verb.format(opts)} not fit the weights of model {name} in "
                          f"{weights.name}: {problem}{hint}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise KinemaError(f"{weights}: unreadable safetensors file ({err})") from None
    G.load_state_dict(state, strict=True, assign=True)
    left = [k for k, t in list(G.named_parameters()) + list(G.named_buffers()) if t.is_meta]
    if left:  # a non-persistent buffer: the model cannot be rebuilt from its export
        raise KinemaError(f"{weights}: model {name} has tensors that are not saved in exports ({left[0]})")
    return G.to(device).eval(), config
