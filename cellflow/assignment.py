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
>>> bool(np.isclose(C[np.arange(200), res.cols].mean(), ot.emd2(np.full(200, 0.005), np.full(200, 0.005), C)))
True
>>> bool((C - res.u[:, None] - res.v[None, :] >= -1e-9).all())   # the proof: dual feasible
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["Assignment", "exact_assignment", "assign_points", "assign_point_stacks", "POINTS_MAX_DIM", "EPS_FINAL", "THETA", "MAX_SCANS",
           "RETRIES"]

EPS_FINAL = 1e-7  # last auction ε, relative to the reduced cost range (measured: no repair needed)
THETA = 4.0  # ε shrinks by this factor per scaling phase
MAX_SCANS = 8  # label-correcting row scans allowed, per row, before the proof gives up
MAX_BIDS = 2000  # bids allowed per row and phase before the auction gives up (never reached)
RETRIES = 3  # finer auction phases tried, each ε/64, when the proof fails, before the repair
POINTS_MAX_DIM = 16  # assign_points computes costs itself up to this many features (faster than a matmul there)
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


@njit(cache=True, nogil=True)
def _reduce(C, R):
    """``R = C - rowmin - colmin`` (float64; ``R`` may be ``C`` itself) with the two offset
    vectors, in two passes; a ``ValueError`` for a non-finite cost (checked in the first
    pass, no extra one)."""
    n, m = C.shape
    r = np.empty(n)
    c = np.full(m, np.inf)
    for i in range(n):
        lo = np.inf
        for j in range(m):
            x = C[i, j]
            if not np.isfinite(x):
                raise ValueError("exact_assignment needs finite costs.")
            lo = min(lo, x)
        r[i] = lo
        for j in range(m):
            x = C[i, j] - lo
            R[i, j] = x
            c[j] = min(c[j], x)
    for i in range(n):
        for j in range(m):
            R[i, j] -= c[j]
    return R, r, c


_INF_BITS = np.int64(0x7FF0000000000000)  # the bits of +inf: above those of every finite x >= 0


@njit(cache=True, nogil=True)
def _index_bits(n):
    """``low = 2**b - 1`` for the fewest ``b`` bits that hold a column index below ``n``."""
    low = np.int64(0)
    while low < n - 1:
        low = 2 * low + 1
    return low


@njit(cache=True, nogil=True)
def _bid(Ri, p, keys, low):
    """Cheapest and second cheapest value of ``Ri + p`` (all ``>= +0.0``) and the first
    column of the cheapest, to ``2**-(52 - b)`` relative (``low = 2**b - 1``, :func:`_index_bits`).

    Non-negative doubles order like their bit patterns as int64. Each sum's lowest ``b``
    mantissa bits are replaced by its column index, so one integer minimum (which
    vectorises, where float minima with their NaN rules do not) gives the cheapest value
    *and* its column, the first among equal keys; a second pass, without that key, the
    second cheapest. Sums closer than ``2**-(52 - b)`` relative count as tied (1e-13 at
    n = 512): far below the auction's last ε, and the proof of optimality that follows uses
    exact reduced costs. Toy, n = 256: 0.64× the time of a scan that finds the column by
    searching for the minimum, the same assignments.
    """
    n = p.shape[0]
    mask = ~low
    b = _INF_BITS
    for j in range(n):
        k = (np.float64(Ri[j] + p[j]).view(np.int64) & mask) | j
        keys[j] = k
        b = min(b, k)
    s = _INF_BITS
    for j in range(n):
        k = keys[j]
        s = min(s, _INF_BITS if k == b else k)
    return b & low, np.int64(b & mask).view(np.float64), np.int64(s & mask).view(np.float64)


@njit(cache=True, nogil=True)
def _auction(R, p, eps, eps_final, theta, max_bids, col4row, row4col):
    """Forward Gauss–Seidel auction (minimisation), ε-scaling phases from ``eps`` down to
    ``eps_final``; prices ``p`` and the assignment are updated in place. The number of
    bids, or -1 if a phase ran past ``max_bids`` per row."""
    n = R.shape[0]
    queue = np.empty(n, np.int64)
    keys = np.empty(n, np.int64)
    low = _index_bits(n)
    bids = 0
    while True:
        eps = max(eps, eps_final)
        for k in range(n):
            col4row[k] = -1
            row4col[k] = -1
            queue[k] = k
        head, waiting, phase_bids = 0, n, 0
        while waiting > 0:
            i = queue[head]
            head = head + 1 if head + 1 < n else 0
            waiting -= 1
            jb, best, second = _bid(R[i], p, keys, low)
            p[jb] += second - best + eps
            phase_bids += 1
            old = row4col[jb]
            row4col[jb] = i
            col4row[i] = jb
            if old != -1:
                col4row[old] = -1
                tail = head + waiting
                queue[tail - n if tail >= n else tail] = old
                waiting += 1
            if phase_bids > max_bids * n:
                return -1
        bids += phase_bids
        if eps <= eps_final:
            return bids
        eps /= theta


