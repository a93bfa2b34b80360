"""``cf.pl.fates``: fate probabilities and how sure they are, on an embedding."""

from __future__ import annotations

import numpy as np

from ._plots import _finish


def fates(
    adata,
    *,
    key: str = "fate",
    state: str | None = None,
    basis: str = "umap",
    figsize=None,
    show: bool | None = None,
    save: str | None = None,
):
    """Three panels on an embedding, the cells that have fates coloured and the others grey:
    the probability of one fate (``obsm[key][state]``), the fate entropy
    (``obs[f"{key}_entropy"]``: 0 one fate is certain, 1 all are equally likely), and, when
    :func:`cellflow.tl.fates` ran with ``n_samples``, the width of that fate's interval
    (``obsm[f"{key}_high"] - obsm[f"{key}_low"]``).

    Parameters
    ----------
    adata
        Cells with ``obsm[key]`` from :func:`cellflow.tl.fates` and ``obsm[f"X_{basis}"]``.
    key
        The fates' key (``"fate"`` on the label-free path, ``f"fates_{groupby}"`` otherwise).
    state
        The fate to draw (default: the first column).
    basis
        The embedding (``"umap"``, ``"pca"``, ``"spring"``, ...).
    figsize, show, save
        As in scanpy.

    Returns
    -------
    The axes (a list) when not shown.

    Examples
    --------
    >>> cf.tl.fates(adata, model, n_samples=10)  # doctest: +SKIP
    >>> cf.pl.fates(adata, basis="umap")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if not hasattr(adata, "obsm"):
        raise TypeError(
            f"adata must be an AnnData with fates in obsm (cf.tl.fates), got "
            f"{type(adata).__name__}."
        )
    if key not in adata.obsm:
        raise KeyError(
            f"adata.obsm has no {key!r}; run cf.tl.fates(adata, model) first, or pass key=."
        )
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(f"adata.obsm has no 'X_{basis}'; compute it first or choose another basis.")
    F = adata.obsm[key]
    state = str(F.columns[0]) if state is None else str(state)
    if state not in F.columns:
        raise KeyError(f"state {state!r} is not a fate in obsm[{key!r}]; fates: {list(F.columns)}.")
    panels = [(F[state].to_numpy(dtype=float), f"P({state})", "viridis", (0, 1))]
    if f"{key}_entropy" in adata.obs:
        H = adata.obs[f"{key}_entropy"].to_numpy(dtype=float)
        panels.append((H, "fate entropy", "magma", (0, 1)))
    if f"{key}_high" in adata.obsm and f"{key}_low" in adata.obsm:
        width = (adata.obsm[f"{key}_high"][state] - adata.obsm[f"{key}_low"][state]).to_numpy(float)
        confidence = adata.uns.get(f"{key}_params", {}).get("confidence", 0.9)
        panels.append((width, f"{confidence:.0%} interval width, {state}", "magma", (0, None)))
    E = np.asarray(adata.obsm[f"X_{basis}"], dtype=float)[:, :2]
    fig, axes = plt.subplots(1, len(panels), figsize=figsize or (4.6 * len(panels), 4.0))
    axes = list(np.atleast_1d(axes))
    for ax, (value, title, cmap, (lo, hi)) in zip(axes, panels):
        has = np.isfinite(value)
        ax.scatter(E[~has, 0], E[~has, 1], s=2, c="lightgrey", linewidths=0, rasterized=True)
        pts = ax.scatter(
            E[has, 0],
            E[has, 1],
            c=value[has],
            cmap=cmap,
            vmin=lo,
            vmax=hi if hi is not None else None,
            s=4,
            linewidths=0,
            rasterized=True,
        )
        fig.colorbar(pts, ax=ax, shrink=0.8)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{basis.upper()} 1")
        ax.set_ylabel(f"{basis.upper()} 2")
    plt.tight_layout()
    return _finish(fig, axes, show, save)
