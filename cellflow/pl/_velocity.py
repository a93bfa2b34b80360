r"""The projected velocity field as streamlines or arrows on a regular grid.

Arrows drawn at single cells are noisy: each is one cell's kNN projection. Averaged over a
grid they show the field. At a grid point :math:`g` the field is the Gaussian-weighted mean of
the velocities of its :math:`k` nearest cells,

.. math:: \bar v(g) = \frac{\sum_i w_i v_i}{\sum_i w_i}, \qquad
          w_i = \exp\!\Big(-\frac{\lVert g - e_i\rVert^2}{2h^2}\Big),

with :math:`h` = ``smooth`` grid spacings, and :math:`\rho(g) = \sum_i w_i` its density.
Grid points with :math:`\rho` below ``min_density`` times the 99th percentile of
:math:`\rho` over the grid are left empty, so no field is drawn where there are no cells.
(scVelo's ``velocity_embedding_grid`` and ``_stream`` smooth the same way.)

Example
-------
>>> import numpy as np
>>> from cellflow.pl import velocity_grid
>>> E = np.random.default_rng(0).uniform(-1, 1, size=(2000, 2))
>>> grid = velocity_grid(E, np.tile([1.0, 0.5], (2000, 1)), grid_size=20)
>>> bool(np.allclose(grid.U[grid.inside], 1.0) and np.allclose(grid.V[grid.inside], 0.5))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._plots import _axes, _category_colors, _finish

__all__ = ["VelocityGrid", "velocity_grid", "velocity"]


@dataclass
class VelocityGrid:
    """A field averaged on a regular grid: coordinates ``x`` (``nx``) and ``y`` (``ny``), the
    components ``U``, ``V`` and the kernel ``density``, each ``(ny, nx)`` (NaN outside), and
    ``inside``, the grid points with enough cells."""

    x: np.ndarray
    y: np.ndarray
    U: np.ndarray
    V: np.ndarray
    density: np.ndarray
    inside: np.ndarray


def velocity_grid(
    E: np.ndarray,
    V: np.ndarray,
    *,
    grid_size: int = 40,
    smooth: float = 0.5,
    n_neighbors: int | None = None,
    min_density: float = 0.05,
) -> VelocityGrid:
    """Average the 2-D velocities ``V`` of cells at ``E`` (both ``(n, 2)``) on a regular grid.

    Parameters
    ----------
    grid_size
        About this many grid points along the longer axis (plus a 2 % margin); the other axis
        gets the same spacing.
    smooth
        Kernel width :math:`h` in grid spacings.
    n_neighbors
        Cells averaged per grid point (default: ``n // 50``, between 10 and 300).
    min_density
        Grid points whose density is below this fraction of the grid's 99th percentile are
        left empty (NaN, ``inside`` False).
    """
    from scipy.spatial import cKDTree

    E, V = np.asarray(E, dtype=np.float64), np.asarray(V, dtype=np.float64)
    if E.ndim != 2 or E.shape[1] < 2 or V.shape[0] != E.shape[0] or V.ndim != 2 or V.shape[1] < 2:
        raise ValueError(
            f"E and V must be (n, 2) arrays of the same cells, got {E.shape} and {V.shape}."
        )
    E, V = E[:, :2], V[:, :2]
    ok = np.isfinite(E).all(1) & np.isfinite(V).all(1)
    if ok.sum() < 2:
        raise ValueError("fewer than 2 cells with finite coordinates and velocities.")
    E, V = E[ok], V[ok]
    if grid_size < 2 or not smooth > 0 or not 0 <= min_density < 1:
        raise ValueError(
            f"need grid_size >= 2, smooth > 0 and 0 <= min_density < 1, got {grid_size}, {smooth}, "
            f"{min_density}."
        )
    lo, hi = E.min(0), E.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    step = span.max() / (grid_size - 1)
    pad = 0.02 * span
    x = np.arange(lo[0] - pad[0], hi[0] + pad[0] + step / 2, step)
    y = np.arange(lo[1] - pad[1], hi[1] + pad[1] + step / 2, step)
    gx, gy = np.meshgrid(x, y)
    G = np.column_stack([gx.ravel(), gy.ravel()])
    n = len(E)
    k = min(n, int(np.clip(n // 50, 10, 300)) if n_neighbors is None else int(n_neighbors))
    d, idx = cKDTree(E).query(G, k=k)
    d, idx = d.reshape(len(G), k), idx.reshape(len(G), k)
    h = smooth * step
    w = np.exp(-0.5 * (d / h) ** 2)
    rho = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.einsum("gk,gkc->gc", w, V[idx]) / rho[:, None]
    inside = (rho >= min_density * np.percentile(rho, 99)) & (rho > 0)
    avg[~inside] = np.nan
    shape = gx.shape
    return VelocityGrid(
        x,
        y,
        avg[:, 0].reshape(shape),
        avg[:, 1].reshape(shape),
        rho.reshape(shape),
        inside.reshape(shape),
    )


def velocity(
    adata,
    basis: str = "umap",
    *,
    vkey: str = "velocity",
    kind: str = "stream",
    color: str | None = None,
    grid_size: int = 40,
    smooth: float = 0.5,
    min_density: float = 0.05,
    density: float = 1.5,
    title: str | None = None,
    ax=None,
    show: bool | None = None,
    save: str | None = None,
):
    """The velocity field projected onto an embedding, as streamlines or grid arrows, over
    the cells.

    Parameters
    ----------
    adata
        With ``obsm[f"X_{basis}"]`` and ``obsm[f"{vkey}_{basis}"]``
        (:func:`cellflow.tl.velocity_embedding`; a 2-D representation's own velocity,
        e.g. ``basis="spring"`` with ``obsm["velocity_spring"]``, works as it is).
    kind
        ``"stream"`` (matplotlib's ``streamplot``) or ``"grid"`` (one arrow per grid point,
        scaled so that the 95th-percentile arrow is one grid spacing long).
    color
        An ``obs`` column to colour the cells by: numeric (a colour bar) or categorical
        (scanpy's ``uns[f"{color}_colors"]`` when present); default grey.
    grid_size, smooth, min_density
        The grid average (:func:`velocity_grid`).
    density
        Streamline density (``streamplot``'s ``density``).

    Returns
    -------
    The axes, or ``None`` with ``show=True``. The AnnData is not changed.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    ekey, vk = f"X_{basis}", f"{vkey}_{basis}"
    for key, fix in [
        (ekey, f"compute the embedding first (e.g. sc.tl.{basis})"),
        (
            vk,
            "run cf.tl.velocity(adata, model) and "
            f"cf.tl.velocity_embedding(adata, basis={basis!r})",
        ),
    ]:
        if key not in adata.obsm:
            raise KeyError(f"adata.obsm has no {key!r}; {fix}.")
    if kind not in ("stream", "grid"):
        raise ValueError(f"kind must be 'stream' or 'grid', got {kind!r}.")
    if color is not None and color not in adata.obs:
        raise KeyError(f"adata.obs has no column {color!r}; columns: {list(adata.obs.columns)}.")
    E = np.asarray(adata.obsm[ekey], dtype=np.float64)[:, :2]
    grid = velocity_grid(
        E,
        np.asarray(adata.obsm[vk], dtype=np.float64),
        grid_size=grid_size,
        smooth=smooth,
        min_density=min_density,
    )
    fig, ax = _axes(ax)
    kw = dict(s=5, linewidths=0, alpha=0.5, zorder=1)
    if color is None:
        ax.scatter(E[:, 0], E[:, 1], c="lightgrey", **kw)
    elif isinstance(adata.obs[color].dtype, pd.CategoricalDtype):
        for cat, c in _category_colors(adata, color).items():
            at = (adata.obs[color].astype(str) == cat).to_numpy()
            ax.scatter(E[at, 0], E[at, 1], color=c, label=cat, **kw)
        ax.legend(
            markerscale=3, frameon=False, fontsize=8, bbox_to_anchor=(1.0, 1.0), loc="upper left"
        )
    else:
        sc_ = ax.scatter(
            E[:, 0], E[:, 1], c=np.asarray(adata.obs[color], dtype=float), cmap="viridis", **kw
        )
        fig.colorbar(sc_, ax=ax, label=color, shrink=0.8)
    if kind == "stream":
        speed = np.hypot(grid.U, grid.V)
        lw = (
            np.nan_to_num(0.6 + 1.4 * speed / np.nanmax(speed), nan=0.6)
            if np.isfinite(speed).any() and np.nanmax(speed) > 0
            else 1.0
        )
        ax.streamplot(
            grid.x,
            grid.y,
            np.ma.masked_invalid(grid.U),
            np.ma.masked_invalid(grid.V),
            color="black",
            linewidth=lw,
            density=density,
            arrowsize=1.0,
            zorder=2,
        )
    else:
        gx, gy = np.meshgrid(grid.x, grid.y)
        m = grid.inside
        step = min(grid.x[1] - grid.x[0], grid.y[1] - grid.y[0])
        speed = np.hypot(grid.U[m], grid.V[m])
        top = np.percentile(speed, 95) if speed.size and np.percentile(speed, 95) > 0 else 1.0
        # in data units, so that the 95th-percentile arrow spans one grid spacing
        ax.quiver(
            gx[m],
            gy[m],
            grid.U[m],
            grid.V[m],
            angles="xy",
            scale_units="xy",
            scale=top / step,
            color="black",
            width=0.003,
            zorder=2,
        )
    ax.set_xlabel(f"{basis.upper()} 1")
    ax.set_ylabel(f"{basis.upper()} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"velocity on {basis.upper()}" if title is None else title)
    plt.tight_layout()
    return _finish(fig, ax, show, save)
