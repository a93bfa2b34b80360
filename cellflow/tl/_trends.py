r"""``cf.tl.gene_trends``: gene expression along the learned flow, per fate.

The observed cells at ``t_from`` are pushed along the ODE to ``t_to``; their states at
``n_points`` times are decoded to expression and averaged. Decoding is linear: for a flow on
``X_pca`` with ``varm["PCs"]`` (scanpy's PCA), a state :math:`z` has expression
:math:`x = \mu + z\,W^\top`, where :math:`W` holds the first ``n_pcs`` loadings and
:math:`\mu` is the genes' mean (as in :func:`cellflow.tl.interpolate`); for a flow on ``X``
the state is the expression. With ``groupby``, each cell's path counts towards group
:math:`g` with its fate probability :math:`F_{ig}` (the share of its landing kernel at ``t_to`` on
the cells of group :math:`g`, as :func:`cellflow.tl.fates`), so the trend of group :math:`g` is

.. math:: m_g(t) = \frac{\sum_i F_{ig}\, x_i(t)}{\sum_i F_{ig}},

and its spread the :math:`F_{ig}`-weighted standard deviation; CellRank weights its gene trends
by fate probabilities in the same way, along a pseudotime instead of the measured time.

Example
-------
>>> import numpy as np, anndata as ad, cellflow as cf
>>> rng = np.random.default_rng(0)
>>> a = ad.AnnData(X=rng.normal(size=(300, 4)), obs={"day": np.repeat([0, 1, 2], 100)})
>>> a.X[:, 0] += np.repeat([0.0, 1.0, 2.0], 100)      # gene g0 rises by 1 a day
>>> a.var_names = ["g0", "g1", "g2", "g3"]
>>> m = cf.CellFlow(a, "day", use_rep="X", seed=0)
>>> _ = m.train(steps=300, batch_size=64, progress=False)
>>> cf.tl.gene_trends(a, m, ["g0", "g1"], t_from=0, t_to=2, n_points=3)
>>> a.uns["gene_trends"]["mean"].shape                # groups × times × genes
(1, 3, 2)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .._io import refuse_overwrite
from ..course.read import gene_index
from ..models.landing import knn_assignment
from ._common import cell_times, check_model, select_cells
from ._fate import _groups_at, _time_mask
from ._interpolate import _decode


def _gene_columns(
    adata, model, genes, layer: str | None, gene_symbols: str | None = None
) -> tuple[list[str], np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The genes asked for, their columns, and a function from states ``(..., n_pcs)`` to their
    expression."""
    genes, idx = gene_index(adata, genes, gene_symbols)
    if model.course.use_rep == "X":
        beyond = [g for g, i in zip(genes, idx) if i >= model.course.n_pcs]
        if beyond:
            raise ValueError(
                f"the model flows in the first {model.course.n_pcs} columns of X only, which do "
                "not "
                f"include {beyond[:10]}."
            )
        return genes, idx, lambda Z: Z[..., idx]
    if (
        model.course.use_rep != "X_pca"
        or "PCs" not in adata.varm
        or np.shape(adata.varm["PCs"])[1] < model.course.n_pcs
    ):
        raise ValueError(
            f"gene trends decode the flow to expression, which needs a model on 'X_pca' with "
            f"adata.varm['PCs'] (sc.pp.pca) holding at least its {model.course.n_pcs} PCs, or a "
            "model on "
            f"'X'; this model is on {model.course.use_rep!r}."
        )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata.layers has no {layer!r}; layers: {list(adata.layers)}.")
    if layer is None and (adata.X is None or adata.n_vars == 0):
        raise ValueError(
            "adata.X is empty: the genes' mean, which decoding adds, cannot be read; pass layer=."
        )
    W = np.asarray(adata.varm["PCs"])[idx, : model.course.n_pcs]
    flat = [g for g, w in zip(genes, W) if not np.any(w)]
    if flat:
        raise ValueError(
            f"{flat[:10]} have no loading on the PCs (not among the genes the PCA used, e.g. not "
            "highly variable), so their decoded trend would be flat; choose genes the PCA used."
        )
    return genes, idx, lambda Z: _decode(adata, Z, model.course.n_pcs, layer, idx)


