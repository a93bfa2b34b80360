r"""Soft assignment of transported points to observed cells: a sparse kNN kernel, and the
entropic kernel that fates land with.

A point :math:`y_i` pushed by the flow rarely lands exactly on an observed cell. It is spread
over its :math:`k` nearest observed cells :math:`x_j` with weights

.. math:: w_{ij} \propto \exp\!\big(-\lVert y_i - x_j\rVert^2 / (2 h_i^2)\big), \qquad
          h_i = \tfrac12\, \lVert y_i - x_{(k)}\rVert ,

normalised over :math:`j`, so every row is a probability distribution over the observed cells.
Memory is :math:`O(n k)`; no all-pairs matrix is formed.

:func:`kernel_landing` spreads each point over *all* observed cells with the entropic kernel
:math:`w_{ij} \propto \exp(-\lVert y_i - x_j\rVert^2/\varepsilon)`, with :math:`\varepsilon`
a fraction of the mean squared distance between the observed cells (scale-free, as moscot's
:math:`\varepsilon` on a mean-scaled cost), and returns only where the labels ``G`` of those cells
land, :math:`W G`, in chunks: its width is a distance, not a number of neighbours, so it does not
shrink as the data grow denser.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._types import whole_number

__all__ = ["knn_assignment", "kernel_landing", "landmark_rows"]


def knn_assignment(Y: np.ndarray, X: np.ndarray, k: int = 30) -> sparse.csr_matrix:
    """Row-stochastic sparse matrix (len(Y) × len(X)) spreading each ``Y[i]`` over its ``k``
    nearest rows of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> P = knn_assignment(np.array([[0.0], [10.0]]), np.array([[0.1], [9.0], [10.2]]), k=2)
    >>> P.shape, np.allclose(P.sum(1), 1), P[1].argmax()
    ((2, 3), True, 2)
    """
    from sklearn.neighbors import NearestNeighbors

    Y, X = np.asarray(Y, dtype=np.float64), np.asarray(X, dtype=np.float64)
    k = min(whole_number(k, "k", hint=" It is the number of neighbours a cell lands on."), len(X))
    if k < 1:
        raise ValueError("need at least one observed cell to assign to.")
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(Y)
    h = np.maximum(dist[:, -1:] / 2.0, 1e-12)
    logw = -0.5 * (dist / h) ** 2
    w = np.exp(logw - logw.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    rows = np.repeat(np.arange(len(Y)), k)
    return sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(Y), len(X)))


def landmark_rows(n: int, max_landmarks: int | None, seed: int = 0) -> np.ndarray | None:
    """The positions (sorted) of the ``max_landmarks`` of ``n`` observed cells that
    :func:`kernel_landing` lands on, drawn at random seeded by ``seed``; ``None`` when all ``n``
    are used. A caller that reads only these cells (and their labels) gets the same landing.

    >>> landmark_rows(10, 20) is None, landmark_rows(10, 3, seed=1).tolist()
    (True, [3, 5, 6])
    """
    if max_landmarks is None or n <= int(max_landmarks):
        return None
    rng = np.random.default_rng([int(seed), 7])
    return np.sort(rng.choice(n, int(max_landmarks), replace=False))


def kernel_landing(
    Y: np.ndarray,
    X: np.ndarray,
    G,
    eps: float,
    *,
    max_landmarks: int | None = None,
    seed: int = 0,
    chunk: int = 256,
    spread: float | None = None,
) -> np.ndarray:
    r"""Where the labels ``G`` of the observed cells ``X`` land from each point of ``Y``:
    :math:`(W G)_i` with :math:`W_{ij} = e^{-\lVert y_i - x_j\rVert^2/\varepsilon} / \sum_l
    e^{-\lVert y_i - x_l\rVert^2/\varepsilon}` and :math:`\varepsilon` = ``eps`` × the mean
    squared distance between the rows of ``X`` (:math:`2\sum_d \mathrm{Var}(X_{\cdot d})`).

    Parameters
    ----------
    Y, X
        Points (n × d) and observed cells (m × d), in the same units.
    G
        Labels or label mass of the observed cells (m × g; dense or sparse).
    eps
        The kernel's ε as a fraction of the mean squared distance (> 0).
    max_landmarks
        With more observed cells than this, the kernel runs on this many of them drawn at random
        (seeded by ``seed``), each standing for the cells left out near it: the estimate is a
        ratio of two sample sums, off by about :math:`0.5/\sqrt{n_\mathrm{eff}}` for the
        :math:`n_\mathrm{eff}` landmarks a point's kernel covers. ``None``: every cell.
    spread
        The total variance :math:`\sum_d \mathrm{Var}(X_{\cdot d})` that sets ε, when ``X`` is
        already a sample (:func:`landmark_rows`) of the cells it stands for; default ``X``'s own.
    chunk
        Rows of ``Y`` per block (memory a few ``chunk`` × m float32 values: 8 MB each for 8,192
        cells; small blocks stay in the processor's cache and run fastest). The arithmetic is
        float32 (weights relative to each row's nearest cell, so they never all underflow;
        shares of float32 sums, about 7 digits), the result float64.

    Returns
    -------
    ``W @ G`` as a float64 array (n × g); rows of a one-hot ``G`` sum to 1.

    Examples
    --------
    Two cells at -1 and +1 (mean squared distance 2, so ε = 0.1 × 2 = 0.2): a point at
    :math:`y` lands on the right one with probability :math:`1/(1 + e^{-4y/\varepsilon})`.

    >>> import numpy as np
    >>> X, G = np.array([[-1.0], [1.0]]), np.eye(2)
    >>> W = kernel_landing(np.array([[0.0], [0.05]]), X, G, 0.1)
    >>> np.round(W[:, 1], 4).tolist(), round(float(1 / (1 + np.exp(-4 * 0.05 / 0.2))), 4)
    ([0.5, 0.7311], 0.7311)
    """
    import torch

    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
        raise ValueError(
            f"eps must be a number > 0 (a fraction of the mean squared distance between the "
            f"cells landed on), got {eps!r}."
        )
    X = np.asarray(X, dtype=np.float64)
    if len(X) < 1:
        raise ValueError("need at least one observed cell to land on.")
    G = np.asarray(G.todense() if hasattr(G, "todense") else G, dtype=np.float64)
    spread = float(X.var(0).sum()) if spread is None else float(spread)
    scale = max(float(eps) * 2.0 * spread, 1e-12)
    pick = landmark_rows(len(X), max_landmarks, seed)
    if pick is not None:
        X, G = X[pick], G[pick]
    centre = X.mean(0)  # distances from centred coordinates lose no float32 digits to an offset
    Xt = torch.from_numpy((X - centre).astype(np.float32))
    Gt = torch.from_numpy(np.c_[G, np.ones(len(G))].astype(np.float32))  # labels, weights' sum
    x2 = (Xt * Xt).sum(1)
    out = np.empty((len(Y), G.shape[1]))
    Y = np.asarray(Y, dtype=np.float64) - centre
    for s in range(0, len(Y), int(chunk)):
        y = torch.from_numpy(Y[s : s + int(chunk)].astype(np.float32))
        d2 = ((y * y).sum(1)[:, None] + x2[None, :] - 2.0 * (y @ Xt.T)).clamp_min_(0.0)
        WG = (torch.exp(-(d2 - d2.min(1, keepdim=True).values) / scale) @ Gt).double()
        out[s : s + len(y)] = (WG[:, :-1] / WG[:, -1:]).numpy()
    return out
