r"""Minibatch couplings: which source sample is paired with which target sample.

A :class:`Coupling` computes a transport plan :math:`P` between two minibatches and draws
index pairs ``(i0, i1)`` from it. The indices are returned, so anything attached to the
samples (labels, conditions, weights, time points) follows them: ``labels0[pairing.i0]``.

- :class:`IndependentCoupling` — I-CFM: the product coupling.
- :class:`ExactOT` — OT-CFM: the exact plan for the squared Euclidean cost. Equal uniform
  batches are an assignment problem, solved by an auction and proven optimal by its dual
  potentials (:mod:`cellflow.couplings.assignment`); other batches by POT's network simplex
  *without*
  an iteration cap (a capped solve is refused, never used), large ones in 20 or more
  dimensions on near pairs, proven optimal by pricing (:mod:`cellflow.couplings.sparse_ot`).
  For equal, uniform batches the optimal plan is a permutation and, by default, every
  sample is kept exactly once.
- :class:`SinkhornOT` — SB-CFM: the entropic plan (stabilised Sinkhorn in torch, CPU or GPU,
  with ε-scaling; it never underflows), balanced or unbalanced (KL-relaxed marginals).
- :class:`UnbalancedOT` — entropic OT with KL-relaxed marginals in the fast scaling form, each
  marginal relaxed by its own τ: the coupling of growth-aware flows (cells divide and die).
- :class:`PartialOT` — exact partial transport of a fraction of the mass.
- :class:`WholePlan` — any of these solved once between two whole samples, with pairs drawn
  from it step after step (the default of :meth:`cellflow.CellFlow.train` where it fits).

One file per concept: ``_base.py`` (the interface, the cost, drawing pairs from a plan),
``_independent.py``, ``_exact.py``, ``_sinkhorn.py``, ``_unbalanced.py``, ``_partial.py`` and
``_whole.py``.

Every solver that does not converge raises :class:`ConvergenceError` (or warns, if asked);
none silently falls back to another plan.

Example
-------
>>> import torch
>>> from cellflow.couplings import ExactOT
>>> x0, x1 = torch.randn(64, 3), torch.randn(64, 3) + 2
>>> p = ExactOT().pair(x0, x1)
>>> sorted(p.i1.tolist()) == list(range(64))   # a permutation: nothing dropped or duplicated
True
"""

from __future__ import annotations

from ._base import ConvergenceError, Coupling, Pairing, squared_distances
from ._exact import ExactOT, PointsSolve
from ._independent import IndependentCoupling
from ._partial import PartialOT
from ._sinkhorn import SinkhornOT, sinkhorn_log
from ._unbalanced import UnbalancedOT, check_tau, unbalanced_scaling
from ._whole import WHOLE_PLAN_ENTRIES, WholePlan

for _public in (
    ConvergenceError,
    Pairing,
    Coupling,
    IndependentCoupling,
    ExactOT,
    PointsSolve,
    SinkhornOT,
    UnbalancedOT,
    PartialOT,
    WholePlan,
    squared_distances,
    sinkhorn_log,
    unbalanced_scaling,
):
    _public.__module__ = (
        __name__  # documented, and shown in tracebacks and reprs, as cellflow.couplings.X
    )
del _public

__all__ = [
    "check_tau",
    "ConvergenceError",
    "Pairing",
    "Coupling",
    "IndependentCoupling",
    "ExactOT",
    "PointsSolve",
    "SinkhornOT",
    "UnbalancedOT",
    "PartialOT",
    "WholePlan",
    "WHOLE_PLAN_ENTRIES",
    "squared_distances",
    "sinkhorn_log",
    "unbalanced_scaling",
    "get_coupling",
]


def get_coupling(name: str | Coupling | None, **kwargs) -> Coupling:
    """A coupling by name: ``"independent"``, ``"exact"``, ``"sinkhorn"``, ``"partial"``.

    .. deprecated:: 0.1
        Nothing in cellflow calls it, and its ``"unbalanced"`` is the entropic
        :class:`SinkhornOT` with ``reg_m``, not :class:`UnbalancedOT`; it will be removed in
        0.2. Build the coupling's class instead, e.g. ``ExactOT()`` or ``SinkhornOT(eps=2.0)``.
    """
    import warnings

    warnings.warn(
        "cellflow.couplings.get_coupling is deprecated and will be removed in cellflow 0.2; "
        "build the coupling's class instead (ExactOT(), SinkhornOT(eps=...), UnbalancedOT(...)).",
        FutureWarning,
        stacklevel=2,
    )
    if isinstance(name, Coupling):
        return name
    table = {
        None: IndependentCoupling,
        "independent": IndependentCoupling,
        "exact": ExactOT,
        "sinkhorn": SinkhornOT,
        "unbalanced": SinkhornOT,
        "partial": PartialOT,
    }
    if name not in table:
        raise ValueError(f"unknown coupling {name!r}; choose from {sorted(k for k in table if k)}.")
    return table[name](**kwargs)
