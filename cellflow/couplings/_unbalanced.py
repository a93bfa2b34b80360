r"""Unbalanced entropic OT with KL-relaxed marginals, the coupling of growth-aware flows.

The plan solves

.. math::

    \min_{P \ge 0}\ \langle P, C\rangle + \varepsilon\,\mathrm{KL}(P \,|\, a b^\top)
    + \rho_a\,\mathrm{KL}(P\mathbf 1 \,|\, a) + \rho_b\,\mathrm{KL}(P^\top \mathbf 1 \,|\, b),

and is written, as in moscot and ott-jax, with :math:`\tau = \rho / (\rho + \varepsilon)` in
(0, 1]: :math:`\tau = 1` holds a marginal exactly, smaller values let the plan create or destroy
mass there. Its scaling form (Chizat et al., Math. Comp. 2018) is
:math:`P = \mathrm{diag}(u)\,K\,\mathrm{diag}(v)` with the Gibbs kernel of the reference
measure, :math:`K_{ij} = a_i b_j e^{-C_{ij}/\varepsilon}`, and

.. math:: u \leftarrow (a / K v)^{\tau_a}, \qquad v \leftarrow (b / K^\top u)^{\tau_b},

two matrix–vector products per iteration; this is the problem POT's
``ot.unbalanced.sinkhorn_unbalanced(a, b, C, ε, (ρ_a, ρ_b))`` solves. With
:math:`\tau_a = \tau_b = 1` it is balanced Sinkhorn (the reference then cancels into
:math:`u, v`). The kernel is not :math:`e^{-C/\varepsilon}` alone: that would be entropy relative
to :math:`\mathbf 1 \mathbf 1^\top` and would flatten a relaxed prior :math:`a` to
:math:`a^{\tau_a}`.

In a growth-aware :class:`cellflow.CellFlow` the source weights :math:`a_i` are each cell's
expected number of descendants over the interval (its prior growth), the target weights
uniform, and the row sums :math:`(P\mathbf 1)_i / a_i` of the plan say how much more (or less)
of cell :math:`i` the later time point needs than the prior gave it.

Example
-------
>>> import torch
>>> from cellflow.couplings import UnbalancedOT
>>> x0, x1 = torch.randn(50, 2), torch.randn(60, 2) + 1
>>> P = UnbalancedOT(eps=0.05, tau=(0.9, 1.0)).plan(x0, x1)
>>> torch.allclose(P.sum(0), torch.full((60,), 1 / 60, dtype=P.dtype), atol=1e-6)  # τ_b = 1
True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._base import Coupling, _fail, _weights, squared_distances

_MAX_RANGE = 600.0  # (max C - min C)/ε beyond which exp(-C/ε) could underflow in float64


def check_tau(tau, name: str = "tau") -> tuple[float, float]:
    """``tau`` as ``(τ_a, τ_b)``, each in (0, 1]; one number relaxes the source only. Errors
    name the argument ``name``."""
    import numbers

    def number(t) -> bool:
        return isinstance(t, numbers.Real) and not isinstance(t, bool)

    if number(tau):
        pair = (float(tau), 1.0)
    elif isinstance(tau, (tuple, list)) and all(number(t) for t in tau):
        pair = tuple(float(t) for t in tau)
    else:
        pair = ()
    if isinstance(tau, str):
        raise ValueError(f"{name} must be a number in (0, 1], not the string {tau!r}.")
    if len(pair) != 2 or not all(0 < t <= 1 for t in pair):
        raise ValueError(
            f"{name} must be in (0, 1] (1 holds a marginal exactly, smaller lets cells grow or "
            f"die), or a pair (tau_source, tau_target) of such; got {tau!r}."
        )
    return pair


def unbalanced_scaling(
    a: Tensor,
    b: Tensor,
    C: Tensor,
    eps: float,
    tau: tuple[float, float],
    *,
    tol: float = 1e-6,
    max_iter: int = 5000,
    on_fail: str = "raise",
) -> Tensor:
    r"""The unbalanced plan by the scaling iterations above (float64).

    Stops when the largest change of :math:`\log u` and :math:`\log v` between two checks (10
    iterations apart) is below ``tol``. When :math:`(\max C - \min C)/\varepsilon` is so large
    that the kernel could underflow, the same iterations run on :math:`\log u, \log v` with
    log-sum-exp (slower, never underflowing).
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}.")
    ta, tb = check_tau(tau)
    C = C.double()
    a, b = a.double().to(C.device), b.double().to(C.device)
    P = torch.zeros_like(C)
    rows, cols = (a > 0).nonzero().squeeze(1), (b > 0).nonzero().squeeze(1)
    if len(rows) == 0 or len(cols) == 0:  # KL(P | a b^T) allows no mass off the support
        return P
    sub = C[rows][:, cols]
    P[rows[:, None], cols[None, :]] = _scaling_on_support(
        a[rows], b[cols], sub, eps, ta, tb, tol, max_iter, on_fail
    )
    return P


