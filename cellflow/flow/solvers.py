r"""Integrating a learned vector field: ODEs (torchdiffeq) and SDEs (Euler–Maruyama).

Example
-------
>>> import torch
>>> from cellflow.flow.solvers import integrate_ode
>>> field = lambda t, x: -x                       # dx/dt = -x
>>> tr = integrate_ode(field, torch.ones(4, 2), solver="dopri5")
>>> round(float(tr.xs[-1, 0, 0]), 4), tr.nfe > 0   # exp(-1) = 0.3679
(0.3679, True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, get_args

import torch
from torch import Tensor
from torchdiffeq import odeint

from .._types import Solver

__all__ = [
    "Trajectory",
    "integrate_ode",
    "integrate_sde",
    "ODE_METHODS",
    "FIXED_STEP",
    "solver_argument",
    "time_grid",
]

ODE_METHODS = get_args(Solver)  # the solvers integrate_ode takes; these with a fixed step:
FIXED_STEP = ("euler", "midpoint", "rk4")


def solver_argument(solver: str, method: str | None, where: str) -> str:
    """The ODE solver a call asked for: ``solver``, or ``method``, the name of that argument
    before ``method`` came to mean only the flow-matching method (with a ``FutureWarning``)."""
    if method is None:
        return solver
    warnings.warn(
        f"{where}(method=...) is now {where}(solver=...): method= names the flow-matching method "
        "elsewhere in cellflow, and will stop working here.",
        FutureWarning,
        stacklevel=3,
    )
    return method


Field = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Trajectory:
    """States of a batch along a time grid.

    Attributes
    ----------
    t
        Time grid, shape ``(T,)``.
    xs
        States, shape ``(T, n, ...)``; ``xs[-1]`` is the end point.
    nfe
        Number of evaluations of the vector field (drift, for SDEs).
    """

    t: Tensor
    xs: Tensor
    nfe: int

    @property
    def end(self) -> Tensor:
        return self.xs[-1]


class _Counted:
    def __init__(self, f: Field):
        self.f = f
        self.nfe = 0

    def __call__(self, t, x):
        self.nfe += 1
        return self.f(t, x)


def time_grid(t0: float, t1: float, n_points: int, like: Tensor) -> Tensor:
    """``n_points`` evenly spaced times from ``t0`` to ``t1``."""
    return torch.linspace(float(t0), float(t1), int(n_points), dtype=like.dtype, device=like.device)


def integrate_ode(
    field: Field,
    x0: Tensor,
    t: Tensor | tuple[float, float] = (0.0, 1.0),
    *,
    solver: Solver = "dopri5",
    steps: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    save_every_step: bool = False,
    method: str | None = None,
) -> Trajectory:
    r"""Solve :math:`\dot x = v(t, x)` from ``x0``.

    Parameters
    ----------
    field
        Callable ``v(t, x)`` with ``t`` a scalar tensor.
    x0
        Initial states, shape ``(n, ...)``.
    t
        Output time grid (a tensor), or ``(t0, t1)``; backwards in time if ``t1 < t0``.
    solver
        A torchdiffeq solver: ``euler``, ``midpoint``, ``rk4`` (fixed step) or ``dopri5``
        and other adaptive ones (with ``atol``/``rtol``). ``method=`` is its former name.
    steps
        Number of fixed steps from the first to the last time (fixed-step methods;
        default 100).
    save_every_step
        For fixed-step methods, return the state after every step.
    """
    solver = solver_argument(solver, method, "integrate_ode")
    if solver not in ODE_METHODS:
        raise ValueError(f"unknown ODE solver {solver!r}; choose from {', '.join(ODE_METHODS)}.")
    if not isinstance(t, Tensor):
        t0, t1 = t
        t = torch.tensor([float(t0), float(t1)], dtype=x0.dtype, device=x0.device)
    t = t.to(dtype=x0.dtype, device=x0.device)
    f = _Counted(field)
    options = None
    if solver in FIXED_STEP:
        steps = 100 if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        if save_every_step:
            t = time_grid(float(t[0]), float(t[-1]), steps + 1, x0)
        options = {"step_size": abs(float(t[-1] - t[0])) / steps}
    xs = odeint(f, x0, t, method=solver, atol=atol, rtol=rtol, options=options)
    return Trajectory(t=t, xs=xs, nfe=f.nfe)


def integrate_sde(
    drift: Field,
    x0: Tensor,
    t: tuple[float, float] | Tensor = (0.0, 1.0),
    *,
    sigma: float | Callable[[Tensor], Tensor],
    steps: int = 100,
    generator: torch.Generator | None = None,
    save_every_step: bool = True,
) -> Trajectory:
    r"""Euler–Maruyama for :math:`dX = f(t, X)\,dt + g(t)\, dW`.

    For a Schrödinger bridge learned by SB-CFM with a score network,
    :math:`f = v_\theta + \tfrac{g^2}{2} s_\theta` and :math:`g = \sigma`
    (see :meth:`cellflow.models.flow.FlowModel.sample_sde`).

    Parameters
    ----------
    drift
        ``f(t, x)``.
    x0
        Initial states.
    t
        ``(t0, t1)`` or a grid whose ends are used.
    sigma
        Diffusion :math:`g`: a constant or a function of ``t``.
    steps
        Number of steps.
    generator
        Torch generator for the Brownian increments.
    """
    if isinstance(t, Tensor):
        t0, t1 = float(t[0]), float(t[-1])
    else:
        t0, t1 = float(t[0]), float(t[1])
    grid = time_grid(t0, t1, steps + 1, x0)
    dt = (t1 - t0) / steps
    x = x0
    out = [x0]
    for k in range(steps):
        tk = grid[k]
        g = sigma(tk) if callable(sigma) else sigma
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + drift(tk, x) * dt + g * abs(dt) ** 0.5 * noise
        if save_every_step or k == steps - 1:
            out.append(x)
    if not save_every_step:
        grid = grid[[0, -1]]
    return Trajectory(t=grid, xs=torch.stack(out), nfe=steps)
