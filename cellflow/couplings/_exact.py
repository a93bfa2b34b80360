"""Exact OT (OT-CFM): the auction for equal uniform batches, POT's network simplex (dense or on
near pairs) otherwise, and the deferred solve that batch workers run without the GIL."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import Tensor

from ._base import Coupling, Pairing, _fail, _sample_rows, _source_rows, _weights, squared_distances
from .assignment import POINTS_MAX_DIM, assign_point_stacks, assign_points, exact_assignment
from .sparse_ot import MAX_ITER_REACHED, SPARSE_FROM, SPARSE_MIN_DIM, sparse_exact_plan


@dataclass(frozen=True)
class PointsSolve:
    """A deferred exact assignment of two equal point batches, for a batch worker.

    Calling it returns the optimal permutation ``cols``
    (:func:`~cellflow.couplings.assignment.assign_points`);
    :meth:`together` solves the jobs of several training steps in one compiled call. Both run
    without the GIL (:class:`cellflow.train.trainer.TrainConfig`, ``group``).
    """

    x0: np.ndarray
    x1: np.ndarray

    def __call__(self) -> np.ndarray:
        return assign_points(self.x0, self.x1).cols

    @staticmethod
    def together(jobs: list["PointsSolve"]) -> list[np.ndarray]:
        """``[job() for job in jobs]``, the same permutations, by one call of
        :func:`~cellflow.couplings.assignment.assign_point_stacks` where the jobs share shape and
        dtype."""
        first = jobs[0]
        if len(jobs) == 1 or any(
            j.x0.shape != first.x0.shape
            or j.x0.dtype != first.x0.dtype
            or j.x1.dtype != first.x1.dtype
            for j in jobs
        ):
            return [job() for job in jobs]
        return list(
            assign_point_stacks(np.stack([j.x0 for j in jobs]), np.stack([j.x1 for j in jobs]))
        )


class ExactOT(Coupling):
    """Exact optimal transport for the squared Euclidean cost (OT-CFM).

    Equal, uniform batches (the usual minibatch) are an assignment problem: solved by an
    auction and proven optimal by its dual potentials (:mod:`cellflow.couplings.assignment`;
    faster than POT's network simplex, with the same plan: benchmarks page). Weighted or
    unequal batches are solved by POT's network simplex.

    Parameters
    ----------
    replace
        See :class:`Coupling`.
    max_iter
        Iteration cap of the network simplex. ``None`` (default): effectively unbounded, so
        the plan is optimal at every batch size. If the cap is reached,
        :class:`ConvergenceError` is raised (or a warning, with ``on_fail="warn"``).
    sparse
        Solve the network simplex on a sparse set of near pairs and prove the plan optimal
        by pricing every pair (:mod:`cellflow.couplings.sparse_ot`): the same optimum. ``None``
        (default): when the batches have at least :data:`~cellflow.couplings.sparse_ot.SPARSE_FROM`
        pairs and :data:`~cellflow.couplings.sparse_ot.SPARSE_MIN_DIM` features, where it was
        measured
        faster than the dense network simplex (:mod:`cellflow.couplings.sparse_ot`).
    auction
        ``None`` (default): solve equal, uniform batches by
        :func:`~cellflow.couplings.assignment.exact_assignment`, unless ``max_iter`` or
        ``sparse=True``
        asks for the network simplex. ``False``: always the network simplex. ``True``: always
        the auction (a ``ValueError`` for weighted or unequal batches).
    """

    solves_on_cpu = True

    def __init__(
        self,
        replace: bool | None = None,
        *,
        max_iter: int | None = None,
        on_fail: str = "raise",
        sparse: bool | None = None,
        auction: bool | None = None,
    ):
        super().__init__(replace)
        self.max_iter = max_iter
        self.on_fail = on_fail
        self.sparse = sparse
        self.auction = auction

    def _use_auction(self, n0: int, n1: int, a, b) -> bool:
        fits = n0 == n1 and a is None and b is None
        if self.auction is True and not fits:
            raise ValueError(
                "ExactOT(auction=True) solves equal, unweighted batches only; got "
                f"{n0} and {n1} "
                f"samples{' with weights' if a is not None or b is not None else ''}. "
                "Use auction=None to let weighted or unequal batches go to the network simplex."
            )
        if self.auction is None:
            return fits and self.max_iter is None and self.sparse is not True
        return self.auction

    def _points(self, x0, x1):
        """The batches as numpy points for :func:`~cellflow.couplings.assignment.assign_points`
        (CPU, at
        most :data:`~cellflow.couplings.assignment.POINTS_MAX_DIM` features), else ``None``."""
        a, b = x0.detach().reshape(x0.shape[0], -1), x1.detach().reshape(x1.shape[0], -1)
        if a.device.type != "cpu" or b.device.type != "cpu" or a.shape[1] > POINTS_MAX_DIM:
            return None
        # assign_points converts other numpy dtypes itself; bfloat16 has no numpy dtype
        a, b = (v.double() if v.dtype not in (torch.float32, torch.float64) else v for v in (a, b))
        return a.numpy(), b.numpy()

    def _assignment(self, x0, x1) -> Tensor:
        """``cols``: the optimal permutation of equal uniform batches (``x0[i]`` to
        ``x1[cols[i]]``).

        CPU batches of up to :data:`~cellflow.couplings.assignment.POINTS_MAX_DIM` features go to
        the
        solver as points (:func:`~cellflow.couplings.assignment.assign_points`: costs by direct
        differences, without the GIL); others as the matrix of :func:`squared_distances`."""
        pts = self._points(x0, x1)
        if pts is not None:
            return torch.from_numpy(assign_points(*pts).cols)
        C = squared_distances(x0, x1)
        return torch.from_numpy(exact_assignment(C.cpu().numpy()).cols).to(x0.device)

    def _rows(self, n: int, n0: int, generator, device) -> Tensor:
        """The source rows of ``n`` pairs from a permutation plan (its draws from ``generator``)."""
        if self.replace:
            # n pairs from the plan with replacement: each row holds one entry of mass 1/n0, so
            # draw rows from the rows' masses, as _sample_rows draws from the flattened plan
            # (whose zeros add nothing to its cumulative sums: the same draws)
            rows = torch.full((1, n0), 1.0 / n0, dtype=torch.float64)
            return _sample_rows(rows, generator, n).reshape(-1).to(device)
        return _source_rows(n, n0, generator, device)

    def pair(self, x0, x1, *, a=None, b=None, n=None, generator=None):
        """See :meth:`Coupling.pair`. For equal, uniform batches the pairs are read off the
        optimal permutation, without forming the ``n × n`` plan (``Pairing.plan`` is then
        ``None``); the draws equal those from the plan."""
        n0 = x0.shape[0]
        if not self._use_auction(n0, x1.shape[0], a, b):
            return super().pair(x0, x1, a=a, b=b, n=n, generator=generator)
        cols = self._assignment(x0, x1)
        i0 = self._rows(n0 if n is None else n, n0, generator, x0.device)
        return Pairing(i0=i0, i1=cols[i0], plan=None)

    def defers(self, dim: int) -> bool:
        """Whether :meth:`defer_pair` can split the pairing of equal, uniform CPU batches of
        ``dim`` features (the auction on points, at most
        :data:`~cellflow.couplings.assignment.POINTS_MAX_DIM` features)."""
        return dim <= POINTS_MAX_DIM and self._use_auction(1, 1, None, None)

    def defer_pair(self, x0, x1, *, a=None, b=None, n=None, generator=None):
        """:meth:`pair` in two parts: ``(solve, finish)`` with ``finish(solve())`` equal to
        ``pair(...)`` (the same draws, taken from ``generator`` now), or ``None`` where the
        batches are not equal, uniform CPU batches of at most
        :data:`~cellflow.couplings.assignment.POINTS_MAX_DIM` features.

        ``solve()`` is the compiled solve alone (a :class:`PointsSolve`): it holds the GIL only
        to enter it, so a batch worker thread runs it beside the training step, while the
        tensor work around it (drawing the batches, the path) stays in the training thread,
        where it would hold the GIL anyway. A worker solves several steps' at once with
        :meth:`PointsSolve.together`.
        """
        n0 = x0.shape[0]
        if not self._use_auction(n0, x1.shape[0], a, b):
            return None
        pts = self._points(x0, x1)
        if pts is None:
            return None
        i0 = self._rows(n0 if n is None else n, n0, generator, x0.device)

        def finish(cols):
            return Pairing(i0=i0, i1=torch.from_numpy(cols)[i0], plan=None)

        return PointsSolve(*pts), finish

    def plan(self, x0, x1, a=None, b=None):
        if self._use_auction(x0.shape[0], x1.shape[0], a, b):
            cols = self._assignment(x0, x1).cpu()
            G = torch.zeros((x0.shape[0], x1.shape[0]), dtype=torch.float64)
            G[torch.arange(x0.shape[0]), cols] = 1.0 / x0.shape[0]
            return G.to(x0.device)
        C = squared_distances(x0, x1)
        a = _weights(a, x0.shape[0], "cpu").numpy()
        b = _weights(b, x1.shape[0], "cpu").numpy()
        if not math.isclose(a.sum(), b.sum(), rel_tol=1e-9):
            b = b * (a.sum() / b.sum())
        max_iter = self.max_iter if self.max_iter is not None else 2**31 - 1
        C = C.cpu().numpy()
        dim = math.prod(x0.shape[1:])
        sparse = (
            (C.size >= SPARSE_FROM and dim >= SPARSE_MIN_DIM)
            if self.sparse is None
            else self.sparse
        )
        if sparse and (a > 0).all() and (b > 0).all():
            G, code = sparse_exact_plan(a, b, C, max_iter=max_iter)
            if G is not None:
                return torch.from_numpy(G).to(x0.device)
            if code == MAX_ITER_REACHED:
                _fail(
                    f"exact OT did not reach the optimum (max_iter={max_iter} reached); raise "
                    "max_iter or "
                    "leave it at None.",
                    self.on_fail,
                )
            # otherwise no proven optimum within its rounds: solve the dense problem, as exact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # we check the result code ourselves
            # the marginals are equal by construction and the duals are not used: skip both steps
            G, log = ot.emd(
                a, b, C, numItermax=max_iter, log=True, center_dual=False, check_marginals=False
            )
        if log["result_code"] != 1:
            _fail(
                f"exact OT did not reach the optimum ({log['warning']}); raise max_iter "
                f"(now {max_iter}) or leave it at None.",
                self.on_fail,
            )
        return torch.from_numpy(G).to(x0.device)
