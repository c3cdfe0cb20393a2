"""Reading files that may come from a stranger: every size is checked before it decides an allocation.

kinema's files are meant to be shared (exports, archives, statistics caches, extractor weights),
so a reader must treat each number in them as a claim to verify, not a size to allocate. The
helpers here are the only places that parse such files' framing:

* :func:`read_json` / :func:`parse_json`: JSON with a size cap (checked with ``stat`` before a
  byte is read) and a nesting-depth cap;
* :func:`read_safetensors_header`: the JSON header of a ``.safetensors`` file (8-byte
  little-endian length, bounded, then the header), with every tensor's dtype, shape and byte
  range checked against the file's real size; no tensor data is read;
* :func:`read_npy_header` / :func:`check_npz`: shapes and dtypes of ``.npy`` arrays (alone or
  inside an ``.npz``) against the bytes that are really there, before ``np.load``;
* :func:`torch_load`: ``torch.load(weights_only=True)`` after a size cap, a check that the zip
  container holds only stored (uncompressed) records lying inside the file, and a first pass
  that reads the structure and every tensor's shape without allocating storage (meta device),
  so callers compare shapes with their model before any tensor data is loaded;
* :func:`meta_build`: build a module on the meta device to learn its layout for free.

Every failure is a one-line :class:`~kinema.errors.KinemaError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kinema.errors import KinemaError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MAX_JSON_DEPTH = 32
MAX_SAFETENSORS_HEADER = 4 * MiB

# safetensors dtype names -> bytes per element.
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def file_size(path, limit: int | None = None, what: str = "file") -> int:
    """Size of ``path`` in bytes; KinemaError if it is missing, not a regular file, or over ``limit``."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        raise KinemaError(f"{path}: cannot read {what} ({err.strerror or type(err).__name__})") from None
    if not path.is_file():
        raise KinemaError(f"{path}: {what} is not a regular file")
    if limit is not None and st.st_size > limit:
        raise KinemaError(f"{path}: {what} is {_human(st.st_size)}, more than the {_human(limit)} kinema accepts")
    return st.st_size


def _human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------
# JSON.

