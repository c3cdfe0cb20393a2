"""Training states and inference exports: atomic writes, keep-last-K, latest discovery, RNG capture,
and resuming the loop from a state (``resume_into``).

Run folder::

    OUT/training-state-0000512000.pt     everything to resume (this module); the number is clips seen
    OUT/export-0000512000.safetensors    G_ema weights   (kinema.models.save_generator)
    OUT/export-0000512000.json           its model name, kwargs and meta

A training state is ``torch.save`` of plain containers and tensors only, read back with
``torch.load(weights_only=True)``: no pickled code, and a hostile file cannot run anything.
numpy arrays (in RNG or loader states) are stored as uint8 tensors plus dtype and shape.
A SHA-256 digest over every tensor's bytes and every scalar is stored inside the file, so a
flipped byte is reported as tampering rather than silently resumed from; a torn file fails the
zip reader. Both become a one-line ``KinemaError``.

The digest is no signature, so a state is read like any file from a stranger (kinema.untrusted):
resuming bounds its size by the run's networks, reads its structure and tensor shapes without
allocating them, and compares the model and every weight and optimizer moment with the run's
before a byte of tensor data is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.fsutil import atomic_path
from kinema.untrusted import MiB, layout_mismatch, state_layout, torch_load
from kinema import dist

FORMAT = "kinema-training-state"
VERSION = 1
MAX_STATE_BYTES = 64 << 30  # without a run to compare with (load_state alone)
NDARRAY_KINDS = "biuf"      # numpy arrays a state may hold (RNG and loader states)
# Snapshot names carry the clips seen, zero-padded to 10 digits (training-state-0000512345.pt): unique
# for fractional --snapshot-kimg and for a stop by signal between snapshots, and name order is
# training order. Names of earlier kinema versions (whole kimg, training-state-000512k.pt) are
# still listed, resumed from and loaded, ordered by clips seen with the new ones.
STATE_RE = re.compile(r"^training-state-(\d{10}|\d+k)\.pt$")
EXPORT_RE = re.compile(r"^export-(\d{10}|\d+k)\.safetensors$")
# Test hook: seconds to sleep halfway through writing a training state (to SIGKILL a writer).
SLOW_WRITE_ENV = "KINEMA_TEST_SLOW_CHECKPOINT_WRITE"


def kimg_tag(nimg: int) -> str:
    """Clips seen -> the thousands tag used in file names: 512345 -> '000512k'."""
    return f"{int(nimg) // 1000:06d}k"


def snapshot_tag(nimg: int) -> str:
    """Clips seen -> the tag of snapshot file names: 512345 -> '0000512345'."""
    return f"{int(nimg):010d}"


def tag_nimg(tag: str) -> int:
    """A snapshot tag (either form) -> clips seen: '0000512345' -> 512345, '000512k' -> 512000."""
    return int(tag[:-1]) * 1000 if tag.endswith("k") else int(tag)


def state_path(run_dir, nimg: int) -> Path:
    return Path(run_dir) / f"training-state-{snapshot_tag(nimg)}.pt"


def export_path(run_dir, nimg: int) -> Path:
    return Path(run_dir) / f"export-{snapshot_tag(nimg)}.safetensors"


# RNG states.

def capture_rng() -> dict:
    """Every global RNG kinema or its dependencies might draw from: python, numpy, torch CPU, CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# Encoding to what weights_only accepts, and the digest.

def _encode(obj):
    """numpy values -> tensors / python scalars; tuples, lists, dicts walked; tensors to CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj).tobytes()
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        return {"__ndarray__": raw, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _decode(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            raw, shape = obj["__ndarray__"], obj.get("shape")
            try:
                dtype = np.dtype(obj["dtype"])
            except (TypeError, ValueError):
                raise ValueError(f"stored array of unknown dtype {str(obj['dtype'])[:20]!r}") from None
            if dtype.kind not in NDARRAY_KINDS or not isinstance(shape, list) or \
                    not all(type(d) is int and d >= 0 for d in shape) or \
                    raw.dtype != torch.uint8 or raw.numel() != dtype.itemsize * int(np.prod(shape, dtype=object)):
                raise ValueError(f"stored array {dtype} {str(shape)[:40]} does not match its {raw.numel()} bytes")
            return np.frombuffer(raw.numpy().tobytes(), dtype=dtype).reshape(shape).copy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def _digest(obj, h=None) -> str:
    """SHA-256 over the structure, every scalar and every tensor's dtype, shape and bytes."""
    top = h is None
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            h.update(f"K{k!r}".encode())
            _digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _digest(v, h)
    else:
        h.update(f"S{obj!r}".encode())
    return h.hexdigest() if top else ""


