"""``cf.pl.gene_trends``: the trends of :func:`cellflow.tl.gene_trends`, one panel per gene."""

from __future__ import annotations

import numpy as np

from ._plots import _category_colors, _finish


def gene_trends(
    adata,
    genes=None,
    *,
    key: str = "gene_trends",
    groups=None,
    band: bool = True,
    observed: bool = True,
    gene_symbols: str | None = None,
    ncols: int = 4,
    panel_size=(3.2, 2.6),
    show: bool | None = None,
    save: str | None = None,
):
    """Expression along the flow against measured time: a line per group (± one standard
    deviation over the weighted paths), and the mean of the cells measured at each time as dots.

    Parameters
    ----------
    adata
        With ``uns[key]`` from :func:`cellflow.tl.gene_trends`.
    genes, groups
        Subsets of those computed (default all).
    band
        Shade ± one weighted standard deviation around each trend.
    observed
        Mark the mean expression of all cells measured at each time (black dots). With a
        subset of starting cells or per-group trends, these are a reference, not a target.
    gene_symbols
        A column of ``adata.var`` holding readable names (as in scanpy's plots): panels are
        titled with them, and ``genes`` may name genes by them as well as by ``var_names``.
    ncols, panel_size
        Panels per row, and the size of one panel in inches.

    Returns
    -------
    The array of axes (one per gene), or ``None`` with ``show=True``. The AnnData is not changed.
    """
    import matplotlib.pyplot as plt

    if key not in adata.uns or "mean" not in adata.uns[key]:
        raise KeyError(
            f"adata.uns has no {key!r} from cellflow; run cf.tl.gene_trends(adata, model, genes, "
            "...) "
            "first."
        )
    res = adata.uns[key]
    all_genes, all_groups = [str(g) for g in res["genes"]], [str(g) for g in res["groups"]]
    genes = (
        all_genes
        if genes is None
        else ([genes] if isinstance(genes, str) else [str(g) for g in genes])
    )
    symbol = {}
    if gene_symbols is not None:
        if gene_symbols not in adata.var:
            raise KeyError(
                f"gene_symbols={gene_symbols!r} is not a column of adata.var "
                f"(columns: {list(adata.var.columns)[:20]})."
            )
        symbol = dict(zip(adata.var_names.astype(str), adata.var[gene_symbols].astype(str)))
        by_symbol = {s: g for g, s in symbol.items() if g in all_genes}
        genes = [g if g in all_genes else by_symbol.get(g, g) for g in genes]
    groups = all_groups if groups is None else [str(g) for g in np.atleast_1d(groups)]
    for what, asked, have in (("genes", genes, all_genes), ("groups", groups, all_groups)):
        missing = [g for g in asked if g not in have]
        if missing:
            raise KeyError(
                f"{what} {missing[:10]} are not in uns[{key!r}], which holds {have[:20]}."
            )
    groupby = str(res["params"].get("groupby", ""))
    known = _category_colors(adata, groupby) if groupby and groupby in adata.obs else {}
    colour = {g: known.get(g, plt.cm.tab10(i % 10)) for i, g in enumerate(all_groups)}
    t, mean, std = np.asarray(res["time"]), np.asarray(res["mean"]), np.asarray(res["std"])
    ncols = max(1, min(int(ncols), len(genes)))
    nrows = -(-len(genes) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False
    )
    for j, gene in enumerate(genes):
        ax, gi = axes.flat[j], all_genes.index(gene)
        for g in groups:
            k = all_groups.index(g)
            ax.plot(t, mean[k, :, gi], color=colour[g], lw=1.8, label=g if groupby else None)
            if band:
                ax.fill_between(
                    t,
                    mean[k, :, gi] - std[k, :, gi],
                    mean[k, :, gi] + std[k, :, gi],
                    color=colour[g],
                    alpha=0.15,
                    lw=0,
                )
        if observed and len(res["observed_time"]):
            ax.scatter(
                res["observed_time"],
                np.asarray(res["observed_mean"])[:, gi],
                color="black",
                s=14,
                zorder=3,
                label="measured mean" if j == 0 else None,
            )
        ax.set_title(symbol.get(gene, gene), fontsize=10)
        ax.set_xlabel("time")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(genes) :]:
        ax.set_visible(False)
    axes.flat[0].set_ylabel("expression")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0)
        )
    fig.tight_layout()
    return _finish(fig, axes, show, save)