def json_depth_ok(obj, max_depth: int) -> bool:
    """True if ``obj`` (parsed JSON) nests containers at most ``max_depth`` deep (iterative walk)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                return False
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return True


def parse_json(data: bytes, where, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON") -> Any:
    """Parse JSON bytes; KinemaError naming ``where`` if they are not UTF-8 JSON or nest too deeply.

    Python's parser itself stops at its recursion limit (RecursionError, caught here), so no
    input can exhaust the stack; the walk afterwards enforces the much smaller ``max_depth``.
    """
    try:
        obj = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise KinemaError(f"{where}: {what} nests more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, ValueError) as err:
        msg = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise KinemaError(f"{where}: {what} is not valid JSON ({msg})") from None
    if not json_depth_ok(obj, max_depth):
        raise KinemaError(f"{where}: {what} nests more than {max_depth} levels deep")
    return obj


def read_json(path, max_bytes: int, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON file") -> Any:
    """Parse the JSON file ``path`` if it is at most ``max_bytes`` long (checked before reading) and
    nests at most ``max_depth`` deep. Parsed JSON takes at most ~25x its size in memory."""
    file_size(path, max_bytes, what)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # the file may have grown since stat: never read past the cap
    except OSError as err:
        raise KinemaError(f"{path}: cannot read {what} ({err.strerror or type(err).__name__})") from None
    if len(data) > max_bytes:
        raise KinemaError(f"{path}: {what} is more than the {_human(max_bytes)} kinema accepts")
    return parse_json(data, path, max_depth, what)


# Typed field access for parsed JSON (claims are checked, not trusted).

def json_int(obj: dict, key: str, lo: int, hi: int, where) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if type(value) is not int or not lo <= value <= hi:
        raise KinemaError(f"{where}: '{key}' must be a whole number in {lo}..{hi}, got {_short(value)}")
    return value


def json_float(obj: dict, key: str, lo: float, hi: float, where) -> float:
    value = obj.get(key) if isinstance(obj, dict) else None
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise KinemaError(f"{where}: '{key}' must be a number in [{lo:g}, {hi:g}], got {_short(value)}")
    return float(value)


def json_strings(obj: dict, key: str, max_items: int, max_len: int, where) -> list[str]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if (not isinstance(value, list) or len(value) > max_items
            or not all(isinstance(s, str) and len(s) <= max_len for s in value)):
        raise KinemaError(f"{where}: '{key}' must be a list of at most {max_items} strings "
                          f"of at most {max_len} characters")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------
# safetensors.

def read_safetensors_header(path, max_header: int = MAX_SAFETENSORS_HEADER) -> tuple[dict, dict]:
    """-> ({tensor name: (dtype name, shape tuple)}, metadata dict) from the header of a
    ``.safetensors`` file, without reading tensor data.

    The header length (first 8 bytes, little-endian u64) must be at most ``max_header`` and fit
    in the file; each tensor's byte range must match its dtype and shape and lie inside the data
    section. A file that passes can be loaded with allocations no larger than the file itself.
    """
    size = file_size(path, what="safetensors file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise KinemaError(f"{path}: not a safetensors file ({size} bytes, shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", head)
            if n > max_header:
                raise KinemaError(f"{path}: safetensors header claims {n} bytes, more than the "
                                  f"{_human(max_header)} kinema accepts")
            if n > size - 8:
                raise KinemaError(f"{path}: safetensors header claims {n} bytes but the file has {size - 8} after it")
            raw = f.read(n)
    except OSError as err:
        raise KinemaError(f"{path}: cannot read safetensors file ({err.strerror or type(err).__name__})") from None
    header = parse_json(raw, path, max_depth=4, what="safetensors header")
    if not isinstance(header, dict):
        raise KinemaError(f"{path}: safetensors header is not a JSON object")
    data_size = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise KinemaError(f"{path}: safetensors __metadata__ must map names to strings")
    tensors = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise KinemaError(f"{path}: tensor {_short(name)}: header entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise KinemaError(f"{path}: tensor {_short(name)}: unknown dtype {_short(dtype)}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(type(d) is int and d >= 0 for d in shape):
            raise KinemaError(f"{path}: tensor {_short(name)}: shape {_short(shape)} is not a list of sizes >= 0")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise KinemaError(f"{path}: tensor {_short(name)}: byte range {_short(offsets)} is outside the "
                              f"{data_size} data bytes of the file")
        if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
            raise KinemaError(f"{path}: tensor {_short(name)}: shape {shape} of {dtype} does not match its "
                              f"{offsets[1] - offsets[0]} bytes")
        tensors[name] = (dtype, tuple(shape))
    return tensors, metadata


def safetensors_dtype(dtype) -> str:
    """The safetensors name of a torch dtype (float32 -> "F32")."""
    import torch

    names = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32", torch.int64: "I64",
             torch.float64: "F64"}
    return names.get(dtype, str(dtype))


def state_layout(module_or_state, dtypes: bool = True) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (safetensors dtype name, shape)} of a module's state_dict (works on the meta device
    and on fake tensors); ``dtypes=False`` leaves the dtype out ("")."""
    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    return {k: (safetensors_dtype(v.dtype) if dtypes else "", tuple(v.shape)) for k, v in state.items()}


