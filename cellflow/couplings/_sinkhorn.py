"""Entropic OT (SB-CFM): log-domain Sinkhorn in torch with ε-scaling, balanced or unbalanced."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._base import Coupling, _fail, _weights, squared_distances
from ._unbalanced import unbalanced_scaling

_KERNEL_RANGE = (
    100.0  # largest (C - min C)/ε of a first-stage kernel: exp(-100) ≈ 4e-44, no underflow
)
#: the marginal error at which a balanced SinkhornOT plan is used when its tol is out of reach
SINKHORN_ACCEPT = 1e-4
#: checks (every 5 iterations) without a new lowest error after which over-relaxation stops
_STALL_CHECKS = 40
_OMEGA = 1.9  # over-relaxation of the scaling iterations at the final ε
_ABSORB_AT = 50.0  # move the scalings into the potentials when |log u| or |log v| passes this
_ABSORB_LO, _ABSORB_HI = math.exp(-_ABSORB_AT), math.exp(_ABSORB_AT)


def _stabilised_kernel(f: Tensor, g: Tensor, C: Tensor, e: float) -> Tensor:
    """``exp((f_i + g_j - C_ij) / e)`` built in place (one n×m buffer)."""
    K = torch.sub(g[None, :], C)
    K.add_(f[:, None]).div_(e).exp_()
    return K


def _sinkhorn_scaling(
    a: Tensor, b: Tensor, C: Tensor, eps: float, tol: float, max_iter: int, eps_scaling: bool
) -> tuple[Tensor | None, float]:
    r"""Balanced Sinkhorn by matrix-vector scaling, stabilised by absorption (Schmitzer 2019).

    The plan is :math:`P = \mathrm{diag}(u)\,K\,\mathrm{diag}(v)` with the stabilised kernel
    :math:`K_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`. Whenever :math:`u` or :math:`v`
    grows past :math:`e^{50}` it is absorbed into the potentials (:math:`f \mathrel{+}=
    \varepsilon \log u`) and the kernel rebuilt, so nothing overflows; near the solution
    :math:`K_{ij} \approx P_{ij}/(u_i v_j) \le 1`. ε is annealed by halving from
    ``spread / 100`` (the first kernel cannot underflow) down to ``eps``, absorbing between
    stages. Every iteration is two matrix-vector products, several times cheaper than the
    log-sum-exp sweeps of the log domain.

    Returns ``(plan, error)``: the plan is ``None`` when a kernel row or column vanished (the
    caller then solves in the log domain); ``error > tol`` when ``max_iter`` was reached.
    """
    spread = float(C.max() - C.min())
    C = C - C.min()
    f, g = torch.zeros_like(a), torch.zeros_like(b)
    stages = [eps]
    if eps_scaling:
        e = spread / _KERNEL_RANGE
        while e > eps:
            stages.insert(-1, e)
            e /= 2
    err = float("inf")
    for k, e in enumerate(stages):
        final = k == len(stages) - 1
        K = _stabilised_kernel(f, g, C, e)
        u, v = torch.ones_like(a), torch.ones_like(b)
        KTu = K.T @ u
        w, errs, stalled = 1.0, [], 0
        for it in range(max_iter if final else 50):
            Kv = K @ v
            if it % 5 == 4:
                err = (u * Kv - a).abs().sum().item() + (v * KTu - b).abs().sum().item()
                if not math.isfinite(err):
                    return None, err
                if err <= (tol if final else 1e-3):
                    break
                errs.append(err)
                if final and len(errs) == 4 and w == 1.0:
                    # over-relaxation, u ← u^(1-ω) (a/Kv)^ω (Thibault et al. 2017), once plain
                    # iterations have settled near the solution where it converges for ω < 2
                    w = _OMEGA
                elif w != 1.0 and err > 10 * min(errs):
                    w = 1.0  # safeguard: back to plain Sinkhorn if the relaxed updates diverge
                elif w != 1.0:
                    # or if they circle: on degenerate problems (repeated cells) ω can lock
                    # into a cycle whose error never falls
                    stalled = 0 if err < 0.999 * min(errs[:-1]) else stalled + 1
                    if stalled >= _STALL_CHECKS:
                        w = 1.0
            un = a / Kv
            u = un if w == 1.0 else un * (u / un).pow(1 - w)  # u^(1-ω) un^ω with one pow
            KTu = K.T @ u
            vn = b / KTu
            v = vn if w == 1.0 else vn * (v / vn).pow(1 - w)
            lo, hi = torch.aminmax(torch.cat((u, v)))  # |log u|, |log v| > 50, in one reduction
            if lo.item() < _ABSORB_LO or hi.item() > _ABSORB_HI:
                if not (torch.isfinite(u).all() and torch.isfinite(v).all()):
                    return None, float("inf")
                f, g = f + e * u.log(), g + e * v.log()
                K = _stabilised_kernel(f, g, C, e)
                u, v = torch.ones_like(a), torch.ones_like(b)
                KTu = K.T @ u
        if final:
            return K.mul_(u[:, None]).mul_(v[None, :]), err
        f, g = f + e * u.log(), g + e * v.log()
    raise AssertionError("unreachable")


def sinkhorn_log(
    a: Tensor,
    b: Tensor,
    C: Tensor,
    eps: float,
    *,
    reg_m: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 20000,
    eps_scaling: bool = True,
    omega: float = 1.6,
    on_fail: str = "raise",
    accept: float | None = None,
) -> Tensor:
    r"""Entropic optimal transport by Sinkhorn iterations that never underflow.

    Solves :math:`\min_P \langle P, C\rangle + \varepsilon\,\mathrm{KL}(P \,|\, a b^\top)`.
    With potentials :math:`f, g` the plan is
    :math:`P_{ij} = a_i b_j \exp((f_i + g_j - C_{ij})/\varepsilon)`; the updates
    :math:`f_i = -\varepsilon\,\mathrm{LSE}_j(\log b_j + (g_j - C_{ij})/\varepsilon)` work on
    logarithms only, so the kernel never underflows however small :math:`\varepsilon` is
    against the costs. ε-scaling (annealing ε down from the cost scale) keeps the iteration
    count low. Problems are solved first by the same iterations written as matrix-vector
    scalings of a kernel stabilised by absorbing the scalings into :math:`f, g` (no
    log-sum-exp per entry, so 10–50× faster at n = 4096); the log-domain sweeps run only when
    a stabilised kernel row vanishes (``eps_scaling=False`` with ε far below the cost spread).

    With ``reg_m = ρ`` the marginals are KL-relaxed,
    :math:`+ \rho\,\mathrm{KL}(P1|a) + \rho\,\mathrm{KL}(P^\top 1|b)`, and the plan is
    :func:`cellflow.couplings.unbalanced_scaling`'s with :math:`\tau_a = \tau_b = \rho/(\rho +
    \varepsilon)` (the one unbalanced solver; ``eps_scaling``, ``omega`` and ``accept`` do not
    apply).

    Parameters
    ----------
    a, b
        Marginal weights (torch, any device).
    C
        Cost matrix, same device.
    eps
        Entropic regularisation ε > 0, on the scale of ``C`` (raw costs are fine).
    reg_m
        Marginal relaxation ρ for unbalanced OT (``None``: balanced).
    tol
        Stop when the summed L1 errors of both marginals (balanced) or the largest change of
        :math:`\log u, \log v` (unbalanced) is below ``tol``.
    max_iter
        Maximum number of iterations at the final ε.
    eps_scaling
        Anneal ε geometrically from the cost scale to ``eps``.
    omega
        Over-relaxation of the balanced log-domain updates at the final ε,
        :math:`f \leftarrow (1-\omega) f + \omega f_{new}` (Thibault et al. 2017);
        1 is plain Sinkhorn.
    on_fail
        ``"raise"`` (default) or ``"warn"`` when ``tol`` is not reached.
    accept
        A plan that misses ``tol`` after ``max_iter`` iterations but whose error is at most
        ``accept`` is returned without complaint (``None``: ``tol`` is the bar). Balanced
        training plans need no more: an error of 1e-4 misplaces 0.01 % of the mass a pair is
        drawn from, while clusters of unequal size can hold the error near 1e-6 for tens of
        thousands of iterations at a large ε.

    Returns
    -------
    The plan, a tensor of shape ``C.shape``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}.")
    if reg_m is not None:  # the one unbalanced solver, with the same relaxation on both sides
        t = reg_m / (reg_m + eps)
        return unbalanced_scaling(a, b, C, eps, (t, t), tol=tol, max_iter=max_iter, on_fail=on_fail)
    C = C.double()
    a, b = a.double().to(C.device), b.double().to(C.device)
    loga, logb = a.log(), b.log()
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)

    def step(e: float, f: Tensor, g: Tensor, w: float = 1.0):
        f_new = -e * torch.logsumexp(logb[None, :] + (g[None, :] - C) / e, dim=1)
        if w != 1.0:
            f_new = (1 - w) * f + w * f_new
        g_new = -e * torch.logsumexp(loga[:, None] + (f_new[:, None] - C) / e, dim=0)
        if w != 1.0:
            g_new = (1 - w) * g + w * g_new
        return f_new, g_new

    def marginal_error(e: float, f: Tensor, g: Tensor) -> float:
        logP = loga[:, None] + logb[None, :] + (f[:, None] + g[None, :] - C) / e
        rows = (torch.logsumexp(logP, 1).exp() - a).abs().sum()
        cols = (torch.logsumexp(logP, 0).exp() - b).abs().sum()  # non-zero when over-relaxed
        return (rows + cols).item()

    if C.numel():
        plan, err = _sinkhorn_scaling(a, b, C, eps, tol, max_iter, eps_scaling)
        bar = tol if accept is None else max(tol, accept)
        if plan is not None:
            if not err <= bar:
                _fail(
                    f"Sinkhorn did not converge: marginal error {err:.3g} > tol {tol:g} after "
                    f"{max_iter} "
                    f"iterations at eps={eps:g}. Increase eps or max_iter, or loosen tol.",
                    on_fail,
                )
            return plan
        # a kernel row vanished (ε far below the cost spread without ε-scaling): log domain
    if eps_scaling:
        cmax = float(C.max()) if C.numel() else 0.0
        e = cmax
        while e > 2 * eps:  # two sweeps per halving of eps: a warm start, not a solve
            for _ in range(2):
                f, g = step(e, f, g)
            e /= 2
    converged = False
    err = float("inf")
    for it in range(max_iter):
        f, g = step(eps, f, g, omega)
        if it % 10 == 9 or it == max_iter - 1:
            err = marginal_error(eps, f, g)
            if not math.isfinite(err):
                break
            if err <= tol:
                converged = True
                break
    if not converged and not (accept is not None and err <= accept):
        _fail(
            f"Sinkhorn did not converge: marginal error {err:.3g} > tol {tol:g} after {max_iter} "
            f"iterations at eps={eps:g}. Increase eps or max_iter, or loosen tol.",
            on_fail,
        )
    return (loga[:, None] + logb[None, :] + (f[:, None] + g[None, :] - C) / eps).exp()


class SinkhornOT(Coupling):
    r"""Entropic OT coupling (SB-CFM uses ε = 2σ²), balanced or unbalanced.

    Parameters
    ----------
    eps
        Entropic regularisation on the raw squared Euclidean costs.
    reg_m
        Marginal relaxation for unbalanced OT (``None``: balanced). Unbalanced plans are
        sampled jointly (``replace=True``) by default, so that mass created or destroyed is
        reflected in how often a sample is drawn.
    tol, max_iter, on_fail, accept
        See :func:`sinkhorn_log`; a balanced plan within ``accept`` (default 1e-4) of its
        marginals is used when ``tol`` is out of reach.
    """

    def __init__(
        self,
        eps: float,
        *,
        reg_m: float | None = None,
        replace: bool | None = None,
        tol: float = 1e-6,
        max_iter: int = 20000,
        on_fail: str = "raise",
        accept: float | None = SINKHORN_ACCEPT,
    ):
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        super().__init__(replace if replace is not None else reg_m is not None)
        self.eps = float(eps)
        self.reg_m = reg_m
        self.tol = tol
        self.max_iter = max_iter
        self.on_fail = on_fail
        self.accept = accept

    def plan(self, x0, x1, a=None, b=None):
        C = squared_distances(x0, x1)
        a = _weights(a, x0.shape[0], C.device)
        b = _weights(b, x1.shape[0], C.device)
        return sinkhorn_log(
            a,
            b,
            C,
            self.eps,
            reg_m=self.reg_m,
            tol=self.tol,
            max_iter=self.max_iter,
            on_fail=self.on_fail,
            accept=self.accept if self.reg_m is None else None,
        )
