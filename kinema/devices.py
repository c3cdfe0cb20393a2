"""Host-to-device copies that never make the host wait.

A plain ``tensor.to("cuda")`` or ``torch.as_tensor(array, device="cuda")`` copies from pageable
memory and blocks until the GPU has caught up: once per training step, that stall is enough to
starve a fast GPU. Small per-step tensors (latents, labels, augmentation parameters) go through
``to_device`` instead: pinned memory, non-blocking copy, ordered on the current stream.
"""

from __future__ import annotations

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