# Save / load.

@contextlib.contextmanager
def _not_saved(run_dir, nimg: int, what: str, pattern):
    """An OSError while saving (disk full, quota, permissions) -> one line saying what was not
    saved and which earlier file is intact (the atomic write has removed its temporary)."""
    before = _list(run_dir, pattern)
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        kept = (f"the previous {what} {before[-1][1].name} is intact" if before
                else f"there is no earlier {what}")
        raise KinemaError(f"{run_dir}: the {what} at {nimg / 1000:.3f} kimg was not saved ({reason}); "
                          f"{kept}") from None


def save_state(run_dir, nimg: int, state: dict, keep: int) -> Path:
    """Write ``state`` (plain containers + tensors + numpy) atomically as the state for ``nimg``.

    The file is serialised in memory first, then written; a crash (even SIGKILL) at any moment
    leaves the previous files as they were and at most a ``.tmp-*`` file, which discovery
    ignores. Afterwards all but the newest ``keep`` training states are deleted.
    """
    payload = _encode(state)
    blob = {"format": FORMAT, "version": VERSION, "nimg": int(nimg), "digest": _digest(payload),
            "payload": payload}
    buf = io.BytesIO()
    torch.save(blob, buf)
    data = buf.getbuffer()
    path = state_path(run_dir, nimg)
    with _not_saved(run_dir, nimg, "training state", STATE_RE), atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            if os.environ.get(SLOW_WRITE_ENV):
                f.flush()
                time.sleep(float(os.environ[SLOW_WRITE_ENV]))
            f.write(data[half:])
    prune(run_dir, STATE_RE, keep)
    return path


def load_state(path, limit: int = MAX_STATE_BYTES, check=None) -> dict:
    """Read a training state; one-line KinemaError if it is missing, torn, foreign or tampered.

    ``limit``: most bytes accepted; ``check(payload)``: called on the payload read with fake
    tensors (shapes, no data) before the real load, to refuse a state that does not fit the run.
    """
    path = Path(path)
    if not path.is_file():
        raise KinemaError(f"{path}: no such training state")

    def check_blob(blob):
        _check_envelope(path, blob)
        if check is not None:
            check(blob["payload"])

    blob = torch_load(path, limit, "training state", check_blob)
    _check_envelope(path, blob)
    try:
        if _digest(blob["payload"]) != blob.get("digest"):
            raise KinemaError(f"{path}: training state is corrupted or was modified (checksum mismatch)")
        return _decode(blob["payload"])
    except RecursionError:
        raise KinemaError(f"{path}: training state nests containers too deeply") from None
    except (ValueError, TypeError, KeyError) as err:
        raise KinemaError(f"{path}: training state holds a malformed array ({err})") from None


def _check_envelope(path: Path, blob) -> None:
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("payload"), dict):
        raise KinemaError(f"{path}: not a kinema training state")
    if blob.get("version") != VERSION:
        raise KinemaError(f"{path}: training state version {str(blob.get('version'))[:20]} (this kinema reads {VERSION})")


def state_limit(nets: dict) -> int:
    """Most bytes a training state of these networks can need: every network's tensors (G_ema
    included) three times over (weights and two Adam moments), plus room for RNG and loader states."""
    total = sum(t.numel() * t.element_size() for net in nets.values() if net is not None
                for t in net.state_dict().values())
    return 3 * total + 64 * MiB


