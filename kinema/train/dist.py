"""A tiny distributed seam: one process is simply world size 1.

torchrun is the only launcher. It sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when they are
absent we run single-process and every helper below degrades to a no-op, so the training loop
never branches on "am I distributed?" except where it wraps modules in DDP.

Backend: NCCL when the process drives a CUDA device, gloo on CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def is_torchrun() -> bool:
    """True when launched by torchrun (or any launcher that sets the env:// variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str = "auto") -> torch.device:
    """Start the process group if under torchrun, pick this rank's device and return it.

    ``device``: "auto" (CUDA if available, else CPU), "cpu" or "cuda". Under torchrun each rank
    takes ``cuda:LOCAL_RANK``. Safe to call twice.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = local_rank() if is_torchrun() else (torch.device(device).index or 0)
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if is_torchrun() and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        tdist.init_process_group(backend=backend, init_method="env://")
    return dev


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def is_initialized() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    if is_initialized():
        return tdist.get_rank()
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return tdist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0 is the one that writes files, logs and prints."""
    return rank() == 0


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only (flushes, so interleaving with tqdm stays readable)."""
    if is_main():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def barrier() -> None:
    if is_initialized():
        tdist.barrier()


def rank_seed(seed: int) -> int:
    """Per-rank seed so ranks draw different latents/augmentations: ``seed * world + rank``."""
    return seed * world_size() + rank()


def _all_reduce(x: torch.Tensor, op) -> torch.Tensor:
    # NCCL reduces CUDA tensors only: small CPU tensors (flags, logged scalars) take a round trip.
    y = x.detach().clone()
    home = y.device
    if tdist.get_backend() == "nccl" and home.type != "cuda":
        y = y.cuda()
    tdist.all_reduce(y, op=op)
    return y.to(home)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a new tensor; ``x`` unchanged). Identity in one process."""
    if not is_initialized():
        return x
    return _all_reduce(x.float(), tdist.ReduceOp.SUM) / world_size()


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Max of ``x`` over ranks (used to agree on "stop now" flags)."""
    if not is_initialized():
        return x
    return _all_reduce(x, tdist.ReduceOp.MAX)


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (picklable, our own in-memory data only), in rank order."""
    if not is_initialized():
        return [obj]
    everyone = [None] * world_size()
    tdist.all_gather_object(everyone, obj)
    return everyone