@contextlib.contextmanager
def meta_build():
    """Build modules on PyTorch's ``meta`` device (shapes, no memory) with ``torch.nn.init``'s
    initialisers made no-ops: on meta they would only cost time (random fills go through
    PyTorch's Python reference kernels, whose first use imports the compiler stack, ~1.5 s)."""
    import torch
    import torch.nn.init as init

    names = [n for n in vars(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        with torch.device("meta"):
            yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def layout_mismatch(expected: dict, found: dict) -> str | None:
    """The first difference between two layouts ({name: (dtype, shape)}) as a phrase, else None."""
    missing = [k for k in expected if k not in found]
    if missing:
        return f"the file lacks tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    extra = [k for k in found if k not in expected]
    if extra:
        return f"the file has an unexpected tensor {_short(extra[0])}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
    for k, (dtype, shape) in expected.items():
        if found[k] != (dtype, shape):
            fd, fs = found[k]
            return (f"tensor {k} is {(fd + ' ') if fd else ''}{list(fs)} in the file, the model has "
                    f"{(dtype + ' ') if dtype else ''}{list(shape)}")
    return None


# ---------------------------------------------------------------------------------------------
# numpy.

def read_npy_header(f, size: int, where) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the ``.npy`` stream ``f`` (at its start) of ``size`` bytes; KinemaError
    unless it is a C-order array of a plain numeric dtype whose data is exactly the rest."""
    from numpy.lib import format as npformat

    try:
        start = f.tell()
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        header = f.tell() - start
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise KinemaError(f"{where}: not a .npy array ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None
    if fortran or dtype.hasobject or dtype.kind not in "biuf":
        raise KinemaError(f"{where}: .npy array must be a C-order numeric array, got dtype {dtype}")
    if size - header != math.prod(shape) * dtype.itemsize:
        raise KinemaError(f"{where}: .npy header claims shape {list(shape)} of {dtype} "
                          f"({math.prod(shape) * dtype.itemsize} bytes) but the file holds {size - header}")
    return tuple(shape), dtype


def load_npy(path, shape_ok: Callable[[tuple], bool], what: str, expect: str) -> np.ndarray:
    """``np.load`` of a ``.npy`` file after checking its header: ``shape_ok(shape)`` must hold
    (``expect`` says what was expected, for the message) and the data must be all there."""
    size = file_size(path, what=what)
    try:
        with open(path, "rb") as f:
            shape, _ = read_npy_header(f, size, path)
            if not shape_ok(shape):
                raise KinemaError(f"{path}: {what} has shape {list(shape)}, expected {expect}")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except OSError as err:
        raise KinemaError(f"{path}: cannot read {what} ({err.strerror or type(err).__name__})") from None


def check_npz(path, shapes_ok: Callable[[dict], str | None], limit: int, what: str) -> None:
    """Check an ``.npz`` before ``np.load``: at most ``limit`` bytes, stored (uncompressed)
    members only, every member a ``.npy`` whose header agrees with its size, and
    ``shapes_ok({name: shape})`` returning None (else the problem, as a phrase)."""
    file_size(path, limit, what)
    shapes = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in _stored_members(z, path, what):
                if not info.filename.endswith(".npy"):
                    raise KinemaError(f"{path}: {what} holds {_short(info.filename)}, not a .npy array")
                with z.open(info) as f:
                    shape, _ = read_npy_header(f, info.file_size, f"{path}:{info.filename}")
                shapes[info.filename[:-4]] = shape
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise KinemaError(f"{path}: unreadable {what} ({type(err).__name__})") from None
    problem = shapes_ok(shapes)
    if problem:
        raise KinemaError(f"{path}: {what} {problem}")


def _stored_members(z: zipfile.ZipFile, path, what: str) -> list[zipfile.ZipInfo]:
    """The members of an open zip, each checked: stored uncompressed, and lying inside the file,
    so that reading a member allocates no more than the bytes that are really there."""
    size = os.path.getsize(path)
    members = z.infolist()
    for info in members:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise KinemaError(f"{path}: {what} record {_short(info.filename)} is compressed "
                              f"({info.compress_size} -> {info.file_size} bytes); kinema reads only stored records")
        if info.header_offset + info.compress_size > size:
            raise KinemaError(f"{path}: {what} record {_short(info.filename)} claims {info.file_size} bytes "
                              f"beyond the end of the file")
    return members


def check_zip(path, limit: int, what: str) -> None:
    """A zip container (PyTorch and TorchScript files) of at most ``limit`` bytes whose records are
    all stored uncompressed inside the file: reading it allocates no more than the file's size."""
    file_size(path, limit, what)
    try:
        with zipfile.ZipFile(path) as z:
            _stored_members(z, path, what)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise KinemaError(f"{path}: unreadable {what} ({type(err).__name__})") from None


# ---------------------------------------------------------------------------------------------
# torch.load.

def torch_load(path, limit: int, what: str, check: Callable[[Any], None] | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with every allocation bounded first.

    1. the file is at most ``limit`` bytes;
    2. a zip file (PyTorch's format since 1.6) holds only stored records inside the file;
    3. a first pass reads the object structure with tensors that have shapes and dtypes but no
       storage (on the ``meta`` device for zip files; under ``FakeTensorMode`` for PyTorch's
       legacy format, whose declared storage sizes must then fit in the file), and
       ``check(fake_object)`` (the caller's shape comparison) runs on it;
    4. then the real load.

    Unreadable files and a failing ``check`` (which raises KinemaError) give one line naming the file.
    """
    import torch

    size = file_size(path, limit, what)
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        check_zip(path, limit, what)

    def load(map_location="cpu"):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except KinemaError:
            raise
        except Exception as err:  # zip/pickle/EOF errors and weights_only refusals: not a good file
            first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
            raise KinemaError(f"{path}: unreadable {what} (truncated or not the expected file: {first[:160]})") from None

    if is_zip:  # storages on the meta device: only the pickle is read (no dynamo import, unlike fake mode)
        fake = load(map_location="meta")
    else:  # the legacy format allocates before reading unless a fake-tensor mode is active
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            fake = load()
    tensors = list(_tensors(fake))
    if not is_zip:
        # PyTorch's legacy format allocates each storage at its declared size before reading it;
        # a zip file's records were bounded above. (Views of one storage count once per view
        # here, which only errs towards refusing.)
        declared = sum(t.untyped_storage().nbytes() for t in tensors)
        if declared > size:
            raise KinemaError(f"{path}: {what} declares {declared} bytes of tensor data but the file has {size}")
    if check is not None:
        check(fake)
    return load()


def _tensors(obj):
    """Every tensor in nested dicts/lists/tuples (weights_only pickles hold nothing else of interest)."""
    import torch

    stack, seen = [obj], set()
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            yield value
        elif id(value) in seen:  # a pickle can make a list that contains itself
            continue
        elif isinstance(value, (dict, list, tuple)):
            seen.add(id(value))
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def load_state_dict_file(path, module, what: str, slack: int = 16 * MiB):
    """Load a published state dict (``torch.load(weights_only=True)``) into ``module``, a network of
    a fixed, known layout, after checking the file against that layout: at most twice the
    module's own bytes plus ``slack``, and (on the fake-tensor pass) the same tensor names and
    shapes (a top-level ``"state_dict"`` entry and DataParallel's ``module.`` prefixes are
    unwrapped; BatchNorm's ``num_batches_tracked`` counters may be absent). Returns ``module``."""
    import torch

    def unwrap(state):
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
            raise KinemaError(f"{path}: not a state dict of tensors ({what})")
        return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}

    def layout(state):
        return {k: v for k, v in state_layout(state, dtypes=False).items() if not k.endswith("num_batches_tracked")}

    expected = layout(module)

    def check(fake):
        problem = layout_mismatch(expected, layout(unwrap(fake)))
        if problem:
            raise KinemaError(f"{path}: not the published {what} layout ({problem})")

    own = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    state = unwrap(torch_load(path, 2 * own + slack, what, check))
    module.load_state_dict(state, strict=False)
    return module