def fits_run(path, model_spec: dict, nets: dict, optimizers: dict):
    """A ``check`` for :func:`load_state`: the state's model, network layouts and optimizer moments
    must be the run's (compared on the fake-tensor pass, before any tensor data is read)."""
    spec = json.loads(json.dumps(model_spec))

    def check(payload: dict) -> None:
        model = payload.get("model")
        if model != spec:
            was = (f"{model.get('name')} {model.get('kwargs')}" if isinstance(model, dict) else repr(model))[:300]
            raise KinemaError(f"{path}: was trained as {was}, not {spec['name']} {spec['kwargs']}")
        for name, net in nets.items():
            if net is None:
                continue
            saved = payload.get(name)
            if not isinstance(saved, dict) or not all(torch.is_tensor(v) for v in saved.values()):
                raise KinemaError(f"{path}: training state has no weights for {name}")
            problem = layout_mismatch(state_layout(net, dtypes=False), state_layout(saved, dtypes=False))
            if problem:
                raise KinemaError(f"{path}: weights of {name} do not fit this run: {problem}")
        opts = payload.get("opt")
        if not isinstance(opts, dict):
            raise KinemaError(f"{path}: training state has no optimizer states")
        for name, opt in optimizers.items():
            _check_optimizer(path, name, opt, opts.get(name))

    return check


def _check_optimizer(path, name: str, opt: torch.optim.Optimizer, saved) -> None:
    """Saved per-parameter moments must have their parameter's shape (load_state_dict checks only counts)."""
    params = [p for group in opt.param_groups for p in group["params"]]
    state = saved.get("state") if isinstance(saved, dict) else None
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not isinstance(groups, list):
        raise KinemaError(f"{path}: optimizer state of {name} is missing or malformed")
    for index, slots in state.items():
        if type(index) is not int or not 0 <= index < len(params) or not isinstance(slots, dict):
            raise KinemaError(f"{path}: optimizer state of {name} refers to parameter {str(index)[:20]}, "
                              f"the run has {len(params)}")
        for key, value in slots.items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != tuple(params[index].shape):
                raise KinemaError(f"{path}: optimizer {name} {key} of parameter {index} is {list(value.shape)}, "
                                  f"the parameter is {list(params[index].shape)}")


def list_states(run_dir) -> list[tuple[int, Path]]:
    """(clips seen, path) of the training states in ``run_dir``, oldest first; temp files ignored."""
    return _list(run_dir, STATE_RE)


def list_exports(run_dir) -> list[tuple[int, Path]]:
    return _list(run_dir, EXPORT_RE)


def _list(run_dir, pattern) -> list[tuple[int, Path]]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(tag_nimg(m.group(1)), p) for p in run_dir.iterdir() if (m := pattern.match(p.name)) and p.is_file()]
    return sorted(found)


def prune(run_dir, pattern, keep: int) -> None:
    """Delete all but the newest ``keep`` files matching ``pattern`` (exports: with their .json)."""
    for _, path in _list(run_dir, pattern)[:-keep]:
        path.unlink(missing_ok=True)
        if path.suffix == ".safetensors":
            path.with_suffix(".json").unlink(missing_ok=True)


def remove_temporaries(run_dir) -> list[Path]:
    """Delete ``.tmp-training-state-*`` / ``.tmp-export-*`` left by a killed writer; return them."""
    run_dir = Path(run_dir)
    gone = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith((".tmp-training-state-", ".tmp-export-")) and p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def find_resume(spec: str, run_dir, log=print, limit: int = MAX_STATE_BYTES, check=None) -> tuple[Path, dict]:
    """``spec`` = "latest" (newest readable state in ``run_dir``) or a path -> (path, state).

    With "latest", a state that fails to load (e.g. damaged on disk after it was written) is
    reported and skipped in favour of the one before it. ``limit``, ``check``: see :func:`load_state`
    (``check`` is given the path: ``check(path)`` returns the payload check).
    """
    def load(path):
        return load_state(path, limit, check(path) if check else None)

    if spec != "latest":
        return Path(spec), load(spec)
    states = list_states(run_dir)
    if not states:
        raise KinemaError(f"{run_dir}: no training-state-*.pt to resume from")
    problems = []
    for _, path in reversed(states):
        try:
            return path, load(path)
        except KinemaError as err:
            problems.append(str(err))
            if log:
                log(f"warning: skipping {err}")
    raise KinemaError(f"{run_dir}: no readable training state ({problems[0]})")


