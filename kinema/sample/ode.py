"""ODE solvers for flow models: integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data).

``integrate(v, x0, steps, solver)`` on the uniform grid t_k = k / steps:

* ``"euler"``: x_{k+1} = x_k + h v(x_k, t_k); one network evaluation per step.
* ``"heun"``: Euler's prediction, then the trapezoid of the slopes at both ends (second order);
  two evaluations per step, so heun at N steps costs what euler costs at 2N.

``replace(x, t)``, if given, overwrites part of the state after every step and at the start
(inpainting-style conditioning: known entries follow their own path). Everything is a plain
function of the inputs: the same ``x0`` gives the same result whatever else is in the batch,
up to the float summation order of the network's kernels.
"""

from __future__ import annotations

from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def integrate(v: Velocity, x0: torch.Tensor, steps: int, solver: str = "euler",
              replace: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """x(1) from x(0) = ``x0`` [n, ...] in ``steps`` steps; ``v(x, t)`` with ``t`` a 0-d tensor."""
    if solver not in ("euler", "heun"):
        raise ValueError(f"unknown solver {solver!r} (euler, heun)")
    ts = torch.linspace(0.0, 1.0, int(steps) + 1, dtype=torch.float64)
    x = x0
    if replace is not None:
        x = replace(x, _time(ts[0], x))
    for k in range(int(steps)):
        t, t_next = _time(ts[k], x), _time(ts[k + 1], x)
        h = t_next - t
        d = v(x, t)
        if solver == "euler":
            x = x + h * d
        else:
            pred = x + h * d
            if replace is not None:
                pred = replace(pred, t_next)
            x = x + h * 0.5 * (d + v(pred, t_next))
        if replace is not None:
            x = replace(x, t_next)
    return x


def _time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(device=like.device, dtype=torch.float32)


def evaluations(steps: int, solver: str) -> int:
    """Network evaluations of one ``integrate`` call (for speed reports)."""
    return int(steps) * (2 if solver == "heun" else 1)
