r"""Exact optimal assignment of two equal, uniform minibatches: an auction, then a proof.

For :math:`n` sources and :math:`n` targets with uniform weights the optimal transport plan
is a permutation :math:`\sigma` minimising :math:`\sum_i C_{i\sigma(i)}` (Birkhoff), so the
OT-CFM coupling is an assignment problem. It is solved in three steps, compiled with numba
(which releases the GIL, so batch workers solve in parallel with the training step):

1. **Auction with ε-scaling** (Bertsekas 1988), on :math:`C` reduced by its row and then its
   column minima (the same optimum, better conditioned). An unassigned row :math:`i` bids
   for its cheapest column :math:`j^\ast = \arg\min_j (C_{ij} + p_j)` and raises its price
   by the gap to the second cheapest plus ε. At the end every row is within ε of its best
   column (ε-complementary slackness), so the assignment is within :math:`n\varepsilon` of
   the optimum. ε falls by :data:`THETA` per phase, from a quarter of the cost range to
   :data:`EPS_FINAL` times it.
2. **A proof of optimality**. The assignment is optimal if and only if there are column
   potentials :math:`v` with reduced costs :math:`C_{ij} - u_i - v_j \ge 0` for all pairs,
   where :math:`u_i = C_{i\sigma(i)} - v_{\sigma(i)}` (LP duality). Those are shortest-path
   distances, found by label correcting (Bellman–Ford with a queue) from the auction's
   prices :math:`v = -p`, which already satisfy every constraint to within ε: about
   :math:`2n` row scans. If the queue does not empty within :data:`MAX_SCANS` ``· n`` scans
   (a negative cycle: the auction stopped short of the optimum), the auction goes on from
   its prices at a 64× finer ε and the proof is tried again, up to :data:`RETRIES` times.
3. **Repair**, never needed in the measurements: rows not at their cheapest column under
   the prices are unassigned and re-inserted by Dijkstra shortest augmenting paths
   (Jonker–Volgenant; Crouse 2016), which keep exact dual feasibility, so the result is
   optimal whatever the auction reached.

:func:`assign_points` takes the two point sets instead of :math:`C` and computes the squared
Euclidean costs inside the compiled code, so the whole solve runs without the GIL;
:func:`assign_point_stacks` solves ``k`` such problems in one compiled call (a batch worker's
task for ``k`` training steps).

The returned potentials :math:`(u, v)` are the certificate: :math:`C - u - v \ge -\tau`
everywhere and :math:`= 0` on the assignment, with :math:`\tau = 10^{-13}` of the cost range
(float64 rounding), so the cost is within :math:`n\tau` of the optimum.

Measured on 2 cores against POT's network simplex (``ot.emd``, uncapped), same cost every
time: see :mod:`cellflow.couplings` and the README's speed section.

Example
-------
>>> import numpy as np, ot
>>> rng = np.random.default_rng(0)
>>> x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 1
>>> C = ot.dist(x, y)
>>> res = exact_assignment(C)
>>> w = np.full(200, 0.005)
>>> bool(np.isclose(C[np.arange(200), res.cols].mean(), ot.emd2(w, w, C)))
True
>>> bool((C - res.u[:, None] - res.v[None, :] >= -1e-9).all())   # the proof: dual feasible
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._auction import _solve, _solve_point_stacks, _solve_points

__all__ = [
    "Assignment",
    "exact_assignment",
    "assign_points",
    "assign_point_stacks",
    "POINTS_MAX_DIM",
    "EPS_FINAL",
    "THETA",
    "MAX_SCANS",
    "RETRIES",
]

EPS_FINAL = 1e-7  # last auction ε, relative to the reduced cost range (measured: no repair needed)
THETA = 4.0  # ε shrinks by this factor per scaling phase
MAX_SCANS = 8  # label-correcting row scans allowed, per row, before the proof gives up
MAX_BIDS = 2000  # bids allowed per row and phase before the auction gives up (never reached)
RETRIES = 3  # finer auction phases tried, each ε/64, when the proof fails, before the repair
POINTS_MAX_DIM = (
    16  # assign_points computes costs itself up to this many features (faster than a matmul there)
)
_TOL = 1e-13  # reduced costs down to -_TOL * range count as feasible (float64 rounding)


@dataclass
class Assignment:
    """An optimal assignment with its proof.

    Attributes
    ----------
    cols
        ``cols[i]`` is the target of source ``i`` (a permutation).
    u, v
        Dual potentials: ``C[i, j] - u[i] - v[j] >= -tol`` for all pairs, ``== 0`` (to
        rounding) on ``(i, cols[i])``.
    bids, scans
        Work done: auction bids, label-correcting row scans (``-1``: the proof gave up).
    repaired
        Rows re-inserted by shortest augmenting paths (0 when the auction was optimal).
    """

    cols: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bids: int
    scans: int
    repaired: int


def exact_assignment(C: np.ndarray) -> Assignment:
    """Optimal assignment for a square cost matrix, with its dual certificate.

    Parameters
    ----------
    C
        Finite ``(n, n)`` costs (any real values; float64 is used).

    Returns
    -------
    Assignment
        ``cols`` minimises ``C[arange(n), cols].sum()`` over all permutations.
    """
    C = np.ascontiguousarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"exact_assignment needs a square cost matrix, got shape {C.shape}.")
    if C.shape[0] == 0:
        e = np.empty(0)
        return Assignment(np.empty(0, np.int64), e, e, 0, 0, 0)
    cols, u, v, bids, scans, repaired = _solve(
        C, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES
    )
    return Assignment(cols, u, v, int(bids), int(scans), int(repaired))


def assign_points(x0: np.ndarray, x1: np.ndarray) -> Assignment:
    r"""Optimal assignment of two equal point sets for the squared Euclidean cost.

    The same as ``exact_assignment(C)`` with :math:`C_{ij} = \|x_{0,i} - x_{1,j}\|^2`, but
    the costs are computed inside the compiled solver, by direct differences in float64,
    without the GIL: a training step running in parallel with a batch worker (exact OT
    in a worker thread) waits less for it. For up to :data:`POINTS_MAX_DIM` features this is
    also faster than the matrix-product form (``tutorials/speed_history.md``).

    Parameters
    ----------
    x0, x1
        ``(n, d)`` arrays, float32 or float64 (others are converted to float64).

    Returns
    -------
    Assignment
        ``cols`` minimises ``sum_i ||x0[i] - x1[cols[i]]||**2``; ``u, v`` certify it for
        those costs.
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    if x0.ndim != 2 or x1.ndim != 2 or x0.shape != x1.shape:
        raise ValueError(
            f"assign_points needs two (n, d) arrays of one shape, got {x0.shape} and {x1.shape}."
        )
    dtype = (
        x0.dtype if x0.dtype == x1.dtype and x0.dtype in (np.float32, np.float64) else np.float64
    )
    x0 = np.ascontiguousarray(x0, dtype=dtype)
    x1t = np.ascontiguousarray(x1.T, dtype=dtype)
    if x0.shape[0] == 0:
        e = np.empty(0)
        return Assignment(np.empty(0, np.int64), e, e, 0, 0, 0)
    cols, u, v, bids, scans, repaired = _solve_points(
        x0, x1t, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES
    )
    return Assignment(cols, u, v, int(bids), int(scans), int(repaired))


