r"""Data-induced Riemannian metrics for metric flow matching (:mod:`cellflow.flow.geodesics`).

Both are diagonal, :math:`G(x) = \operatorname{diag}\big(1/(h_d(x) + \varepsilon)\big)`, with
:math:`h` of order 1 on the cells and :math:`h \to 0` away from them, so that moving through
empty space costs up to :math:`1/\varepsilon` per unit speed² and moving along the cells about 1.
They differ in :math:`h`:

- :class:`RBFMetric` (the default): an isotropic density proxy :math:`h(x)`, the same for every
  feature, from a fitted sum of Gaussian bumps at k-means centres;
- :class:`LANDMetric` (Arvanitidis et al. 2016, the locally adaptive normal distribution, as
  in Kapuśniak et al. 2024): :math:`h_d(x)` is the local variance of the cells along feature
  :math:`d` around :math:`x`, so paths are also cheap *along* the directions in which nearby cells
  spread and dear across them.

:func:`fit_metric` builds either by name. ``energy(x, v)`` is :math:`v^\top G(x) v`, the
integrand that :func:`cellflow.flow.geodesics.fit_geodesic_interpolant` minimises.

Example
-------
>>> import torch
>>> from cellflow.flow.riemannian_metrics import fit_metric
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(500, 2, generator=g) * torch.tensor([1.0, 0.1])  # spread along x, thin in y
>>> land = fit_metric(X, "land", gamma=0.3)
>>> v_along, v_across = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
>>> bool(land.energy(X[:1] * 0, v_along) < land.energy(X[:1] * 0, v_across))
True
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import torch
from torch import Tensor

from .._defaults import LAND_GAMMA, METRIC_EPS
from .._types import MetricKind

__all__ = ["RBFMetric", "LANDMetric", "fit_metric", "METRIC_KINDS"]

MAX_METRIC_CELLS = 4000  # cells a metric is fitted on (a seeded subsample beyond that)


_UNDERFLOW = 87.0  # exp(-87) = 1.6e-38, just above float32's smallest normal number


def _gaussian(a: Tensor) -> Tensor:
    r""":math:`e^{-a}` for :math:`a \ge 0`, with 0 wherever :math:`e^{-a}` falls below float32's
    smallest normal number (:math:`a > 87`). The same values as ``torch.exp(-a)`` up to those
    subnormal ones, but fast: on the CPU ``torch.exp`` of arguments past its underflow bound is
    many times slower, and LAND's narrow kernels put a large share of the weights there."""
    return torch.where(a < _UNDERFLOW, torch.exp(-a.clamp_max(_UNDERFLOW)), 0.0)


def _as_cells(X, name: str) -> np.ndarray:
    X = np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"{name} needs at least 2 cells as an (n, d) array, got shape {X.shape}.")
    return X


