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
from ..course.read import LOG_MAX, expression_kind, gene_names, sampled_values
from ._marker_ids import ENSEMBL_IDS
from ._markers import MARKERS

__all__ = ["score_growth", "birth_rate", "death_rate"]

#: Waddington-OT's and moscot's birth and death curves: (min, max, centre, width)
BIRTH = (0.3, 1.7, 0.25, 0.5)
DEATH = (0.3, 1.7, 0.1, 0.2)
#: the ``obs`` columns of the two scores (the rate goes to ``key_added``, default ``growth_prior``)
SCORE_COLUMNS = ("proliferation_score", "apoptosis_score")
#: days in one unit of each ``time_unit`` (the curves above are rates per day)
DAYS_PER_UNIT = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0, "week": 7.0}
#: a gene set of which fewer genes than this are found is warned about (a score of a few genes
#: is mostly noise), and, in a file of at least ``WHOLE_TRANSCRIPTOME`` genes, one of which
#: fewer than ``MIN_MATCHED_SHARE`` are found (there a low share means names that do not match,
#: not a small panel)
MIN_MATCHED_GENES, MIN_MATCHED_SHARE, WHOLE_TRANSCRIPTOME = 10, 0.5, 2000
#: an Ensembl gene ID, with or without its version (ENSG00000148773, ENSMUSG00000031004.15)
ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")


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


def looks_like_ensembl(names) -> bool:
    """Whether most of the first 200 ``names`` are Ensembl gene IDs."""
    head = [str(n) for n in list(names)[:200]]
    return bool(head) and np.mean([bool(ENSEMBL_ID.match(n)) for n in head]) > 0.5


def _unversioned(name: str) -> str:
    return name.split(".", 1)[0] if ENSEMBL_ID.match(name) else name


def _as_ids(genes, organism: str) -> tuple[list[str], dict[str, str]]:
    """``genes`` (symbols or IDs) as unversioned Ensembl IDs, through the shipped table of the
    marker genes (:mod:`cellflow.pp._marker_ids`), and each ID's name as given."""
    table = ENSEMBL_IDS[organism]
    ids, name = [], {}
    for g in (str(g) for g in genes):
        for i in [_unversioned(g)] if ENSEMBL_ID.match(g) else table.get(g, (g,)):
            ids.append(i)
            name.setdefault(i, g)
    return ids, name


def _match(
    genes, symbols: np.ndarray, what: str, organism: str, arg: str, n_asked: int | None = None
) -> list[str]:
    """The genes of ``genes`` among ``symbols``; a clear error when none is there, a warning when
    too few of the ``n_asked`` genes are (:data:`MIN_MATCHED_GENES`, :data:`MIN_MATCHED_SHARE`)."""
    genes = [str(g) for g in genes]
    n_asked = len(genes) if n_asked is None else n_asked
    have = set(symbols)
    found = list(dict.fromkeys(g for g in genes if g in have))
    if found:
        few = len(found) < min(MIN_MATCHED_GENES, n_asked) or (
            len(symbols) >= WHOLE_TRANSCRIPTOME and len(found) < MIN_MATCHED_SHARE * n_asked
        )
        if few:
            warnings.warn(
                f"only {len(found)} of the {n_asked} {what} genes ({arg}) are in the file "
                f"({', '.join(found[:5])}); a score of so few genes is mostly noise. Check the "
                "organism and gene_symbols=, or pass your own list.",
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
    elif looks_like_ensembl(symbols):
        mouse = np.mean([str(s).startswith("ENSMUSG") for s in symbols[:200]]) > 0.5
        hint = (
            " The file's Ensembl IDs match none of the shipped "
            f"{organism} markers' IDs"
            + (
                f" (they look like {'mouse' if mouse else 'human'} IDs: organism="
                f"{'mouse' if mouse else 'human'!r}?)"
                if mouse == (organism == "human")
                else ""
            )
            + "; or name the var column of symbols with gene_symbols='...' (--gene-symbols on "
            "the command line; e.g. 'gene_symbols' or 'feature_name')."
        )
    raise ValueError(
        f"0 of the {n_asked} {what} genes ({arg}) are in the file "
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
        A column of ``adata.var`` holding gene symbols, when ``var_names`` are IDs. Not needed
        for Ensembl IDs (``ENSG…``, ``ENSMUSG…``, versioned or not): the shipped markers are
        found by their IDs (:mod:`cellflow.pp._marker_ids`, GENCODE 48 / M37).
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
    on the log scale) and ``uns[f"{key_added}_params"]`` (the genes used, how many of each set
    were found, the curves and the time unit). Fewer than 10 genes of a set, or fewer than half
    in a file of 2,000 genes or more, is warned about.
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
    written = [*SCORE_COLUMNS, key_added]
    refuse_overwrite(
        [f"obs[{k!r}]" for k in written if k in adata.obs]
        + [f"uns[{key_added + '_params'!r}]"] * (f"{key_added}_params" in adata.uns),
        overwrite or copy,
    )
    symbols = gene_names(adata, gene_symbols)
    sets = MARKERS[organism]
    asked = {
        "proliferation": sets["proliferation"]
        if proliferation_genes is None
        else proliferation_genes,
        "apoptosis": sets["apoptosis"] if apoptosis_genes is None else apoptosis_genes,
    }
    by_id = looks_like_ensembl(symbols)
    if by_id:  # Ensembl IDs (versioned or not): the markers through the shipped table of IDs
        symbols = np.array([_unversioned(n) for n in symbols])
    found, named = {}, {}
    for what, genes in asked.items():
        genes = [str(g) for g in genes]
        ids, name = _as_ids(genes, organism) if by_id else (genes, {})
        named.update(name)
        found[what] = _match(ids, symbols, what, organism, f"{what}_genes", len(genes))
    prolif, apopt = found["proliferation"], found["apoptosis"]
    M = adata.layers[layer] if layer is not None else adata.X
    _warn_if_counts(M, "X" if layer is None else f"layers[{layer!r}]")
    # a light AnnData over the same matrix (not copied), named by symbols, for score_genes to write
    # in
    keep = ~pd.Index(symbols).duplicated()
    work = ad.AnnData(X=M[:, keep] if not keep.all() else M, var=pd.DataFrame(index=symbols[keep]))
    work.obs_names = adata.obs_names
    scores = {}
    for name, genes in zip(SCORE_COLUMNS, (prolif, apopt)):
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
        # the genes scored, by the names asked for (symbols), and how many of those were found
        "proliferation_genes": [named.get(g, g) for g in prolif],
        "apoptosis_genes": [named.get(g, g) for g in apopt],
        "matched": {w: f"{len(found[w])} of {len(asked[w])}" for w in asked},
        "gene_ids": "ensembl" if by_id else "names",
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
    vals = sampled_values(M)
    if expression_kind(vals) == "counts" and vals.size and vals.max() > LOG_MAX:
        warnings.warn(
            f"{where} holds whole numbers up to {vals.max():g}: raw counts? Scores are meant for "
            "log-normalised expression (sc.pp.normalize_total(adata); sc.pp.log1p(adata)), or "
            "pass layer= naming such a layer.",
            stacklevel=3,
        )