def save_export(run_dir, nimg: int, G_ema, model_name: str, model_kwargs: dict, meta: dict, keep: int) -> Path:
    """Inference export of the EMA generator via kinema.models.save_generator, then keep-last-K."""
    from kinema.models import save_generator

    path = export_path(run_dir, nimg)
    with _not_saved(run_dir, nimg, "export", EXPORT_RE):
        save_generator(path, G_ema, model_name, model_kwargs, meta)
    prune(run_dir, EXPORT_RE, keep)
    return path


def latest_export(run_dir) -> Path:
    """The newest ``export-*.safetensors`` of a run folder (KinemaError if there is none)."""
    from kinema.models.export import find_export

    if not Path(run_dir).is_dir():
        raise KinemaError(f"{run_dir}: not a run folder")
    return find_export(run_dir)


# Resuming the loop: everything a training state restores, in place.

def resume_into(spec, out, model_spec, nets, optimizers, loader, generators, seed, invariant, say) -> tuple[int, int]:
    """Load the training state ``spec`` ("latest" | a path) of run folder ``out`` into the networks
    ``nets``, ``optimizers``, ``loader`` and the loop's ``generators`` (latent, augmentation) in
    place; returns (nimg, step). Another number of ranks than the state's: exact weights, optimizers
    and data position, and fresh per-rank streams unless ``invariant``."""
    path, state = find_resume(spec, out, log=say, limit=state_limit(nets),
                              check=lambda p: fits_run(p, model_spec, nets, optimizers))
    try:
        return _restore(path, state, nets, optimizers, loader, generators, seed, invariant, say)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, ArithmeticError) as err:
        # Layouts were checked before loading; what is left is a state whose other parts (RNG,
        # counters, loader position) are not what kinema writes.
        msg = (str(err).strip().splitlines() or [""])[0][:160]
        raise KinemaError(f"{path}: training state does not fit this run ({type(err).__name__}: {msg})") from None


def _restore(path, state, nets, optimizers, loader, generators, seed, invariant, say) -> tuple[int, int]:
    for name, net in nets.items():
        if net is not None:
            net.load_state_dict(state[name])
    for name, opt in optimizers.items():
        opt.load_state_dict(state["opt"][name])
        match_optimizer_layout(opt)
    nimg, step = state["counters"]["nimg"], state["counters"]["step"]
    if type(nimg) is not int or type(step) is not int or nimg < 0 or step < 0:
        raise ValueError(f"counters must be whole numbers >= 0, got nimg={str(nimg)[:20]} step={str(step)[:20]}")
    loader.load_state_dict(state["loader"])
    gen_latent, gen_aug = generators
    same_world = len(state["ranks"]) == dist.world_size()
    if same_world or invariant:  # world-invariant: every rank held the same streams; take rank 0's
        mine = state["ranks"][dist.rank() if same_world else 0]
        restore_rng(mine["rng"])
        gen_latent.set_state(mine["latent"]), gen_aug.set_state(mine["aug"])
    else:  # another number of ranks: fresh per-rank streams, derived from the position
        for g, k in ((gen_latent, 1), (gen_aug, 2)):
            g.manual_seed(seed * 2 + k + 1000003 * step)
    say(f"resumed from {path} at {nimg / 1000:.3f} kimg (step {step})")
    return nimg, step


def match_optimizer_layout(opt: torch.optim.Optimizer) -> None:
    """Give every per-weight optimizer state its weight's memory layout. A state saved under another
    ``channels_last`` setting (or on another device) loads contiguous next to channels-last weights;
    kernels that walk a weight and its moments in step expect one layout (the fused CUDA AdamW
    checks strides; torch 2.13's CPU kernel copes, measured)."""
    for group in opt.param_groups:
        for p in group["params"]:
            slots = opt.state.get(p, {})
            for key, value in slots.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    slots[key] = torch.empty_like(p).copy_(value)


def gather_rank_states(gen_latent: torch.Generator, gen_aug: torch.Generator) -> list[dict]:
    """Every rank's RNG states (global + the loop's generators), in rank order."""
    return dist.all_gather_object({"rng": capture_rng(), "latent": gen_latent.get_state(),
                                   "aug": gen_aug.get_state()})