class RBFMetric:
    r"""The diagonal metric :math:`G(x) = I/(h(x)+\varepsilon)` of a point cloud, with
    :math:`h` a sum of Gaussian bumps (see :mod:`cellflow.flow.geodesics`). Build it with
    :meth:`fit`."""

    def __init__(
        self, centers: Tensor, bandwidths: Tensor, weights: Tensor, eps: float = METRIC_EPS
    ):
        self.centers, self.bandwidths, self.weights = centers, bandwidths, weights
        self.eps = float(eps)

    @classmethod
    def fit(
        cls,
        X: Tensor | np.ndarray,
        n_centers: int = 100,
        kappa: float = 1.0,
        eps: float = METRIC_EPS,
        max_cells: int = MAX_METRIC_CELLS,
        seed: int = 0,
    ) -> RBFMetric:
        """Fit centres (k-means), bandwidths (κ × cluster RMS spread) and NNLS weights.

        Parameters
        ----------
        X
            Cells, shape ``(n, d)``.
        n_centers
            Number of RBF centres :math:`K` (fewer when there are fewer distinct cells).
        kappa
            Bandwidth multiplier κ.
        eps
            ε, which caps the cost of leaving the data at :math:`1/\\varepsilon` per unit speed².
            The paper's 1e-2 pulls harder, and predicted held-out cells worse (method guide,
            ``tutorials/choosing_a_method.md``, "OT-MFM").
        max_cells
            Fit on a seeded subsample of at most this many cells.
        seed
            Seeds the subsample and k-means.
        """
        from scipy.optimize import nnls
        from sklearn.cluster import KMeans

        X = _as_cells(X, "RBFMetric.fit")
        rng = np.random.default_rng(seed)
        if len(X) > max_cells:
            X = X[rng.choice(len(X), max_cells, replace=False)]
        k = int(min(n_centers, len(np.unique(X, axis=0))))
        km = KMeans(k, n_init=1, random_state=seed).fit(X)
        spread = np.array(
            [
                np.sqrt(((X[km.labels_ == j] - km.cluster_centers_[j]) ** 2).mean())
                if (km.labels_ == j).sum() > 1
                else 0.0
                for j in range(k)
            ]
        )
        keep = spread > 0
        if not keep.any():
            raise ValueError("every k-means cluster holds a single cell; use fewer centres.")
        centers = torch.tensor(km.cluster_centers_[keep], dtype=torch.float32)
        bandwidths = torch.tensor(kappa * spread[keep], dtype=torch.float32)
        features = (
            cls(centers, bandwidths, torch.ones(int(keep.sum())), eps)
            .features(torch.tensor(X, dtype=torch.float32))
            .double()
            .numpy()
        )
        w, _ = nnls(features, np.ones(len(X)))
        return cls(centers, bandwidths, torch.tensor(w, dtype=torch.float32), eps)

    def features(self, x: Tensor) -> Tensor:
        r""":math:`\Phi_{ik} = \exp(-\lVert x_i - c_k\rVert^2 / (2 b_k^2))`, shape ``(n, K)``."""
        d2 = torch.cdist(x.to(self.centers.dtype), self.centers).pow(2)
        return _gaussian(d2 / (2 * self.bandwidths.pow(2)))

    def h(self, x: Tensor) -> Tensor:
        """The data density proxy :math:`h(x)`, about 1 on the cells, shape ``(n,)``."""
        return self.features(x) @ self.weights

    def energy(self, x: Tensor, v: Tensor) -> Tensor:
        r"""Squared metric norm :math:`v^\top G(x) v = \lVert v\rVert^2 / (h(x)+\varepsilon)`."""
        return v.pow(2).sum(-1) / (self.h(x) + self.eps)


