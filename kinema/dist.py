"""A tiny distributed seam: one process is simply world size 1.

torchrun is the only launcher. It sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when they are
absent we run single-process and every helper below degrades to a no-op, so the training loop
never branches on "am I distributed?" except where it wraps modules in DDP.

Backend: NCCL when the process drives a CUDA device, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os

import torch
import torch.distributed as tdist

from kinema.errors import KinemaError


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


def shutdown(clean: bool = False) -> None:
    """End the process group. ``clean`` (after a run that succeeded on this rank): first free what
    still refers to the group (DDP wrappers live in reference cycles until a collection) and let
    every rank arrive, then destroy it. Left to interpreter exit, the teardown order is arbitrary,
    and a gloo rank can abort there ("terminate called without an active exception") after
    a finished run, failing the whole torchrun job. After an error no barrier: the other ranks may
    never arrive, and torchrun ends them once this one exits."""
    if tdist.is_available() and tdist.is_initialized():
        if clean:
            gc.collect()
            tdist.barrier()
        tdist.destroy_process_group()


@contextlib.contextmanager
def session():
    """``with dist.session(): ...`` - shut the process group down on leaving: cleanly after
    success, at once after an exception (which propagates)."""
    try:
        yield
    except BaseException:
        shutdown(clean=False)
        raise
    shutdown(clean=True)


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


def check_consistent(nets: dict, where: str = "") -> None:
    """Raise KinemaError unless every rank holds bit-identical parameters in ``nets`` (name -> module).

    Run before each checkpoint: DDP keeps replicas equal only as long as every update goes through
    it, so a stray rank-local update (a frozen network trained by accident, a non-deterministic
    kernel, a rank that skipped a step) would otherwise be saved from rank 0 and silently lost.
    One SHA-256 per network over its parameters' bytes (a host copy: snapshots are rare).
    """
    if not is_initialized() or world_size() == 1:
        return
    digests = {}
    for name, net in nets.items():
        if net is None:
            continue
        h = hashlib.sha256()
        for pname, p in net.named_parameters():
            h.update(pname.encode())
            h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        digests[name] = h.hexdigest()
    everyone = all_gather_object(digests)
    bad = sorted({name for d in everyone for name in d if d[name] != everyone[0].get(name)})
    if bad:
        raise KinemaError(f"{where}parameters of {', '.join(bad)} differ between ranks "
                          f"({world_size()} ranks); refusing to save a state only rank 0 holds")


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with a gradient: d(sum over ranks)/d(this rank's x) sums the upstream
    gradients of every rank, i.e. another all-reduce."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        tdist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        tdist.all_reduce(grad)
        return grad


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch, on every backend (gloo too).

    With plain BatchNorm each rank normalises with its own slice's mean and variance, so the
    objective depends on how the global batch is split over ranks. Here the per-channel sums are
    summed over ranks by :class:`_SumOverRanks`, whose backward sums the statistics' gradients
    over ranks too, so N ranks compute what one process does on the whole batch.
    Two passes (mean, then squared deviations) for the variance, as F.batch_norm does, in float32.
    torch's own SyncBatchNorm is CUDA-only; this one also runs on CPU. Outside training, or in one
    process, it is ordinary BatchNorm (same state dict keys).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input [N, C, ...], got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_initialized() and world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))               # all but the channel axis
        shape = [1, -1] + [1] * (x.dim() - 2)              # [1, C, 1, ...] broadcasts per channel
        xf = x.float()
        count = torch.full((1,), xf.numel() // xf.shape[1], dtype=torch.float32, device=x.device)
        sums = _SumOverRanks.apply(torch.cat([xf.sum(dims), count]))   # [C + 1]: per-channel sums, global count
        n = sums[-1]
        mean = sums[:-1] / n                                   # [C]
        centred = xf - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n       # [C], biased (what normalisation uses)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)   # unbiased, as torch
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every BatchNorm inside ``module`` by :class:`SyncBatchNorm` sharing its parameters and
    statistics (the same tensor objects). In place (returns ``module``); names and order of
    parameters and buffers are unchanged, so optimizers, state dicts, EMA and exports are unaffected.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncBatchNorm):
            sync = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            # Keep the very same Parameter and buffer objects: optimizers (built before) and the
            # EMA hold references to them.
            for key in ("weight", "bias"):
                setattr(sync, key, getattr(child, key))
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(sync, key, getattr(child, key))
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            sync_batchnorm(child)
    return module

