r"""``cf.tl.driver_genes``: which genes go with each fate.

For each fate :math:`f` and gene :math:`g`, the correlation :math:`r_{gf}` between the gene's
expression and the fate probability over the cells where fate probabilities were computed
(Pearson, or Spearman: Pearson's on ranks, ties averaged), as CellRank's
``compute_lineage_drivers`` and moscot's ``compute_feature_correlation`` do:

- **p-value**, two-sided, from :math:`t = r\sqrt{(n-2)/(1-r^2)}` with :math:`n - 2` degrees of
  freedom (scipy's ``pearsonr``; for Spearman the same t approximation as scipy's
  ``spearmanr``);
- **q-value**: Benjamini–Hochberg over the genes of one fate,
  :math:`q_{(k)} = \min_{j \ge k} \min(1, m\,p_{(j)}/j)` for the :math:`k`-th smallest of
  :math:`m` p-values;
- **confidence interval** by Fisher's z: :math:`\tanh(\operatorname{atanh} r \pm
  z_{1-\alpha/2}/\sqrt{n-3})`.

Example
-------
>>> import numpy as np, pandas as pd, anndata as ad
>>> import cellflow as cf
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(size=200)
>>> X = np.column_stack([p + rng.normal(0, 0.1, 200), rng.normal(size=200)])
>>> adata = ad.AnnData(X=X, var=pd.DataFrame(index=["driver", "noise"]))
>>> adata.obsm["fates"] = pd.DataFrame({"A": p, "B": 1 - p}, index=adata.obs_names)
>>> table = cf.tl.driver_genes(adata, "fates")
>>> table.loc[table.fate == "A", "gene"].iloc[0], bool(adata.var.loc["driver", "A_corr"] > 0.9)
('driver', True)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .._io import refuse_overwrite
from ..course.read import gene_names

__all__ = ["driver_genes", "benjamini_hochberg"]

#: tolerance on a fate vector's sum
_SUM_TOL = 1e-3


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values of the p-values ``p`` (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def _fates_frame(adata, fates_key: str):
    import pandas as pd

    if fates_key not in adata.obsm:
        raise KeyError(
            f"adata.obsm has no {fates_key!r}; run cf.tl.fates(adata, model, groupby, ...) first "
            f"(obsm holds: {', '.join(adata.obsm) or 'nothing'})."
        )
    F = adata.obsm[fates_key]
    if not isinstance(F, pd.DataFrame):
        # a CellRank Lineage carries its names; cf.tl.sanitize moves them to uns
        names = getattr(F, "names", None)
        if names is None:
            names = adata.uns.get(f"{fates_key}_names")
        names = None if names is None else [str(g) for g in names]
        F = pd.DataFrame(np.asarray(F), index=adata.obs_names, columns=names)
    F = F.astype(np.float64)
    values = F.to_numpy()
    scored = ~np.isnan(values).all(1)  # cells at other times carry NaN throughout
    partial = np.isnan(values[scored]).any(1)
    if partial.any():
        raise ValueError(
            f"obsm[{fates_key!r}] holds NaN in {int(partial.sum())} cells that have other fate "
            "values: give every scored cell a full fate vector (or NaN throughout)."
        )
    sums = values[scored].sum(1)
    bad = np.abs(sums - 1) > _SUM_TOL
    if bad.any():
        raise ValueError(
            f"the fate probabilities in obsm[{fates_key!r}] do not sum to 1 in {int(bad.sum())} "
            f"cells (e.g. {sums[bad][0]:.3f}); pass probabilities, one column per fate, as "
            "cf.tl.fates writes them."
        )
    return F, scored


def _expression(adata, layer: str | None, cells: np.ndarray, gene_symbols: str | None):
    import scipy.sparse as sp

    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers ({', '.join(adata.layers) or 'none'})."
        )
    names = gene_names(adata, gene_symbols)
    M = adata.layers[layer] if layer is not None else adata.X
    if M is None:
        raise ValueError("adata.X is empty; pass layer=... with expression.")
    M = M[cells]
    M = M.toarray() if sp.issparse(M) else np.asarray(M)
    return M.astype(np.float64), names


def driver_genes(
    adata,
    fates_key: str,
    *,
    groups=None,
    layer: str | None = None,
    method: Literal["spearman", "pearson"] = "spearman",
    confidence: float = 0.95,
    cells=None,
    gene_symbols: str | None = None,
    key_added: str | None = None,
    overwrite: bool = False,
    copy: bool = False,
):
    """Correlate every gene with every fate probability; rank the drivers of each fate.

    Parameters
    ----------
    adata
        Cells × genes with fate probabilities in ``obsm[fates_key]`` (:func:`cellflow.tl.fates`;
        cells at other times hold NaN and are left out).
    fates_key
        The ``obsm`` key of the fates (a DataFrame, one column per fate, rows summing to 1).
    groups
        The fates to score (default all columns but ``"other"``).
    layer
        Expression from ``layers[layer]`` (e.g. the flow's decoded expression, or counts)
        instead of ``X``.
    method
        ``"spearman"`` (default; robust to a few extreme cells) or ``"pearson"``.
    confidence
        The level of the confidence intervals.
    cells
        Restrict to these cells (a boolean mask or indices), e.g. those where the fate is still
        open; default every cell with fates.
    gene_symbols
        A ``var`` column of gene names for the table (default ``var_names``).
    key_added
        Prefix of the ``var`` columns (default none: ``"{fate}_corr"``, as CellRank writes).
    overwrite, copy
        Replace existing columns; return a modified copy.

    Returns
    -------
    A tidy DataFrame ``fate, gene, corr, pval, qval, ci_low, ci_high, rank`` sorted by fate and
    decreasing correlation (with ``copy=True``, ``(table, modified copy)``), and sets, for each
    fate, ``var[f"{fate}_corr"]``, ``_pval``,
    ``_qval``, ``_ci_low`` and ``_ci_high`` (the layout of CellRank's
    ``compute_lineage_drivers``), and ``uns["driver_genes_params"]``.
    """
    import pandas as pd
    from scipy.stats import norm, rankdata
    from scipy.stats import t as student_t

    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    F, scored = _fates_frame(adata, fates_key)
    if cells is not None:
        from ._common import select_cells

        scored = scored & select_cells(adata, cells, "cells")
    names = [c for c in F.columns if str(c) != "other"] if groups is None else list(groups)
    missing = [g for g in names if g not in F.columns]
    if missing:
        raise KeyError(
            f"groups {missing} are not fates of obsm[{fates_key!r}] ({list(F.columns)})."
        )
    n = int(scored.sum())
    if n < 3:
        raise ValueError(
            f"{n} cells have fates in obsm[{fates_key!r}]: correlations and their intervals need "
            "at least 3."
        )
    P = F.loc[scored, names].to_numpy()
    flat = [g for g, col in zip(names, P.T) if np.ptp(col) == 0]
    if flat:
        raise ValueError(
            f"the fate(s) {flat} take one value in every scored cell of obsm[{fates_key!r}], so "
            "no gene correlates with them"
            + (
                " (a single fate is certain for every cell: fates need two or more groups)"
                if len(F.columns) < 2
                else ""
            )
            + "; leave them out with groups=, or compute fates over groups that differ."
        )
    prefix = "" if key_added is None else f"{key_added}_"
    cols = [
        f"{prefix}{g}_{s}" for g in names for s in ("corr", "pval", "qval", "ci_low", "ci_high")
    ]
    refuse_overwrite([f"var[{c!r}]" for c in cols if c in adata.var], overwrite)
    M, genes = _expression(adata, layer, np.flatnonzero(scored), gene_symbols)
    if method == "spearman":  # Pearson's on ranks, ties averaged
        M, P = rankdata(M, axis=0), rankdata(P, axis=0)
    Mc = M - M.mean(0)
    Pc = P - P.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (Mc.T @ Pc) / np.outer(np.sqrt((Mc**2).sum(0)), np.sqrt((Pc**2).sum(0)))
    r = np.clip(r, -1.0, 1.0)  # genes without variance stay NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        tstat = r * np.sqrt((n - 2) / np.maximum(1 - r**2, 1e-300))
    pval = 2 * student_t.sf(np.abs(tstat), n - 2)
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    half = norm.ppf(0.5 + confidence / 2) / np.sqrt(max(n - 3, 1))
    lo, hi = np.tanh(z - half), np.tanh(z + half)
    if n == 3:  # Fisher's interval needs n > 3
        lo, hi = np.full_like(r, -1.0), np.full_like(r, 1.0)
    adata = adata.copy() if copy else adata
    tables = []
    for k, g in enumerate(names):
        q = benjamini_hochberg(pval[:, k])
        fields = dict(corr=r[:, k], pval=pval[:, k], qval=q, ci_low=lo[:, k], ci_high=hi[:, k])
        for s, v in fields.items():
            adata.var[f"{prefix}{g}_{s}"] = v
        t = pd.DataFrame({"fate": str(g), "gene": genes, **fields})
        t = t.sort_values("corr", ascending=False, na_position="last", kind="stable")
        t["rank"] = np.arange(1, len(t) + 1)
        tables.append(t)
    adata.uns[f"{prefix}driver_genes_params"] = {
        "fates_key": fates_key,
        "method": method,
        "layer": "X" if layer is None else layer,
        "n_cells": n,
        "confidence": float(confidence),
        "fates": [str(g) for g in names],
    }
    table = pd.concat(tables, ignore_index=True)
    return (table, adata) if copy else table
