r"""``cf.pp.score_growth``: a prior growth rate per cell from proliferation and apoptosis genes.

**The birth–death form** of Waddington-OT (Schiebinger et al., Cell 2019) and moscot. A cell's
proliferation score :math:`p` and apoptosis score :math:`a` (scanpy's ``score_genes``: the mean
expression of a gene set minus that of expression-matched control genes) become a birth and a
death rate per unit of time through shifted logistic functions,

.. math::

    \beta(p) = \beta_{\min} + \frac{\beta_{\max} - \beta_{\min}}
                                   {1 + e^{-4 (p - \beta_c) / \beta_w}}, \qquad
    \delta(a) = \delta_{\min} + \frac{\delta_{\max} - \delta_{\min}}
                                     {1 + e^{-4 (a - \delta_c) / \delta_w}},

and the cell's net growth rate is :math:`g = \beta - \delta`: over an interval :math:`\Delta t`
its descendants are expected to number :math:`e^{g \Delta t}`. The defaults are those of
Waddington-OT and moscot (:math:`\beta`: 0.3 to 1.7, centre 0.25, width 0.5; :math:`\delta`:
0.3 to 1.7, centre 0.1, width 0.2). moscot's ``prior_growth_rates`` are :math:`e^{g}`, the
factor per unit of time; cellflow keeps the rate :math:`g` itself, which adds over time.

Example
-------
>>> import cellflow as cf, scanpy as sc
>>> adata = cf.datasets.simulated_growth(n_cells_per_time=60, random_state=0)
>>> sc.pp.normalize_total(adata, target_sum=1e4); sc.pp.log1p(adata)
>>> cf.pp.score_growth(adata, organism="human")
>>> sorted(c for c in adata.obs if c.startswith(("proliferation", "apoptosis", "growth")))
['apoptosis_score', 'growth_prior', 'proliferation_score']
"""

from __future__ import annotations

import re
from typing import get_args

import numpy as np

from .._types import Organism
from ._markers import MARKERS

__all__ = ["score_growth", "birth_rate", "death_rate"]

#: Waddington-OT's and moscot's birth and death curves: (min, max, centre, width)
BIRTH = (0.3, 1.7, 0.25, 0.5)
DEATH = (0.3, 1.7, 0.1, 0.2)


def _shifted_logistic(x, low: float, high: float, centre: float, width: float) -> np.ndarray:
    return low + (high - low) / (1.0 + np.exp(-4.0 * (np.asarray(x, dtype=float) - centre) / width))


def birth_rate(p, low=BIRTH[0], high=BIRTH[1], centre=BIRTH[2], width=BIRTH[3]) -> np.ndarray:
    r""":math:`\beta(p)`, births per cell per unit of time at proliferation score ``p``.

    >>> float(birth_rate(0.25))  # half-way at the centre
    1.0
    """
    return _shifted_logistic(p, low, high, centre, width)


def death_rate(a, low=DEATH[0], high=DEATH[1], centre=DEATH[2], width=DEATH[3]) -> np.ndarray:
    r""":math:`\delta(a)`, deaths per cell per unit of time at apoptosis score ``a``.

    >>> float(death_rate(0.1))
    1.0
    """
    return _shifted_logistic(a, low, high, centre, width)


def _symbols(adata, gene_symbols: str | None) -> np.ndarray:
    if gene_symbols is None:
        return np.asarray(adata.var_names, dtype=str)
    if gene_symbols not in adata.var:
        raise KeyError(
            f"gene_symbols={gene_symbols!r} is not a column of adata.var; columns: "
            f"{list(adata.var.columns)}."
        )
    return adata.var[gene_symbols].astype(str).to_numpy()


def _match(genes, symbols: np.ndarray, what: str, organism: str, arg: str) -> list[str]:
    """The genes of ``genes`` among ``symbols``; a clear error when none is there."""
    genes = [str(g) for g in genes]
    have = set(symbols)
    found = [g for g in genes if g in have]
    if found:
        return found
    lower = {s.lower() for s in symbols}
    hint = ""
    if any(g.lower() in lower for g in genes):
        other = "mouse" if organism == "human" else "human"
        hint = (
            f" Some match when case is ignored: are these {other} genes (organism={other!r})? "
            "Human symbols are upper case (MKI67), mouse symbols capitalised (Mki67)."
        )
    elif np.mean([bool(re.match(r"ENS[A-Z]*G\d", s)) for s in symbols[:200]]) > 0.5:
        hint = (
            " var_names look like Ensembl IDs: pass gene_symbols='<var column with symbols>' "
            "(e.g. 'gene_symbols' or 'feature_name')."
        )
    raise ValueError(
        f"0 of the {len(genes)} {what} genes ({arg}) are in adata.var_names "
        f"(e.g. {genes[:3]}).{hint} Pass your own list with {arg}=[...]."
    )


