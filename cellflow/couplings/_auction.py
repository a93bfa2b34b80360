r"""The compiled kernels of :mod:`cellflow.couplings.assignment`: ε-scaling auction,
label-correcting
proof of optimality, and shortest-augmenting-path repair (numba, ``nogil``).

The maths, the constants and the public entry points
(:func:`~cellflow.couplings.assignment.exact_assignment`,
:func:`~cellflow.couplings.assignment.assign_points`,
:func:`~cellflow.couplings.assignment.assign_point_stacks`) live
in :mod:`cellflow.couplings.assignment`; every function here takes the solver's settings as
arguments
(``eps_final, theta, max_scans, max_bids, tol, retries``) and returns plain arrays and ints:
``(cols, u, v, bids, scans, repaired)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(cache=True, nogil=True)
def _solve_point_stacks(x0, x1t, eps_final, theta, max_scans, max_bids, tol, retries):
    k, n = x0.shape[0], x0.shape[1]
    cols = np.empty((k, n), np.int64)
    for q in range(k):
        cols[q] = _solve_points(x0[q], x1t[q], eps_final, theta, max_scans, max_bids, tol, retries)[
            0
        ]
    return cols
