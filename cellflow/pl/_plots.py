"""Plots in scanpy's style: each takes ``ax=``, ``show=``, ``save=`` and returns the axes
when not shown."""

from __future__ import annotations

import numpy as np

from .._io import save_figure


def _category_colors(adata, key: str) -> dict:
    """Colour of each category of ``obs[key]`` (as strings): scanpy's ``uns[f"{key}_colors"]``
    where it has one for that category, else the tab10 colour of its position."""
    import matplotlib.pyplot as plt

    cats = [str(c) for c in adata.obs[key].astype("category").cat.categories]
    palette = list(adata.uns.get(f"{key}_colors", []))
    return {c: palette[i] if i < len(palette) else plt.cm.tab10(i % 10) for i, c in enumerate(cats)}


def _finish(fig, ax, show: bool | None, save: str | None):
    import matplotlib.pyplot as plt

    if save:
        save_figure(fig, save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return ax


def _axes(ax, figsize=(5, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


_MAX_REFERENCE = 20000


def _to_embedding(
    adata, model, Y: np.ndarray, basis: str | None, k: int = 10
) -> tuple[np.ndarray, np.ndarray, str]:
    """Observed cells and points ``Y`` (any leading shape, last axis the representation) in 2-D:
    the representation's first two columns, or ``obsm[f"X_{basis}"]`` through a kNN average
    of the observed cells' embedding coordinates. On ``X`` (sparse or on disk) only the first
    two columns, or a seeded subsample of at most 20,000 reference cells, are read dense."""
    from ..course.store import RowSource, read_representation

    on_x = model.course.use_rep == "X"
    if basis is None:
        from ..tl._common import rep_basis

        X2 = read_representation(adata, model.course.use_rep, min(2, model.course.n_pcs))
        return X2, Y[..., :2], rep_basis(model.course.use_rep).upper()  # e.g. "PCA 1", "SPRING 2"
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(f"adata.obsm has no 'X_{basis}'; compute it first or pass basis=None.")
    from sklearn.neighbors import KNeighborsRegressor

    E = np.asarray(adata.obsm[f"X_{basis}"], dtype=np.float64)[:, :2]
    if on_x and adata.n_obs > _MAX_REFERENCE:
        ref = np.sort(np.random.default_rng(0).choice(adata.n_obs, _MAX_REFERENCE, replace=False))
        X = RowSource.from_adata(adata, "X", model.course.n_pcs).rows(ref)
    else:
        ref, X = slice(None), read_representation(adata, model.course.use_rep, model.course.n_pcs)
    reg = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(
        model.course.scaler.forward(X), E[ref]
    )
    flat = Y.reshape(-1, Y.shape[-1])
    return (
        E,
        reg.predict(model.course.scaler.forward(flat)).reshape(*Y.shape[:-1], 2),
        basis.upper(),
    )


def trajectories(
    adata,
    model,
    *,
    t_from: float | None = None,
    t_to: float | None = None,
    n_cells: int = 200,
    n_points: int = 50,
    basis: str | None = None,
    color: str | None = None,
    seed: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | None = None,
):
    """Trajectories of ``n_cells`` cells from ``t_from`` to ``t_to`` (default: first to last
    time) over the observed cells coloured by time.

    ``basis=None`` draws the representation's first two components; ``basis="umap"`` maps
    every trajectory point onto ``obsm["X_umap"]`` by a kNN average of the observed cells'
    coordinates (an approximation: UMAP has no inverse map). Black dots mark the start, the
    coloured line the path, white dots the end.
    """
    import matplotlib.pyplot as plt

    from ..tl._common import cell_times, check_model

    check_model(adata, model)
    t_from = model.course.times[0] if t_from is None else t_from
    t_to = model.course.times[-1] if t_to is None else t_to
    X0 = model.course.cells_at(t_from)
    rng = np.random.default_rng(seed)
    X0 = X0[rng.choice(len(X0), min(n_cells, len(X0)), replace=False)]
    traj = model.push(X0, t_from, t_to, n_points=n_points)
    E, T, label = _to_embedding(adata, model, traj, basis)
    fig, ax = _axes(ax)
    c = cell_times(adata, model) if color is None else adata.obs[color]
    sc_ = ax.scatter(E[:, 0], E[:, 1], c=c, s=4, cmap="viridis", alpha=0.5, linewidths=0)
    if color is None:
        fig.colorbar(sc_, ax=ax, label=model.course.time_key, shrink=0.8)
    for i in range(T.shape[1]):
        ax.plot(T[:, i, 0], T[:, i, 1], color="black", lw=0.4, alpha=0.35)
    ax.scatter(T[0, :, 0], T[0, :, 1], s=6, c="black", zorder=3)
    ax.scatter(
        T[-1, :, 0], T[-1, :, 1], s=6, c="white", edgecolors="black", linewidths=0.3, zorder=3
    )
    ax.set_xlabel(f"{label} 1")
    ax.set_ylabel(f"{label} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{model.method.upper()} flow, {model.course.time_key} {t_from:g} → {t_to:g}")
    plt.tight_layout()
    return _finish(fig, ax, show, save)


def prediction(
    adata,
    model,
    predicted,
    *,
    time: float,
    basis: str | None = None,
    ax=None,
    show: bool | None = None,
    save: str | None = None,
):
    """Predicted cells (``cf.tl.interpolate`` output) over the observed cells at ``time``
    (held out or not), with all other cells in grey."""
    import matplotlib.pyplot as plt

    from ..course.store import read_representation
    from ..tl._common import cell_times, check_model

    check_model(adata, model)
    Y = read_representation(predicted, model.course.use_rep, model.course.n_pcs)
    E, P, label = _to_embedding(adata, model, Y, basis)
    at = cell_times(adata, model) == time
    fig, ax = _axes(ax)
    ax.scatter(E[~at, 0], E[~at, 1], s=3, c="lightgrey", linewidths=0, label="other times")
    ax.scatter(
        E[at, 0],
        E[at, 1],
        s=5,
        c="tab:blue",
        alpha=0.6,
        linewidths=0,
        label=f"observed at {time:g}",
    )
    ax.scatter(P[:, 0], P[:, 1], s=5, c="tab:red", alpha=0.6, linewidths=0, label="predicted")
    ax.legend(markerscale=3, frameon=False, fontsize=8)
    ax.set_xlabel(f"{label} 1")
    ax.set_ylabel(f"{label} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{model.course.time_key} {time:g}: predicted vs observed")
    plt.tight_layout()
    return _finish(fig, ax, show, save)


def evaluation(
    df, *, metric: str = "w1", ax=None, show: bool | None = None, save: str | None = None
):
    """Bar chart of a held-out evaluation table (:func:`cellflow.evaluate_holdout`): mean ±
    std over seeds of ``metric`` per method and held-out time; lower is better."""
    import matplotlib.pyplot as plt

    if metric not in df:
        raise KeyError(f"the table has no column {metric!r}; columns: {list(df.columns)}.")
    g = df.groupby(["held_out_time", "method"], sort=False)[metric]
    mean, std = g.mean().unstack(), g.std().unstack().fillna(0.0)
    order = mean.mean(0).sort_values().index
    mean, std = mean[order], std[order]
    # the bars get at least 3 inches and the legend, outside on the right, 2.5 more, so that
    # tight_layout never squeezes the axes away (one held-out time, several methods)
    fig, ax = _axes(ax, figsize=(2.5 + max(3.0, 0.8 + 0.35 * len(mean) * len(order)), 4))
    width = 0.8 / len(order)
    x = np.arange(len(mean))
    for i, m in enumerate(order):
        ax.bar(x + i * width - 0.4 + width / 2, mean[m], width, yerr=std[m], label=m, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{t:g}" for t in mean.index])
    ax.set_xlabel("held-out time point")
    ax.set_ylabel(f"{metric.upper()} to held-out cells (lower is better)")
    ax.legend(frameon=False, fontsize=8, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    plt.tight_layout()
    return _finish(fig, ax, show, save)
