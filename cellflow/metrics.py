r"""Distances between samples, and the normalised path energy.

- :func:`wasserstein`: exact :math:`W_1` (Euclidean cost) or :math:`W_2` (square root of the
  squared-Euclidean OT cost), POT's network simplex without an iteration cap.
- :func:`sinkhorn_divergence`: :math:`S_\varepsilon = \langle P_{xy},C_{xy}\rangle
  - \tfrac12\langle P_{xx},C_{xx}\rangle - \tfrac12\langle P_{yy},C_{yy}\rangle`.
- :func:`mmd`: unbiased squared MMD with a sum of RBF kernels.
- :func:`energy_distance`: :math:`2E\|X-Y\| - E\|X-X'\| - E\|Y-Y'\|`.
- :func:`normalized_path_energy`: :math:`|E\int_0^1\|v\|^2dt - W_2^2| / W_2^2`.

Large sets: ``max_samples`` subsamples each side (with ``seed``) before an exact solve, so
that no matrix larger than ``max_samples²`` is formed; the value returned is then an
estimate, and the functions say so through :func:`subsampled`.

Example
-------
>>> import torch
>>> from cellflow.metrics import wasserstein
>>> x = torch.zeros(5, 2); y = torch.ones(5, 2)
>>> round(wasserstein(x, y, p=2), 4), round(wasserstein(x, y, p=1), 4)
(1.4142, 1.4142)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import torch
from torch import Tensor

from .couplings import sinkhorn_log, squared_distances

__all__ = [
    "wasserstein",
    "sinkhorn_divergence",
    "mmd",
    "energy_distance",
    "normalized_path_energy",
    "path_energy",
    "subsample",
]

Array = Tensor | np.ndarray


def _as2d(x: Array) -> Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu().double()
    return x.reshape(x.shape[0], -1)


def subsample(x: Tensor, max_samples: int | None, seed: int = 0) -> Tensor:
    """At most ``max_samples`` rows of ``x``, drawn without replacement with ``seed``."""
    if max_samples is None or x.shape[0] <= max_samples:
        return x
    idx = np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)
    return x[torch.as_tensor(np.sort(idx))]


def wasserstein(
    x: Array,
    y: Array,
    p: int = 2,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    x_weights: Array | None = None,
) -> float:
    """Exact Wasserstein-``p`` distance (p = 1 or 2) between two empirical distributions.

    Parameters
    ----------
    x, y
        Samples, shape ``(n, ...)`` and ``(m, ...)``.
    p
        1 (Euclidean ground cost, POT ``emd2``) or 2.
    max_samples
        Subsample each side to at most this many points (with ``seed``) first.
    x_weights
        Non-negative weights of the rows of ``x`` (e.g. the masses of cells pushed by a
        growth-aware flow), normalised to sum to 1; default uniform. ``y`` is uniform.

    >>> wasserstein([[0.0], [2.0]], [[2.0]], p=1, x_weights=[0.0, 1.0])
    0.0
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}.")
    x, y = _as2d(x), _as2d(y)
    if x_weights is not None:
        w = np.asarray(x_weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != x.shape[0] or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"x_weights must be {x.shape[0]} finite, non-negative numbers with a positive sum."
            )
        if max_samples is not None and x.shape[0] > max_samples:
            idx = np.sort(
                np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)
            )
            x, w = x[torch.as_tensor(idx)], w[idx]
        a = w / w.sum()
    else:
        x = subsample(x, max_samples, seed)
        a = ot.unif(len(x))
    y = subsample(y, max_samples, seed + 1)
    C = squared_distances(x, y)
    if p == 1:
        C = C.sqrt_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cost, log = ot.emd2(a, ot.unif(len(y)), C.numpy(), numItermax=2**31 - 1, log=True)
    if log["result_code"] != 1:
        raise RuntimeError(f"exact OT failed: {log['warning']}")
    return float(cost) if p == 1 else math.sqrt(max(float(cost), 0.0))