@njit(cache=True, nogil=True)
def _prove(R, col4row, row4col, v, tol, max_scans):
    """Label correcting on ``v_j <= R_ij - R_{i,σ(i)} + v_{σ(i)}``, in place; the number of
    row scans, or -1 if ``max_scans`` was reached (no proof)."""
    n = R.shape[0]
    queue = np.arange(n)
    queued = np.ones(n, np.bool_)
    head, waiting, scans = 0, n, 0
    while waiting > 0:
        i = queue[head]
        head = head + 1 if head + 1 < n else 0
        waiting -= 1
        queued[i] = False
        scans += 1
        if scans > max_scans:
            return -1
        k = col4row[i]
        base = v[k] - R[i, k]
        for j in range(n):
            x = R[i, j] + base
            if x < v[j] - tol:
                v[j] = x
                r = row4col[j]
                if not queued[r]:
                    queued[r] = True
                    tail = head + waiting
                    queue[tail - n if tail >= n else tail] = r
                    waiting += 1
    return scans


@njit(cache=True, nogil=True)
def _augment(R, u, v, row4col, col4row, cur, spc, path, rows, done, left):
    """One Dijkstra shortest augmenting path from free row ``cur`` (Crouse 2016), keeping
    ``R - u - v >= 0`` and equality on the matching."""
    n = R.shape[1]
    for j in range(n):
        left[j] = j
        spc[j] = np.inf
        done[j] = False
    nleft, nrows, lowest, i, sink = n, 0, 0.0, cur, -1
    while sink == -1:
        rows[nrows] = i
        nrows += 1
        base = lowest - u[i]
        best, at = np.inf, -1
        for k in range(nleft):
            j = left[k]
            r = base + R[i, j] - v[j]
            if r < spc[j]:
                path[j] = i
                spc[j] = r
            if spc[j] < best or (spc[j] == best and row4col[j] == -1):
                best, at = spc[j], k
        lowest = best
        j = left[at]
        done[j] = True
        nleft -= 1
        left[at] = left[nleft]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
    u[cur] += lowest
    for k in range(1, nrows):
        i = rows[k]
        u[i] += lowest - spc[col4row[i]]
    for j in range(n):
        if done[j]:
            v[j] -= lowest - spc[j]
    j = sink
    while True:
        i = path[j]
        row4col[j] = i
        col4row[i], j = j, col4row[i]
        if i == cur:
            return


@njit(cache=True, nogil=True)
def _repair(R, p, col4row):
    """Keep the rows at their cheapest column under prices ``p``, re-insert the others by
    shortest augmenting paths; returns the optimal assignment, its duals and the count."""
    n = R.shape[0]
    v = -p
    u = np.empty(n)
    c4r = np.full(n, -1, np.int64)
    r4c = np.full(n, -1, np.int64)
    for i in range(n):
        best = np.inf
        for j in range(n):
            best = min(best, R[i, j] - v[j])
        u[i] = best
        j = col4row[i]
        if j != -1 and R[i, j] - v[j] <= best and r4c[j] == -1:
            c4r[i] = j
            r4c[j] = i
            u[i] = R[i, j] - v[j]
    spc, path = np.empty(n), np.empty(n, np.int64)
    rows, done, left = np.empty(n, np.int64), np.empty(n, np.bool_), np.empty(n, np.int64)
    repaired = 0
    for i in range(n):
        if c4r[i] == -1:
            repaired += 1
            _augment(R, u, v, r4c, c4r, i, spc, path, rows, done, left)
    return c4r, u, v, repaired


@njit(cache=True, nogil=True)
def _solve(C, eps_final, theta, max_scans, max_bids, tol, retries):
    R, r, c = _reduce(C, np.empty(C.shape))  # the caller's C stays as it is
    return _solve_reduced(R, r, c, eps_final, theta, max_scans, max_bids, tol, retries)