def assign_point_stacks(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    r"""The optimal assignments of ``k`` pairs of equal point sets, in one compiled call.

    ``cols[q]`` is ``assign_points(x0[q], x1[q]).cols``, the same permutation, but the ``k``
    solves enter and leave the compiled code (and the GIL) once. A batch worker that solves
    the couplings of several coming training steps in one task hands the GIL back and forth
    with the training step a ``k``-th as often (2-D toy, batch 256, 2 cores: see
    :class:`cellflow.train.trainer.TrainConfig`, ``group``).

    Parameters
    ----------
    x0, x1
        ``(k, n, d)`` arrays of one shape, float32 or float64 (others are converted to
        float64).

    Returns
    -------
    numpy.ndarray
        ``(k, n)`` int64: ``cols[q]`` minimises ``sum_i ||x0[q, i] - x1[q, cols[q, i]]||**2``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x0, x1 = rng.normal(size=(3, 50, 2)), rng.normal(size=(3, 50, 2))
    >>> cols = assign_point_stacks(x0, x1)
    >>> all((cols[q] == assign_points(x0[q], x1[q]).cols).all() for q in range(3))
    True
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    if x0.ndim != 3 or x0.shape != x1.shape:
        raise ValueError(
            f"assign_point_stacks needs two (k, n, d) arrays of one shape, got {x0.shape} and "
            f"{x1.shape}."
        )
    dtype = (
        x0.dtype if x0.dtype == x1.dtype and x0.dtype in (np.float32, np.float64) else np.float64
    )
    x0 = np.ascontiguousarray(x0, dtype=dtype)
    x1t = np.ascontiguousarray(x1.transpose(0, 2, 1), dtype=dtype)
    if x0.shape[1] == 0:
        return np.empty(x0.shape[:2], np.int64)
    return _solve_point_stacks(x0, x1t, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES)