def sinkhorn_divergence(
    x: Array,
    y: Array,
    eps: float = 1.0,
    *,
    tol: float = 1e-9,
    max_samples: int | None = None,
    seed: int = 0,
) -> float:
    r"""Debiased Sinkhorn divergence with squared Euclidean cost and regularisation ``eps``
    (the same definition as POT's ``empirical_sinkhorn_divergence``)."""
    x, y = subsample(_as2d(x), max_samples, seed), subsample(_as2d(y), max_samples, seed + 1)

    def loss(u, w):
        C = squared_distances(u, w)
        a = torch.full((len(u),), 1 / len(u), dtype=torch.float64)
        b = torch.full((len(w),), 1 / len(w), dtype=torch.float64)
        return float((sinkhorn_log(a, b, C, eps, tol=tol, max_iter=100000) * C).sum())

    return max(0.0, loss(x, y) - 0.5 * loss(x, x) - 0.5 * loss(y, y))


def _bandwidths(y: Tensor, bandwidths) -> list[float]:
    if bandwidths is not None:
        return [float(b) for b in bandwidths]
    d = torch.pdist(subsample(y, 1000)).median().item()
    d = d if d > 0 else 1.0
    return [d * s for s in (0.25, 0.5, 1.0, 2.0, 4.0)]


def mmd(
    x: Array, y: Array, bandwidths=None, *, max_samples: int | None = 5000, seed: int = 0
) -> float:
    r"""Unbiased squared maximum mean discrepancy with the kernel
    :math:`k(u,w) = \sum_h \exp(-\|u-w\|^2 / (2h^2))`.

    ``bandwidths`` default: the median pairwise distance of ``y`` times 1/4, 1/2, 1, 2, 4
    (so the kernel depends on the reference set only, and is the same for every
    prediction compared with it).
    """
    x, y = subsample(_as2d(x), max_samples, seed), subsample(_as2d(y), max_samples, seed + 1)
    hs = _bandwidths(y, bandwidths)

    def k(u, w):
        d2 = squared_distances(u, w)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(exx + eyy - 2 * kxy.mean())


def energy_distance(x: Array, y: Array, *, max_samples: int | None = 5000, seed: int = 0) -> float:
    r"""Energy distance :math:`2E\|X-Y\| - E\|X-X'\| - E\|Y-Y'\|` (V-statistic, ≥ 0)."""
    x, y = subsample(_as2d(x), max_samples, seed), subsample(_as2d(y), max_samples, seed + 1)
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def path_energy(field, traj) -> float:
    r""":math:`E\int\|v(t, x_t)\|^2 dt` along a :class:`~cellflow.flow.solvers.Trajectory`
    (trapezoidal rule on its time grid)."""
    with torch.no_grad():
        sq = torch.stack(
            [
                field(t, x).reshape(x.shape[0], -1).pow(2).sum(1).mean()
                for t, x in zip(traj.t, traj.xs)
            ]
        )
    return float(torch.trapezoid(sq, traj.t).abs())


def normalized_path_energy(energy: float, w2_squared: float) -> float:
    r"""NPE :math:`= |E\int\|v\|^2dt - W_2^2(q_0,q_1)| / W_2^2(q_0,q_1)`: 0 for the dynamic OT
    (straight, constant-speed) flow."""
    return abs(energy - w2_squared) / w2_squared


def velocity_cosine(V: np.ndarray, V_true: np.ndarray) -> np.ndarray:
    """Per-cell cosine similarity between two velocity arrays (rows are cells).

    >>> velocity_cosine(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [1.0, 0.0]]))
    array([1., 0.])
    """
    V, V_true = np.asarray(V, dtype=np.float64), np.asarray(V_true, dtype=np.float64)
    if V.shape != V_true.shape:
        raise ValueError(f"velocity arrays differ in shape: {V.shape} vs {V_true.shape}.")
    num = (V * V_true).sum(1)
    return num / (np.linalg.norm(V, axis=1) * np.linalg.norm(V_true, axis=1) + 1e-300)
