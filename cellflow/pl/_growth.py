"""``cf.pl.growth``: where cells grow and shrink, on an embedding and over time."""

from __future__ import annotations

import numpy as np

from ._plots import _category_colors, _finish


def growth(
    adata,
    *,
    key: str = "growth_rate",
    basis: str = "umap",
    groupby: str | None = None,
    time_key: str | None = None,
    figsize=(9.5, 4.0),
    show: bool | None = None,
    save: str | None = None,
):
    """The growth rate of every cell (``obs[key]``, e.g. from :func:`cellflow.tl.growth_rates`
    or :func:`cellflow.pp.score_growth`) on an embedding, in a diverging map centred on 0
    (red grows, blue shrinks); and, with ``groupby``, its mean per group at each time point
    of ``time_key`` (default: the time key of the model that wrote ``key``).

    Parameters
    ----------
    adata
        Cells with ``obs[key]`` and ``obsm[f"X_{basis}"]``.
    key
        The ``obs`` column of the growth rate.
    basis
        The embedding (``"umap"``, ``"pca"``, ...).
    groupby, time_key
        A categorical ``obs`` column (cell types, branches) and the time column for the second
        panel; without ``groupby`` there is one panel.
    figsize, show, save
        As in scanpy.

    Returns
    -------
    The axes (a list) when not shown.
    """
    import matplotlib.pyplot as plt

    if key not in adata.obs:
        raise KeyError(
            f"adata.obs has no {key!r}; run cf.tl.growth_rates(adata, model) (or "
            "cf.pp.score_growth for a prior) first, or pass key=..."
        )
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(f"adata.obsm has no 'X_{basis}'; compute it first or choose another basis.")
    if groupby is not None:
        if groupby not in adata.obs:
            raise KeyError(f"groupby {groupby!r} is not a column of adata.obs.")
        time_key = time_key or adata.uns.get(f"{key}_params", {}).get("time_key")
        if time_key is None or time_key not in adata.obs:
            raise ValueError("pass time_key=..., the obs column of each cell's time point.")
    g = adata.obs[key].to_numpy(dtype=float)
    E = np.asarray(adata.obsm[f"X_{basis}"], dtype=float)[:, :2]
    fig, axes = plt.subplots(1, 2 if groupby else 1, figsize=figsize if groupby else (5, 4.5))
    axes = list(np.atleast_1d(axes))
    ax = axes[0]
    lim = float(np.nanpercentile(np.abs(g), 99)) or 1.0
    order = np.argsort(np.abs(np.nan_to_num(g)))  # the strongest on top
    sc_ = ax.scatter(
        E[order, 0],
        E[order, 1],
        c=g[order],
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        s=4,
        linewidths=0,
    )
    fig.colorbar(sc_, ax=ax, shrink=0.8, label=f"{key} (log, per unit of time)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{basis.upper()} 1")
    ax.set_ylabel(f"{basis.upper()} 2")
    ax.set_title("growth rate")
    if groupby:
        ax = axes[1]
        times = np.asarray(adata.obs[time_key], dtype=float)
        colors = _category_colors(adata, groupby)
        labels = adata.obs[groupby].astype(str).to_numpy()
        for c, col in colors.items():
            at = labels == c
            ts = np.unique(times[at])
            if len(ts) == 0:
                continue
            means = [np.nanmean(g[at & (times == t)]) for t in ts]
            ax.plot(ts, means, "-o", color=col, ms=3, label=c)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(time_key)
        ax.set_ylabel(f"mean {key}")
        ax.set_title(f"growth by {groupby}")
        ax.legend(frameon=False, fontsize=8)
    plt.tight_layout()
    return _finish(fig, axes, show, save)
