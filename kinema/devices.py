"""Devices and cores: host-to-device copies that never make the host wait, and how many CPU
cores this process should use.

A plain ``tensor.to("cuda")`` or ``torch.as_tensor(array, device="cuda")`` copies from pageable
memory and blocks until the GPU has caught up: once per training step, that stall is enough to
starve a fast GPU. Small per-step tensors (latents, labels, augmentation parameters) go through
``to_device`` instead: pinned memory, non-blocking copy, ordered on the current stream.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def to_device(x: torch.Tensor | np.ndarray, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor or numpy array (optionally cast to ``dtype``) on ``device``; on CUDA through
    pinned memory, without blocking the host."""
    x = torch.as_tensor(x, dtype=dtype)          # still on the CPU
    device = torch.device(device)
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def check_device(name: str | None) -> None:
    """A one-line KinemaError for a ``--device`` this process cannot use: not a device name, CUDA
    asked of a torch build without CUDA or a machine without a GPU, an index beyond the GPUs."""
    if name is None or name in ("cpu", "auto"):
        return
    from kinema.errors import KinemaError

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise KinemaError(f"--device {name}: not a device (cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise KinemaError(f"--device {name}: {why} (torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise KinemaError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type != "cpu" and name != "meta":
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise KinemaError(f"--device {name}: not available in this torch build; use --device cpu")


def usable_cores() -> int:
    """The cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_cores() -> int:
    """``usable_cores()`` minus the load other programs put on them (at least 1).

    Why not simply all of them: on a busy machine, torch's OpenMP threads wait for each other at
    every parallel region, and a thread that the OS parks behind another program stalls the rest.
    On 2 cores kept busy by other programs, one thread trained several times faster than two.
    """
    cores = usable_cores()
    busy = int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy))
