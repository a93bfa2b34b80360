r"""Soft assignment of transported points to observed cells (a sparse kNN kernel).

A point :math:`y_i` pushed by the flow rarely lands exactly on an observed cell. It is spread
over its :math:`k` nearest observed cells :math:`x_j` with weights

.. math:: w_{ij} \propto \exp\!\big(-\lVert y_i - x_j\rVert^2 / (2 h_i^2)\big), \qquad
          h_i = \tfrac12\, \lVert y_i - x_{(k)}\rVert ,

normalised over :math:`j`, so every row is a probability distribution over the observed cells.
Memory is :math:`O(n k)`; no all-pairs matrix is formed.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._types import whole_number

__all__ = ["knn_assignment"]


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