@njit(cache=True, nogil=True)
def _solve_reduced(R, r, c, eps_final, theta, max_scans, max_bids, tol, retries):
    n = R.shape[0]
    spread = R.max()
    if spread == 0.0:  # every permutation is optimal
        return np.arange(n), r, c.copy(), 0, 0, 0
    p = np.zeros(n)
    col4row, row4col = np.empty(n, np.int64), np.empty(n, np.int64)
    v = np.empty(n)
    eps, eps_final = spread / 4.0, spread * eps_final
    bids, scans = 0, -1
    for attempt in range(retries + 1):
        b = _auction(R, p, eps, eps_final, theta, max_bids, col4row, row4col)
        if b < 0:
            break
        bids += b
        v[:] = -p
        scans = _prove(R, col4row, row4col, v, spread * tol, max_scans * n)
        if scans >= 0:
            u = np.empty(n)
            for i in range(n):
                u[i] = R[i, col4row[i]] - v[col4row[i]]
            return col4row, u + r, v + c, bids, scans, 0
        # no proof yet (a negative cycle): go on with the same prices at a finer ε
        eps, eps_final = eps_final / theta, eps_final / theta**3
    # still no proof: exact repair from the prices reached
    col4row, u, v, repaired = _repair(R, p, col4row)
    return col4row, u + r, v + c, bids, scans, repaired


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
    cols, u, v, bids, scans, repaired = _solve(C, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES)
    return Assignment(cols, u, v, int(bids), int(scans), int(repaired))


@njit(cache=True, nogil=True)
def _squared_distances(x0, x1t):
    """``C[i, j] = sum_k (x0[i, k] - x1t[k, j])**2`` in float64, by direct differences (the
    target transposed, so that the loop over ``j`` vectorises)."""
    n, d = x0.shape
    C = np.zeros((n, x1t.shape[1]))
    for i in range(n):
        Ci = C[i]
        for k in range(d):
            a = np.float64(x0[i, k])
            for j in range(x1t.shape[1]):
                t = a - np.float64(x1t[k, j])
                Ci[j] += t * t
    return C


@njit(cache=True, nogil=True)
def _solve_points(x0, x1t, eps_final, theta, max_scans, max_bids, tol, retries):
    C = _squared_distances(x0, x1t)
    R, r, c = _reduce(C, C)  # a matrix of its own: reduced in place
    return _solve_reduced(R, r, c, eps_final, theta, max_scans, max_bids, tol, retries)


def assign_points(x0: np.ndarray, x1: np.ndarray) -> Assignment:
    r"""Optimal assignment of two equal point sets for the squared Euclidean cost.

    The same as ``exact_assignment(C)`` with :math:`C_{ij} = \|x_{0,i} - x_{1,j}\|^2`, but
    the costs are computed inside the compiled solver, by direct differences in float64,
    without the GIL: a training step running in parallel with a batch worker (exact OT
    in a worker thread) waits less for it. For up to :data:`POINTS_MAX_DIM` features this is
    also faster than the matrix-product form (256 × 256, 2-D: 0.05 against 0.19 ms).

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
        raise ValueError(f"assign_points needs two (n, d) arrays of one shape, got {x0.shape} and {x1.shape}.")
    dtype = x0.dtype if x0.dtype == x1.dtype and x0.dtype in (np.float32, np.float64) else np.float64
    x0 = np.ascontiguousarray(x0, dtype=dtype)
    x1t = np.ascontiguousarray(x1.T, dtype=dtype)
    if x0.shape[0] == 0:
        e = np.empty(0)
        return Assignment(np.empty(0, np.int64), e, e, 0, 0, 0)
    cols, u, v, bids, scans, repaired = _solve_points(x0, x1t, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES)
    return Assignment(cols, u, v, int(bids), int(scans), int(repaired))


@njit(cache=True, nogil=True)
def _solve_point_stacks(x0, x1t, eps_final, theta, max_scans, max_bids, tol, retries):
    k, n = x0.shape[0], x0.shape[1]
    cols = np.empty((k, n), np.int64)
    for q in range(k):
        cols[q] = _solve_points(x0[q], x1t[q], eps_final, theta, max_scans, max_bids, tol, retries)[0]
    return cols


def assign_point_stacks(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    r"""The optimal assignments of ``k`` pairs of equal point sets, in one compiled call.

    ``cols[q]`` is ``assign_points(x0[q], x1[q]).cols``, the same permutation, but the ``k``
    solves enter and leave the compiled code (and the GIL) once. A batch worker that solves
    the couplings of several coming training steps in one task hands the GIL back and forth
    with the training step a ``k``-th as often (2-D toy, batch 256, 2 cores: see
    :class:`cellflow.training.TrainConfig`, ``group``).

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
        raise ValueError(f"assign_point_stacks needs two (k, n, d) arrays of one shape, got {x0.shape} and {x1.shape}.")
    dtype = x0.dtype if x0.dtype == x1.dtype and x0.dtype in (np.float32, np.float64) else np.float64
    x0 = np.ascontiguousarray(x0, dtype=dtype)
    x1t = np.ascontiguousarray(x1.transpose(0, 2, 1), dtype=dtype)
    if x0.shape[1] == 0:
        return np.empty(x0.shape[:2], np.int64)
    return _solve_point_stacks(x0, x1t, EPS_FINAL, THETA, MAX_SCANS, MAX_BIDS, _TOL, RETRIES)