class LANDMetric:
    r"""The LAND metric of a point cloud :math:`\{x_n\}_{n=1}^N` (the landmarks):

    .. math:: h_d(x) = \frac{1}{Z N} \sum_{n=1}^N
              \exp\!\Big(-\frac{\lVert x - x_n\rVert^2}{2\gamma^2}\Big)
              (x_{n,d} - x_d)^2, \qquad G(x) = \operatorname{diag}\Big(\frac{1}{h_d(x) +
              \varepsilon}\Big),

    where :math:`Z` is the median of the unscaled :math:`h_d` over the cells and features, so that
    :math:`h` is about 1 on the data as for :class:`RBFMetric` and ε means the same for both. (The
    MFM reference code sums over the landmarks without :math:`Z`; that is the same metric up to
    a constant factor, with its ρ equal to :math:`\varepsilon Z N`.) Build it with :meth:`fit`.
    """

    def __init__(
        self, landmarks: Tensor, gamma: float, eps: float = METRIC_EPS, scale: float = 1.0
    ):
        if not gamma > 0:
            raise ValueError(f"LAND's kernel width gamma must be positive, got {gamma}.")
        self.landmarks = landmarks.to(torch.float32)
        self.gamma, self.eps, self.scale = float(gamma), float(eps), float(scale)
        self._sq = self.landmarks.pow(2)
        self._sq_norm = self._sq.sum(1)

    @classmethod
    def fit(
        cls,
        X: Tensor | np.ndarray,
        gamma: float | str = LAND_GAMMA,
        eps: float = METRIC_EPS,
        max_cells: int = MAX_METRIC_CELLS,
        seed: int = 0,
    ) -> LANDMetric:
        """Keep (a seeded subsample of at most ``max_cells`` of) the cells as landmarks and set
        :math:`Z` on up to 1,000 of them.

        Parameters
        ----------
        X
            Cells, shape ``(n, d)``, in the units the flow trains in.
        gamma
            Kernel width γ: the neighbourhood whose spread sets :math:`h`, in the units of ``X``
            (larger smooths the metric towards a constant). ``"auto"`` (default): the median
            distance from a landmark to its nearest other landmark, measured on up to 1,000 of
            them, so that γ follows the spacing of the cells. The fitted value is ``.gamma``.
        eps
            ε, as for :class:`RBFMetric`.
        max_cells, seed
            Subsample size and its seed.
        """
        X = _as_cells(X, "LANDMetric.fit")
        rng = np.random.default_rng(seed)
        if len(X) > max_cells:
            X = X[rng.choice(len(X), max_cells, replace=False)]
        landmarks = torch.tensor(X, dtype=torch.float32)
        probe = landmarks[rng.choice(len(X), min(len(X), 1000), replace=False)]
        nn = float(torch.cdist(probe, landmarks).topk(2, largest=False).values[:, 1].median())
        if isinstance(gamma, str):
            if gamma != "auto":
                raise ValueError(f"LAND's gamma is a positive number or 'auto', got {gamma!r}.")
            if not nn > 0:
                raise ValueError(
                    "LANDMetric.fit with gamma='auto': most cells have an identical twin, so the "
                    "distance between neighbours is 0; pass a positive gamma."
                )
            gamma = nn
        metric = cls(landmarks, gamma, eps)
        z = float(metric.h(probe).median())
        if not z > 0:
            raise ValueError(
                f"the cells have no neighbours within gamma={gamma}: raise gamma, e.g. to about "
                "the "
                f"median distance between neighbouring cells here, {nn:.3g} (in the "
                "standardised units; gamma='auto' uses it)."
            )
        metric.scale = z
        return metric

    def h(self, x: Tensor) -> Tensor:
        r""":math:`h_d(x)`, shape ``(n, d)``: the local spread of the landmarks along each feature.
        Expanded as :math:`W X^{\circ 2} - 2x \circ (W X) + x^{\circ 2} \circ W\mathbf 1`, so no
        ``(n, N, d)`` array is formed."""
        x = x.to(torch.float32)
        d2 = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.landmarks.T + self._sq_norm).clamp_min(0)
        w = _gaussian(d2 / (2 * self.gamma**2))
        spread = w @ self._sq - 2 * x * (w @ self.landmarks) + x.pow(2) * w.sum(1, keepdim=True)
        return spread.clamp_min(0) / (len(self.landmarks) * self.scale)

    def energy(self, x: Tensor, v: Tensor) -> Tensor:
        r"""Squared metric norm :math:`\sum_d v_d^2 / (h_d(x) + \varepsilon)`."""
        return (v.pow(2) / (self.h(x) + self.eps)).sum(-1)


METRIC_KINDS = {"rbf": RBFMetric, "land": LANDMetric}
assert tuple(METRIC_KINDS) == get_args(MetricKind)


def fit_metric(
    X: Tensor | np.ndarray, kind: MetricKind = "rbf", **kwargs
) -> RBFMetric | LANDMetric:
    """Fit the metric ``kind`` (``"rbf"`` or ``"land"``) to the cells ``X``; ``kwargs`` go to
    its ``fit`` (:meth:`RBFMetric.fit`: ``n_centers, kappa``; :meth:`LANDMetric.fit`:
    ``gamma``; both: ``eps, max_cells, seed``)."""
    if kind not in METRIC_KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; choose from {sorted(METRIC_KINDS)}.")
    return METRIC_KINDS[kind].fit(X, **kwargs)
