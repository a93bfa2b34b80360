r"""Exact optimal transport on a sparse set of candidate pairs, proven optimal by pricing.

For large batches most pairs of an optimal plan join near neighbours. The plan is solved by
POT's network simplex on a sparse set of candidate edges only (each source's ``k`` cheapest
targets, each target's ``k`` cheapest sources, and the north-west-corner support, which
makes the sparse problem feasible for any marginals). The dual potentials :math:`u, v` of
that solve are then *priced* against every pair: if all reduced costs

.. math:: \bar C_{ij} = C_{ij} - u_i - v_j \ge 0

the sparse optimum is optimal for the full problem (LP duality: :math:`u, v` are feasible
for the dual of the dense problem and the primal is feasible and complementary). Otherwise
the violating pairs are added and the solve repeats, warm-started from :math:`u, v`. The
result is the exact optimum, as the dense solve's, not an approximation.

It is faster than the dense solve on many pairs in many dimensions, and slower on few
dimensions, where the nearest neighbours miss more of the plan (``tutorials/speed_history.md``).
So :class:`cellflow.couplings.ExactOT` uses this path only from :data:`SPARSE_FROM` pairs
and :data:`SPARSE_MIN_DIM` features.

Example
-------
>>> import numpy as np, ot
>>> rng = np.random.default_rng(0)
>>> x, y = rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 1
>>> C, a = ot.dist(x, y), np.full(300, 1 / 300)
>>> G, code = sparse_exact_plan(a, a, C)
>>> code, bool(np.isclose((G * C).sum(), ot.emd2(a, a, C)))
(1, True)
"""

from __future__ import annotations

import numpy as np
from ot.lp.emd_wrap import emd_c_sparse

__all__ = ["sparse_exact_plan", "SPARSE_FROM", "SPARSE_MIN_DIM", "MAX_ITER_REACHED"]

SPARSE_FROM = 1024 * 1024  # n·m from which ExactOT solves sparsely (faster from about n = 1000) ...
SPARSE_MIN_DIM = 20  # ... in at least this many dimensions (slower on 5 whitened PCs)
_OPTIMAL, MAX_ITER_REACHED = 1, 3  # POT's result codes


def _north_west_corner(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The support of the north-west-corner plan: ``n + m − 1`` pairs carrying any marginals."""
    rows, cols = [], []
    i = j = 0
    ra, rb = float(a[0]), float(b[0])
    n, m = len(a), len(b)
    while i < n and j < m:
        rows.append(i)
        cols.append(j)
        if ra < rb:
            rb -= ra
            i += 1
            ra = float(a[i]) if i < n else 0.0
        else:
            ra -= rb
            j += 1
            rb = float(b[j]) if j < m else 0.0
    rows += list(range(i, n)) + [n - 1] * (m - j)  # rounding leftovers: keep every node covered
    cols += [m - 1] * (n - i) + list(range(j, m))
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def sparse_exact_plan(
    a: np.ndarray,
    b: np.ndarray,
    C: np.ndarray,
    *,
    k: int = 20,
    max_iter: int = 2**31 - 1,
    max_rounds: int = 50,
    tol: float = 1e-10,
) -> tuple[np.ndarray | None, int]:
    """Exact OT plan between histograms ``a``, ``b`` (positive, equal sums) for the cost ``C``.

    Parameters
    ----------
    a, b
        Weights of the sources and the targets (float64, all positive, equal sums).
    C
        Dense cost matrix, ``(len(a), len(b))``.
    k
        Candidate targets per source and sources per target in the first sparse solve.
    max_iter
        Iteration cap of each network-simplex solve.
    max_rounds
        Pricing rounds before giving up (the caller then solves densely).
    tol
        Reduced costs above ``-tol · max|C|`` count as non-negative.

    Returns
    -------
    The dense plan and POT's result code of the last solve (1: optimal; 3: ``max_iter``
    reached), or ``(None, code)`` when no proven optimum came out of ``max_rounds`` rounds.
    """
    n, m = C.shape
    C = np.ascontiguousarray(C, dtype=np.float64)
    kr, kc = min(k, m), min(k, n)
    near_r = np.argpartition(C, kr - 1, axis=1)[:, :kr]
    near_c = np.argpartition(C, kc - 1, axis=0)[:kc]
    nw_r, nw_c = _north_west_corner(a, b)
    key = np.unique(
        np.concatenate(
            [
                np.repeat(np.arange(n), kr) * m + near_r.ravel(),
                near_c.T.ravel() * m + np.repeat(np.arange(m), kc),
                nw_r * m + nw_c,
            ]
        )
    )
    flat = C.ravel()
    threshold = -tol * max(float(np.abs(C).max()), 1.0)
    warm: tuple = ()
    code = 0
    for _ in range(max_rounds):
        fs, ft, fv, _cost, u, v, code = emd_c_sparse(
            a,
            b,
            (key // m).astype(np.uint64),
            (key % m).astype(np.uint64),
            flat[key],
            max_iter,
            *warm,
        )
        if code != _OPTIMAL:
            return (None, code)
        reduced = C - u[:, None]
        reduced -= v[None, :]
        bad = np.flatnonzero(reduced.ravel() < threshold)
        if bad.size == 0:
            G = np.zeros((n, m))
            G[fs.astype(np.int64), ft.astype(np.int64)] = fv
            return G, code
        key = np.union1d(key, bad)
        warm = (u, v)
    return None, code
