"""``cf.pl.driver_genes``: the top driver genes of each fate, with their intervals."""

from __future__ import annotations

import numpy as np

from ..course.read import gene_names
from ._plots import _finish


def driver_genes(
    adata,
    fates=None,
    *,
    n_genes: int = 10,
    key_added: str | None = None,
    gene_symbols: str | None = None,
    figsize=None,
    show: bool | None = None,
    save: str | None = None,
):
    """One panel per fate: its ``n_genes`` most positively correlated genes
    (:func:`cellflow.tl.driver_genes`), as bars with their confidence intervals, starred where the
    q-value is below 0.05.

    Parameters
    ----------
    adata
        After :func:`cellflow.tl.driver_genes`.
    fates
        Which fates (default all that were scored).
    n_genes
        Genes per fate.
    key_added
        The prefix given to :func:`cellflow.tl.driver_genes`, if any.
    gene_symbols
        A ``var`` column whose names label the genes (as scanpy's plots), e.g. symbols for a file
        indexed by Ensembl IDs; default ``var_names``.
    figsize, show, save
        As in scanpy.

    Returns
    -------
    The axes (a list) when not shown.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    prefix = "" if key_added is None else f"{key_added}_"
    params = adata.uns.get(f"{prefix}driver_genes_params")
    if params is None:
        raise KeyError(
            "adata.uns has no driver_genes_params; run cf.tl.driver_genes(adata, fates_key) first."
        )
    fates = params["fates"] if fates is None else [str(f) for f in np.atleast_1d(fates)]
    missing = [f for f in fates if f"{prefix}{f}_corr" not in adata.var]
    if missing:
        raise KeyError(f"fates {missing} were not scored; scored: {params['fates']}.")
    shown = pd.Series(gene_names(adata, gene_symbols), index=adata.var_names)
    figsize = figsize or (3.2 * len(fates), 0.3 * n_genes + 1.2)
    fig, axes = plt.subplots(1, len(fates), figsize=figsize, squeeze=False)
    axes = list(axes[0])
    for ax, f in zip(axes, fates):
        v = adata.var
        top = v[f"{prefix}{f}_corr"].dropna().sort_values(ascending=False).index[:n_genes][::-1]
        r = v.loc[top, f"{prefix}{f}_corr"].to_numpy()
        lo = v.loc[top, f"{prefix}{f}_ci_low"].to_numpy()
        hi = v.loc[top, f"{prefix}{f}_ci_high"].to_numpy()
        y = np.arange(len(top))
        ax.barh(y, r, color="tab:red", alpha=0.7)
        err = [np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)]
        ax.errorbar(r, y, xerr=err, fmt="none", ecolor="black", lw=0.8, capsize=2)
        labels = [
            f"{shown[g]} *" if v.loc[g, f"{prefix}{f}_qval"] < 0.05 else str(shown[g]) for g in top
        ]
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlim(min(0.0, float(np.nanmin(lo)) - 0.05), 1.0)
        ax.set_xlabel(f"{params['method']} correlation")
        ax.set_title(f"drivers of {f}")
    plt.tight_layout()
    return _finish(fig, axes, show, save)