def score_growth(
    adata,
    organism: Organism = "human",
    *,
    proliferation_genes=None,
    apoptosis_genes=None,
    gene_symbols: str | None = None,
    layer: str | None = None,
    birth: tuple[float, float, float, float] = BIRTH,
    death: tuple[float, float, float, float] = DEATH,
    key_added: str = "growth_prior",
    random_state: int = 0,
    copy: bool = False,
):
    r"""Score proliferation and apoptosis and turn them into a prior growth rate per cell.

    Run it on log-normalised expression (``sc.pp.normalize_total`` and ``sc.pp.log1p``), as
    scanpy's ``score_genes``, which it uses, expects. The rate then weights each cell's mass in
    a growth-aware :class:`cellflow.CellFlow` (``growth="prior"``, ``growth_key=key_added``).

    Parameters
    ----------
    adata
        Cells × genes.
    organism
        ``"human"`` or ``"mouse"``: which of the shipped gene sets to use
        (:mod:`cellflow.pp._markers`: Tirosh et al. 2016 cell-cycle genes, MSigDB hallmark sets).
    proliferation_genes, apoptosis_genes
        Your own gene lists instead (names as in ``var_names`` or ``var[gene_symbols]``).
    gene_symbols
        A column of ``adata.var`` holding gene symbols, when ``var_names`` are IDs.
    layer
        Score ``layers[layer]`` instead of ``X``.
    birth, death
        ``(min, max, centre, width)`` of the birth and death curves (see the module docstring;
        the defaults are Waddington-OT's and moscot's).
    key_added
        The ``obs`` column of the growth rate.
    random_state
        Seeds the choice of control genes.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None`` (or the copy). Sets ``obs["proliferation_score"]``, ``obs["apoptosis_score"]``,
    ``obs[key_added]`` (the net growth rate :math:`g = \beta(p) - \delta(a)`, per unit of time, on
    the log scale) and ``uns[f"{key_added}_params"]`` (the genes used and the curves).
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    if organism not in get_args(Organism):
        raise ValueError(
            f"organism must be one of {list(get_args(Organism))}, got {organism!r}; for another "
            "organism pass proliferation_genes=[...] and apoptosis_genes=[...]."
        )
    for name, curve in (("birth", birth), ("death", death)):
        low, high, _, width = (float(v) for v in curve) if len(curve) == 4 else (0, -1, 0, 0)
        if not (width > 0 and high >= low):
            raise ValueError(
                f"{name} must be (min, max, centre, width) with max >= min and width > 0."
            )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in adata.layers ({list(adata.layers)}).")
    symbols = _symbols(adata, gene_symbols)
    sets = MARKERS[organism]
    prolif = _match(
        sets["proliferation"] if proliferation_genes is None else proliferation_genes,
        symbols,
        "proliferation",
        organism,
        "proliferation_genes",
    )
    apopt = _match(
        sets["apoptosis"] if apoptosis_genes is None else apoptosis_genes,
        symbols,
        "apoptosis",
        organism,
        "apoptosis_genes",
    )
    M = adata.layers[layer] if layer is not None else adata.X
    # a light AnnData over the same matrix (not copied), named by symbols, for score_genes to write in
    keep = ~pd.Index(symbols).duplicated()
    work = ad.AnnData(X=M[:, keep] if not keep.all() else M, var=pd.DataFrame(index=symbols[keep]))
    work.obs_names = adata.obs_names
    scores = {}
    for name, genes in (("proliferation_score", prolif), ("apoptosis_score", apopt)):
        sc.tl.score_genes(work, genes, score_name=name, random_state=random_state)
        scores[name] = work.obs[name].to_numpy(dtype=float)
    rate = birth_rate(scores["proliferation_score"], *birth) - death_rate(
        scores["apoptosis_score"], *death
    )
    adata = adata.copy() if copy else adata
    for name, values in scores.items():
        adata.obs[name] = values
    adata.obs[key_added] = rate
    adata.uns[f"{key_added}_params"] = {
        "organism": organism,
        "proliferation_genes": list(prolif),
        "apoptosis_genes": list(apopt),
        "birth": [float(v) for v in birth],
        "death": [float(v) for v in death],
        "layer": "X" if layer is None else layer,
    }
    return adata if copy else None