def _scaling_on_support(a, b, C, eps, ta, tb, tol, max_iter, on_fail) -> Tensor:
    """The iterations on positive weights, with the cost shifted by its minimum ``lo``.

    The shift multiplies the kernel by :math:`c = e^{lo/\varepsilon}`; the scalings absorb it
    except for a factor :math:`c^{-k}` on the plan, :math:`k = (1-\tau_a)(1-\tau_b) /
    (1-\tau_a\tau_b)` (substitute :math:`u = c^{\alpha}\tilde u, v = c^{\beta}\tilde v` in
    the fixed point), which is 0 when either marginal is held exactly.
    """
    lo = float(C.min())
    k = 0.0 if ta == 1 or tb == 1 else (1 - ta) * (1 - tb) / (1 - ta * tb)
    log_domain = (float(C.max()) - lo) / eps > _MAX_RANGE
    la, lb = a.log(), b.log()
    if log_domain:  # the same iterations on log u, log v: no kernel entry can underflow
        G = -(C - lo) / eps + la[:, None] + lb[None, :]
        lu, lv = torch.zeros_like(a), torch.zeros_like(b)
    else:
        K = torch.exp(-(C - lo) / eps) * a[:, None] * b[None, :]
        u, v = torch.ones_like(a), torch.ones_like(b)
    err = float("inf")
    for it in range(max_iter):
        if log_domain:
            lu_old, lv_old = lu, lv
            lu = ta * (la - torch.logsumexp(G + lv[None, :], 1))
            lv = tb * (lb - torch.logsumexp(G + lu[:, None], 0))
        else:
            u_old, v_old = u, v
            u = (a / (K @ v)).pow(ta)
            v = (b / (K.T @ u)).pow(tb)
        if it % 10 == 9:
            if log_domain:
                change = torch.cat(((lu - lu_old).abs(), (lv - lv_old).abs()))
            else:
                change = torch.cat(((u.log() - u_old.log()).abs(), (v.log() - v_old.log()).abs()))
            err = change.max().item()
            if not math.isfinite(err) or err <= tol:
                break
    if not math.isfinite(err) or err > tol:
        _fail(
            f"unbalanced Sinkhorn did not converge: change {err:.3g} > tol {tol:g} after "
            f"{max_iter} iterations at eps={eps:g}. Raise eps or max_iter, or loosen tol.",
            on_fail,
        )
    if log_domain:
        return torch.exp(lu[:, None] + G + lv[None, :] - k * lo / eps)
    return u[:, None] * K * v[None, :] * math.exp(-k * lo / eps)


class UnbalancedOT(Coupling):
    r"""Entropic OT whose marginals are KL-relaxed (see the module docstring).

    Parameters
    ----------
    eps
        Entropic regularisation ε; with ``relative=True`` a fraction of each batch's mean cost
        (so the same number serves data of any scale).
    tau
        ``(τ_a, τ_b)`` in (0, 1], or one number for the source (the target then held exactly).
    relative
        Read ``eps`` as a fraction of the mean squared distance of the batch.
    replace
        Pairs are drawn from the whole plan (default), so a source cell is drawn as often as
        the mass it carries.
    tol, max_iter, on_fail
        See :func:`unbalanced_scaling`.
    """

    joint_by_default = True
    solves_on_cpu = True  # torch's matrix-vector products release the GIL: batch workers overlap

    def __init__(
        self,
        eps: float,
        tau=(1.0, 1.0),
        *,
        relative: bool = False,
        replace: bool | None = None,
        tol: float = 1e-3,
        max_iter: int = 5000,
        on_fail: str = "raise",
    ):
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        super().__init__(replace)
        self.eps, self.tau, self.relative = float(eps), check_tau(tau), bool(relative)
        self.tol, self.max_iter, self.on_fail = tol, max_iter, on_fail

    def plan(self, x0, x1, a=None, b=None):
        C = squared_distances(x0, x1)
        a = _weights(a, x0.shape[0], C.device)
        b = _weights(b, x1.shape[0], C.device)
        eps = self.eps * float(C.mean()) if self.relative and C.numel() else self.eps
        return unbalanced_scaling(
            a,
            b,
            C,
            max(eps, 1e-12),
            self.tau,
            tol=self.tol,
            max_iter=self.max_iter,
            on_fail=self.on_fail,
        )
