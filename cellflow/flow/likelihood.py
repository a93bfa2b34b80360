r"""Log-likelihood of a continuous normalising flow by the instantaneous change of variables.

For :math:`\dot x = v(t, x)` carrying :math:`p_0` at :math:`t_0` to :math:`p_1` at :math:`t_1`,

.. math::

    \log p_1(x_1) = \log p_0(x_0) - \int_{t_0}^{t_1} \nabla\!\cdot v(t, x_t)\, dt,

solved backwards from :math:`x_1` together with the divergence integral. The divergence is
exact (one backward pass per dimension) in low dimension and Hutchinson's unbiased
estimate :math:`\mathbb E_\epsilon[\epsilon^\top \partial_x v\, \epsilon]` above that.

Example
-------
>>> import torch
>>> from torch.distributions import Normal
>>> from cellflow.flow.likelihood import log_likelihood
>>> base = lambda x: Normal(0., 1.).log_prob(x).sum(1)
>>> ll = log_likelihood(lambda t, x: 0.5 * x, torch.zeros(3, 2), base)   # p1 = N(0, e I)
>>> [round(v, 3) for v in ll.tolist()]                                    # -log(2 pi) - 1
[-2.838, -2.838, -2.838]
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from .._types import Solver
from .solvers import FIXED_STEP, solver_argument

__all__ = ["log_likelihood", "divergence"]


def divergence(
    v: Tensor, x: Tensor, *, probes: Tensor | None = None, create_graph: bool = False
) -> Tensor:
    """Divergence of ``v`` (a function of ``x`` in the autograd graph), per sample.

    ``probes=None``: exact, one backward pass per dimension. Otherwise Hutchinson's
    estimate averaged over the given probe vectors, shape ``(k, *x.shape)``.
    """
    n = x.shape[0]
    if probes is None:
        flat = v.reshape(n, -1)
        div = torch.zeros(n, dtype=x.dtype, device=x.device)
        for i in range(flat.shape[1]):
            g = torch.autograd.grad(
                flat[:, i].sum(), x, create_graph=create_graph, retain_graph=True
            )[0]
            div = div + g.reshape(n, -1)[:, i]
        return div
    total = torch.zeros(n, dtype=x.dtype, device=x.device)
    for e in probes:
        g = torch.autograd.grad((v * e).sum(), x, create_graph=create_graph, retain_graph=True)[0]
        total = total + (g * e).reshape(n, -1).sum(1)
    return total / probes.shape[0]


def log_likelihood(
    field: Callable[[Tensor, Tensor], Tensor],
    x1: Tensor,
    base_log_prob: Callable[[Tensor], Tensor],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: Solver = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    steps: int = 100,
    estimator: str = "auto",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    method: str | None = None,
) -> Tensor:
    """Log-density of samples ``x1`` under the flow that carries ``base_log_prob`` at ``t0``
    to ``t1``.

    Parameters
    ----------
    field
        The vector field ``v(t, x)``.
    x1
        Points at time ``t1``, shape ``(n, ...)``.
    base_log_prob
        Log-density of the distribution at ``t0``, mapping ``(n, ...)`` to ``(n,)``.
    solver, atol, rtol, steps
        ODE solver settings (``steps`` for fixed-step solvers; ``method=`` is the former name
        of ``solver``).
    estimator
        ``"exact"``, ``"hutchinson"`` or ``"auto"`` (exact up to 10 dimensions).
    n_probes
        Rademacher probes for Hutchinson (drawn once and held fixed during the solve).
    generator
        Torch generator for the probes.

    Returns
    -------
    Tensor of shape ``(n,)``.
    """
    solver = solver_argument(solver, method, "log_likelihood")
    dim = x1[0].numel()
    if estimator == "auto":
        estimator = "exact" if dim <= 10 else "hutchinson"
    if estimator not in ("exact", "hutchinson"):
        raise ValueError(f"estimator must be 'exact', 'hutchinson' or 'auto', got {estimator!r}.")
    probes = None
    if estimator == "hutchinson":
        probes = torch.randint(0, 2, (n_probes, *x1.shape), generator=generator).to(x1) * 2 - 1

    def augmented(t, state):
        x, _ = state
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = field(t, x)
            div = divergence(v, x, probes=probes)
        return v.detach(), div.detach()

    state = (x1, torch.zeros(x1.shape[0], dtype=x1.dtype, device=x1.device))
    ts = torch.tensor([float(t1), float(t0)], dtype=x1.dtype, device=x1.device)
    options = {"step_size": abs(t1 - t0) / steps} if solver in FIXED_STEP else None
    xs, ints = odeint(augmented, state, ts, method=solver, atol=atol, rtol=rtol, options=options)
    # ints[-1] = integral of div from t1 down to t0 = -int_{t0}^{t1} div
    return base_log_prob(xs[-1]) + ints[-1]
