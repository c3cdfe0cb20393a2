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
