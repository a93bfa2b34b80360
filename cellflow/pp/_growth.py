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
0.3 to 1.7, centre 0.1, width 0.2). These curves are rates **per day**; ``time_unit`` gives
the rate per unit of your ``obs[time_key]`` instead (``"hour"``: :math:`g / 24`), since a
:class:`cellflow.CellFlow` reads it per unit of its time key. moscot's ``prior_growth_rates``
are :math:`e^{g}`, the factor per unit of time; cellflow keeps the rate :math:`g` itself, which
adds over time.

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
import warnings
from typing import get_args

import numpy as np

from .._io import refuse_overwrite
from .._types import Organism, TimeUnit
from ..adata._read import gene_names
from ._markers import MARKERS

__all__ = ["score_growth", "birth_rate", "death_rate"]

#: Waddington-OT's and moscot's birth and death curves: (min, max, centre, width)
BIRTH = (0.3, 1.7, 0.25, 0.5)
DEATH = (0.3, 1.7, 0.1, 0.2)
#: days in one unit of each ``time_unit`` (the curves above are rates per day)
DAYS_PER_UNIT = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0, "week": 7.0}
#: a gene set of which fewer genes than this are found is warned about (a score of a few genes
#: is mostly noise)
MIN_MATCHED_GENES = 10


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


def _match(genes, symbols: np.ndarray, what: str, organism: str, arg: str) -> list[str]:
    """The genes of ``genes`` among ``symbols``; a clear error when none is there, a warning when
    fewer than :data:`MIN_MATCHED_GENES` of them are."""
    genes = [str(g) for g in genes]
    have = set(symbols)
    found = [g for g in genes if g in have]
    if found:
        if len(found) < min(MIN_MATCHED_GENES, len(genes)):
            warnings.warn(
                f"only {len(found)} of the {len(genes)} {what} genes ({arg}) are in "
                f"adata.var_names ({', '.join(found[:5])}); a score of so few genes is mostly "
                "noise. Check the organism and gene_symbols=, or pass your own list.",
                stacklevel=3,
            )
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
            " var_names look like Ensembl IDs: name the var column of symbols with "
            "gene_symbols='...' (--gene-symbols on the command line; e.g. 'gene_symbols' or "
            "'feature_name')."
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
    time_unit: TimeUnit = "day",
    key_added: str = "growth_prior",
    random_state: int = 0,
    overwrite: bool = False,
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
        ``(min, max, centre, width)`` of the birth and death curves, in events per cell per day
        (see the module docstring; the defaults are Waddington-OT's and moscot's).
    time_unit
        The unit of the ``obs[time_key]`` you will train on: ``"day"`` (default), ``"hour"``,
        ``"minute"`` or ``"week"``. The rate is written per that unit, as
        :class:`cellflow.CellFlow` reads it (times in hours with the default would make every
        cell grow 24 times too fast).
    key_added
        The ``obs`` column of the growth rate.
    random_state
        Seeds the choice of control genes.
    overwrite
        Replace ``obs`` columns and the ``uns`` entry of an earlier score (refused otherwise).
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None`` (or the copy). Sets ``obs["proliferation_score"]``, ``obs["apoptosis_score"]``,
    ``obs[key_added]`` (the net growth rate :math:`g = \beta(p) - \delta(a)`, per ``time_unit``,
    on the log scale) and ``uns[f"{key_added}_params"]`` (the genes used, the curves and the
    time unit).
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
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(
            f"time_unit must be one of {list(get_args(TimeUnit))} (the unit of obs[time_key]), "
            f"got {time_unit!r}."
        )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in adata.layers ({list(adata.layers)}).")
    if getattr(adata, "isbacked", False):
        raise ValueError(
            "score_growth reads every gene of X, which this AnnData leaves on disk (backed); "
            "load it into memory first (adata.to_memory()) or read the file without backed=."
        )
    written = ["proliferation_score", "apoptosis_score", key_added]
    refuse_overwrite(
        [f"obs[{k!r}]" for k in written if k in adata.obs]
        + [f"uns[{key_added + '_params'!r}]"] * (f"{key_added}_params" in adata.uns),
        overwrite or copy,
    )
    symbols = gene_names(adata, gene_symbols)
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
    _warn_if_counts(M, "X" if layer is None else f"layers[{layer!r}]")
    # a light AnnData over the same matrix (not copied), named by symbols, for score_genes to write in
    keep = ~pd.Index(symbols).duplicated()
    work = ad.AnnData(X=M[:, keep] if not keep.all() else M, var=pd.DataFrame(index=symbols[keep]))
    work.obs_names = adata.obs_names
    scores = {}
    for name, genes in (("proliferation_score", prolif), ("apoptosis_score", apopt)):
        sc.tl.score_genes(work, genes, score_name=name, random_state=random_state)
        scores[name] = work.obs[name].to_numpy(dtype=float)
    per_day = birth_rate(scores["proliferation_score"], *birth) - death_rate(
        scores["apoptosis_score"], *death
    )
    rate = per_day * DAYS_PER_UNIT[time_unit]
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
        "time_unit": time_unit,
    }
    return adata if copy else None


def _warn_if_counts(M, where: str) -> None:
    """Warn when ``M`` looks like raw counts (whole numbers with a large maximum, read on up to
    1,000 evenly spaced cells): scanpy's ``score_genes`` compares mean expression, and on counts
    the deeply sequenced cells dominate it (rates differ from the log-normalised ones)."""
    import scipy.sparse as sp

    n = M.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, 1000)).astype(int))
    block = M[rows]
    vals = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if vals.size and np.all(np.equal(np.mod(vals, 1), 0)) and vals.max() > 20:
        warnings.warn(
            f"{where} holds whole numbers up to {vals.max():g}: raw counts? Scores are meant for "
            "log-normalised expression (sc.pp.normalize_total(adata); sc.pp.log1p(adata)), or "
            "pass layer= naming such a layer.",
            stacklevel=3,
        )
