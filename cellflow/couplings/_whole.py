r"""The plan between two whole samples, solved once, from which training pairs are drawn.

A minibatch coupling solves a new plan every step, between ``batch_size`` cells drawn from
each time point, and draws the step's pairs from it. When the time points are small enough
for their whole plan to be held in memory, that plan can be solved once instead and every
step's pairs drawn from it:

.. math::

    (i_0, i_1) \sim P, \qquad P = \arg\min_{P \in \Pi(a, b)} \langle P, C \rangle
    + \varepsilon\,\mathrm{KL}(P \,|\, a b^\top)

(ε = 0 for exact OT). It is the plan minibatch OT approximates (Tong et al. 2024, section 3.3:
the minibatch plan is used for its cost, not its answer), and it costs one solve instead of
one per step: a training step then costs what an I-CFM step costs. Where a time point has
no more cells than ``batch_size`` the two differ only in that a minibatch plan is solved on
each step's draw of the cells with replacement, the whole plan on the cells themselves.

Pairs are drawn jointly with replacement (``P`` normalised to a probability over all
``(i, j)``), as the minibatch couplings draw them from their plan: by inverse-CDF sampling on
the cumulative sums of ``P``'s positive entries, held in float64.

Example
-------
>>> import torch
>>> from cellflow.couplings import SinkhornOT, WholePlan
>>> x0, x1 = torch.randn(300, 5), torch.randn(200, 5) + 1
>>> plan = WholePlan(SinkhornOT(eps=2.0), x0, x1)
>>> i0, i1 = plan.draw(512, generator=torch.Generator().manual_seed(0))
>>> i0.shape, bool(i0.max() < 300), bool(i1.max() < 200)
(torch.Size([512]), True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._defaults import WHOLE_PLAN_ENTRIES
from ._base import Coupling

__all__ = ["WholePlan", "WHOLE_PLAN_ENTRIES"]


class WholePlan:
    """One coupling's plan between all of ``x0`` and all of ``x1``, and draws of pairs from it.

    Parameters
    ----------
    coupling
        The coupling whose plan is solved (:class:`~cellflow.couplings.ExactOT`,
        :class:`~cellflow.couplings.SinkhornOT`, ...).
    x0, x1
        All source and all target samples.
    a, b
        Their weights (default uniform), e.g. how often a bootstrap resample holds each cell.

    Attributes
    ----------
    n_pairs
        Number of ``(i, j)`` with positive mass: pairs are drawn among these only.
    """

    def __init__(self, coupling: Coupling, x0: Tensor, x1: Tensor, a=None, b=None):
        P = coupling.plan(x0, x1, a, b).double()
        self.shape = tuple(P.shape)
        flat = P.reshape(-1)
        keep = torch.nonzero(flat > 0).reshape(-1)
        if len(keep) == flat.numel():  # dense (entropic): no index table needed
            self._index = None
            self._cum = flat.cumsum(0)
        else:  # sparse (exact OT: at most n0 + n1 - 1 positive entries)
            self._index = keep
            self._cum = flat[keep].cumsum(0)
        self.n_pairs = len(self._cum)
        del P, flat

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` index pairs ``(i0, i1)``, each ``(i, j)`` with probability ``P_ij / sum(P)``."""
        total = self._cum[-1]
        u = torch.rand(n, generator=generator, dtype=torch.float64) * total
        k = torch.searchsorted(self._cum, u, right=True).clamp_(max=self.n_pairs - 1)
        if self._index is not None:
            k = self._index[k]
        return k // self.shape[1], k % self.shape[1]