def _weighted_mean_std(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over cells (axis 1 of ``X``: times × cells × genes) with weights
    ``w``."""
    total = w.sum()
    if total <= 0:
        nan = np.full((X.shape[0], X.shape[2]), np.nan)
        return nan, nan
    m = np.einsum("c,tcg->tg", w, X) / total
    var = np.einsum("c,tcg->tg", w, (X - m[:, None, :]) ** 2) / total
    return m, np.sqrt(np.maximum(var, 0.0))


def gene_trends(
    adata,
    model,
    genes,
    *,
    t_from: float,
    t_to: float,
    cells=None,
    groupby: str | None = None,
    groups=None,
    n_points: int = 50,
    n_cells: int | None = 2000,
    k: int = 30,
    steps: int = 100,
    layer: str | None = None,
    gene_symbols: str | None = None,
    key_added: str = "gene_trends",
    overwrite: bool = False,
    copy: bool = False,
):
    """Expression of ``genes`` along the flow from ``t_from`` to ``t_to``, overall or per fate.

    Parameters
    ----------
    adata, model
        The AnnData and the :class:`cellflow.CellFlow` trained on it (on ``X_pca`` with
        ``varm["PCs"]``, or on ``X``).
    genes
        Names in ``adata.var_names``, or in ``adata.var[gene_symbols]``.
    t_from, t_to
        Measured times; ``t_to < t_from`` follows the cells back to where they came from.
    cells
        The starting cells (as in :func:`cellflow.tl.push`; default all), of which those
        measured at ``t_from`` are used.
    groupby, groups
        An ``obs`` column read at the cells of ``t_to`` (e.g. the branch or cell type): one
        trend per group, each path weighted by the cell's fate probability towards it (see the
        module docstring); ``groups`` limits the groups (default every group present at
        ``t_to``). Default: one trend, ``"all"``, over every path.
    n_points
        Times at which the paths are read, evenly spaced in model time from ``t_from`` to ``t_to``.
    n_cells
        At most this many starting cells, drawn with the model's seed (``None``: all), which
        bounds memory at ``n_points × n_cells × n_pcs`` numbers.
    k, steps
        Neighbours of the landing kernel (with ``groupby``) and Euler steps per interval.
    layer
        For a flow on ``X_pca``: the genes' means added in decoding, and the measured means,
        come from ``layers[layer]`` instead of ``X`` (as in :func:`cellflow.tl.interpolate`).
    gene_symbols
        A ``var`` column of gene names (as scanpy's ``gene_symbols=``), for files indexed by IDs.
    key_added, overwrite, copy
        The ``uns`` key written; replace it if present; return a modified copy instead.

    Returns
    -------
    ``None`` (or the copy). Sets ``uns[key_added]``, a dict that ``write_h5ad`` stores:
    ``time`` (``n_points`` measured times), ``genes``, ``groups``, ``mean`` and ``std``
    (groups × times × genes), ``weight`` (each group's total fate mass, in cells),
    ``observed_time`` and ``observed_mean`` (the mean expression of *all* cells measured at each
    time from ``t_from`` to ``t_to``, for comparison) and ``params``.
    """
    check_model(adata, model)
    refuse_overwrite([f"uns[{key_added!r}]"] * (key_added in adata.uns), overwrite)
    at_from, at_to = (
        _time_mask(adata, model, t_from, "t_from"),
        _time_mask(adata, model, t_to, "t_to"),
    )
    if t_from == t_to:
        raise ValueError("t_from and t_to are the same time; choose two different measured times.")
    if int(n_points) < 2:
        raise ValueError(f"n_points must be at least 2 (the start and the end), got {n_points}.")
    if groupby is not None and groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not a column of adata.obs.")
    genes, idx, decode = _gene_columns(
        adata, model, genes, layer if model.course.use_rep != "X" else None, gene_symbols
    )
    start = at_from if cells is None else select_cells(adata, cells, "cells") & at_from
    if not start.any():
        raise ValueError(f"no selected cell is measured at t_from={t_from}.")
    rows = np.flatnonzero(start)
    if n_cells is not None and len(rows) > int(n_cells):
        rows = np.sort(np.random.default_rng(model.seed).choice(rows, int(n_cells), replace=False))
    X0 = model.course.cells_at(t_from)[np.searchsorted(np.flatnonzero(at_from), rows)]
    paths = model.push(
        X0, t_from, t_to, n_points=int(n_points), steps=steps
    )  # times × cells × n_pcs
    expr = decode(paths)
    if groupby is None:
        names, W = ["all"], np.ones((1, len(rows)))
    else:
        labels, _, names = _groups_at(adata, groupby, at_to, groups, t_to)
        # the landing kernel of transition_matrix, on the end points already pushed
        P = knn_assignment(
            model.course.scaler.forward(paths[-1]),
            model.course.scaler.forward(model.course.cells_at(t_to)),
            k=k,
        )
        W = np.stack([np.asarray(P[:, labels == g].sum(1)).ravel() for g in names])
    stats = [_weighted_mean_std(expr, w) for w in W]
    tau = np.linspace(model.course.model_time(t_from), model.course.model_time(t_to), int(n_points))
    lo, hi = min(t_from, t_to), max(t_from, t_to)
    obs_times = model.course.times[(model.course.times >= lo) & (model.course.times <= hi)]
    if t_to < t_from:
        obs_times = obs_times[::-1]
    cell_t = cell_times(adata, model)
    M = adata.layers[layer] if layer is not None and model.course.use_rep != "X" else adata.X
    observed = np.stack(
        [
            np.asarray(M[np.flatnonzero(cell_t == s)][:, idx].mean(0), dtype=np.float64).ravel()
            for s in obs_times
        ]
    )
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = {
        "time": np.array([model.course.measured_time(t) for t in tau]),
        "genes": np.array(genes, dtype=object),
        "groups": np.array(names, dtype=object),
        "mean": np.stack([s[0] for s in stats]),
        "std": np.stack([s[1] for s in stats]),
        "weight": W.sum(1),
        "observed_time": obs_times.astype(np.float64),
        "observed_mean": observed,
        "params": {
            "t_from": float(t_from),
            "t_to": float(t_to),
            "groupby": groupby or "",
            "k": int(k),
            "steps": int(steps),
            "n_cells": int(len(rows)),
            "method": model.method,
            "layer": layer or "",
        },
    }
    return adata if copy else None
