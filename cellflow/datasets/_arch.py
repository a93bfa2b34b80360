r"""The *arch*: a three-time-point course along a half circle, after the synthetic benchmark of
metric flow matching (Kapuśniak et al. 2024, "Arch"), where straight paths leave the data.

Each cell has a position :math:`s \in [0, 1]` along the arc and sits at angle
:math:`\theta = \pi (1 - s)` and radius :math:`r = 1 + \varepsilon`, :math:`\varepsilon \sim
\mathcal N(0, \text{noise}^2)`:

.. math:: x = (r \cos\theta,\; r \sin\theta).

- time 0: :math:`s = |z|`, :math:`z \sim \mathcal N(0, (2\pi)^{-2})`: near :math:`(-1, 0)`;
- time 2: :math:`s = 1 - |z|`: near :math:`(1, 0)`;
- time 1: the midpoints :math:`(s_0 + s_2) / 2` of the exact OT coupling of the positions at
  times 0 and 2 (in one dimension, the sorted matching): near the top, :math:`(0, 1)`.

The straight line between the two ends runs under the arch, through no data, so OT-CFM puts the
held-out time 1 about a radius too low; a metric that bends paths towards the cells can recover
it only from the shape of the two ends. ``cellflow bench arch`` scores both.

With ``n_dims > 2`` the arch is embedded in more dimensions, as a curve in a PCA would be: the
cells get ``n_dims - 2`` further coordinates, each :math:`\mathcal N(0, \text{noise}^2)`, and all
coordinates are turned by one orthogonal matrix :math:`Q` (Haar-random, drawn from ``n_dims``
alone, so that every draw of the same width shares it): :math:`x = Q\,(x_{\text{arch}}, \eta)`.

Example
-------
>>> from cellflow.datasets import arch_time_course
>>> adata = arch_time_course(300, seed=0)
>>> adata.obsm["X_arch"].shape, sorted(adata.obs["time"].unique().tolist())
((900, 2), [0, 1, 2])
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import ortho_group

__all__ = ["arch_time_course"]


def arch_time_course(
    n_cells: int = 5000, *, noise: float = 0.1, n_dims: int = 2, seed: int = 0
) -> ad.AnnData:
    """Draw the arch: ``n_cells`` cells at each of the times 0, 1 and 2 (module docstring).

    Parameters
    ----------
    n_cells
        Cells per time point.
    noise
        Standard deviation of the radius around 1 (and of each coordinate added by ``n_dims``).
    n_dims
        Width of the representation: 2 (the plane of the arch), or more (module docstring).
    seed
        Seeds every draw.

    Returns
    -------
    A new AnnData with no ``X`` and

    - ``obs["time"]``: 0, 1 or 2;
    - ``obs["arc_position"]``: :math:`s`, the position along the arc (0 at :math:`(-1, 0)`, 1 at
      :math:`(1, 0)`);
    - ``obsm["X_arch"]``: the coordinates, ``n_dims`` columns;
    - ``uns["arch"]``: ``n_cells``, ``noise``, ``n_dims`` and ``seed``, and for ``n_dims > 2``
      ``rotation``, the matrix :math:`Q` (the arch's plane is spanned by its first two columns).
    """
    if n_cells < 1:
        raise ValueError(f"n_cells must be at least 1, got {n_cells}.")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative, got {noise}.")
    if int(n_dims) != n_dims or n_dims < 2:
        raise ValueError(
            f"n_dims must be an integer of at least 2 (the arch's plane), got {n_dims}."
        )
    n_dims = int(n_dims)
    rng = np.random.default_rng(seed)
    s0 = np.abs(rng.normal(0.0, 1 / (2 * np.pi), n_cells))
    s2 = 1.0 - np.abs(rng.normal(0.0, 1 / (2 * np.pi), n_cells))
    s1 = (
        np.sort(s0) + np.sort(s2)
    ) / 2  # exact OT between equal-weight samples on a line: sorted pairs
    s1 = s1[rng.permutation(n_cells)]
    s = np.concatenate([s0, s1, s2])
    angle = np.pi * (1.0 - s)
    radius = 1.0 + rng.normal(0.0, noise, len(s))
    obs = pd.DataFrame(
        {"time": np.repeat([0, 1, 2], n_cells), "arc_position": s},
        index=[f"cell{i}" for i in range(len(s))],
    )
    adata = ad.AnnData(obs=obs)
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    adata.uns["arch"] = {
        "n_cells": int(n_cells),
        "noise": float(noise),
        "n_dims": n_dims,
        "seed": int(seed),
    }
    if n_dims > 2:
        Q = ortho_group.rvs(
            n_dims, random_state=np.random.default_rng(n_dims)
        )  # Haar, shared by each width
        X = np.hstack([X, rng.normal(0.0, noise, (len(X), n_dims - 2))]) @ Q.T
        adata.uns["arch"]["rotation"] = Q
    adata.obsm["X_arch"] = X
    return adata
