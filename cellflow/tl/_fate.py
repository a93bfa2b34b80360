"""``cf.tl.push``, ``cf.tl.pull``, ``cf.tl.fates`` and ``cf.tl.couplings``: where cells go,
where they came from, fate probabilities, and transition matrices for CellRank's
``RealTimeKernel``.

All use :meth:`cellflow.CellFlow.transition_matrix`: cells are pushed along the learned
ODE and spread over their nearest observed cells at the other time (a sparse kNN kernel, no
all-pairs matrix).
"""

from __future__ import annotations

import numpy as np

from ._common import cell_times, check_model, refuse_overwrite, select_cells, time_labels


def _time_mask(adata, model, t: float, what: str) -> np.ndarray:
    """The cells of ``adata`` measured at ``t`` (a measured time of the model)."""
    return cell_times(adata, model) == model._measured(t, what)


def _groups_at(
    adata, groupby: str, at_to: np.ndarray, groups, t_to: float
) -> tuple[np.ndarray, list, list]:
    """The labels of ``obs[groupby]`` at the cells of ``t_to``, the groups present there, and the
    groups asked for (default all present); raises if one asked for is absent. Cells without a
    label (NaN) belong to no group: their label is ``None``."""
    import pandas as pd

    col = adata.obs[groupby][at_to]
    labels = col.astype(str).to_numpy().astype(object)
    labels[col.isna().to_numpy()] = None  # a missing label is no group (never a group called "nan")
    present = list(pd.unique(labels[col.notna().to_numpy()]))
    if not present:
        raise ValueError(
            f"obs[{groupby!r}] has no label at the cells of t_to={t_to}; label those cells first."
        )
    names = present if groups is None else [str(g) for g in np.atleast_1d(groups)]
    missing = [g for g in names if g not in present]
    if missing:
        raise ValueError(
            f"groups {missing} have no cell at t_to={t_to} in obs[{groupby!r}]; "
            f"present there: {present}."
        )
    return labels, present, names


def _transitions(model, t_from, t_to, k, steps, sde):
    """The transition matrix from ``t_from`` to ``t_to`` and each source cell's mass at ``t_to``
    (its expected descendants; all 1 for a model without growth)."""
    if model.growth is None:
        P = model.transition_matrix(t_from, t_to, k=k, steps=steps, sde=sde)
        return P, np.ones(P.shape[0])
    return model.transition_matrix(t_from, t_to, k=k, steps=steps, sde=sde, return_mass=True)


def _prepare(adata, model, cells, what: str, t_from, t_to, key_added, overwrite, k, steps, sde):
    """Shared checks of push/pull; the selected cells at their time point, the transition matrix
    and the source cells' masses."""
    check_model(adata, model)
    refuse_overwrite([f"obs[{key_added!r}]"] * (key_added in adata.obs), overwrite)
    at_from, at_to = (
        _time_mask(adata, model, t_from, "t_from"),
        _time_mask(adata, model, t_to, "t_to"),
    )
    t_sel, at_sel = (t_from, at_from) if what == "source" else (t_to, at_to)
    sel = select_cells(adata, cells, what)[at_sel]
    if not sel.any():
        raise ValueError(
            f"no {what} cell is measured at {'t_from' if what == 'source' else 't_to'}={t_sel}."
        )
    return at_from, at_to, sel, *_transitions(model, t_from, t_to, k, steps, sde)


def push(
    adata,
    model,
    source,
    *,
    t_from: float,
    t_to: float,
    key_added: str = "push",
    k: int = 30,
    steps: int = 100,
    sde: bool = False,
    overwrite: bool = False,
    copy: bool = False,
):
    """Push the mass of ``source`` cells at ``t_from`` to the observed cells at ``t_to``.

    Parameters
    ----------
    adata
        The AnnData the model was trained on.
    model
        A trained :class:`cellflow.CellFlow`.
    source
        The starting cells: a boolean mask, indices, obs names, or ``{obs_key: value(s)}``
        (e.g. ``{"cell_type": "progenitor"}``); only those measured at ``t_from`` are used.
    t_from, t_to
        Measured times; ``t_to < t_from`` pushes backwards in time.
    key_added
        The ``obs`` column written.
    k, steps
        Neighbours of the landing kernel, and Euler steps.
    sde
        SB models: follow the learned Schrödinger bridge SDE (10 paths per cell) instead of
        the ODE.
    overwrite, copy
        Replace an existing column; return a modified copy instead of writing in place.

    Returns
    -------
    ``None`` (or the copy); sets ``obs[key_added]``: the fraction of the source's mass that
    lands on each cell at ``t_to`` (sums to 1 there; NaN at other times, grey in plots). For a
    growth-aware model each source cell brings the mass it carries at ``t_to``
    (:meth:`cellflow.CellFlow.push` with ``return_mass=True``), so the values are the shares
    of the source's *descendants*.
    """
    at_from, at_to, src, P, m = _prepare(
        adata, model, source, "source", t_from, t_to, key_added, overwrite, k, steps, sde
    )
    w = m * src
    mass = np.asarray(P.T @ w).ravel() / w.sum()
    adata = adata.copy() if copy else adata
    out = np.full(adata.n_obs, np.nan)
    out[at_to] = mass
    adata.obs[key_added] = out
    return adata if copy else None


def pull(
    adata,
    model,
    target,
    *,
    t_from: float,
    t_to: float,
    key_added: str = "pull",
    normalize: bool = False,
    k: int = 30,
    steps: int = 100,
    sde: bool = False,
    overwrite: bool = False,
    copy: bool = False,
):
    """Which cells at ``t_from`` end up in the ``target`` cells at ``t_to`` (fate towards a set).

    Each observed cell at ``t_from`` is pushed to ``t_to``; its value is the share of its
    landing kernel on ``target`` cells (a probability in [0, 1]).

    Parameters
    ----------
    target
        The cells to reach: a boolean mask, indices, obs names, or ``{obs_key: value(s)}``;
        only those measured at ``t_to`` count.
    normalize
        ``False`` (default): each cell's probability of reaching the target, in [0, 1]
        (the same whether or not cells grow: it is where the cell's own future goes).
        ``True``: the share of the target's cells that descend from each cell, a distribution
        over the cells at ``t_from`` (as moscot's ``pull``; each value is then tiny and is not
        a probability of that cell). For a growth-aware model each cell's probability is
        weighted by the mass it carries to ``t_to``: a cell that divides more leaves more
        descendants in the target.
    t_from, t_to, key_added, k, steps, sde, overwrite, copy
        As in :func:`push`.

    Returns
    -------
    ``None`` (or the copy); sets ``obs[key_added]`` on the cells at ``t_from`` (NaN at other times).
    """
    at_from, at_to, tgt, P, m = _prepare(
        adata, model, target, "target", t_from, t_to, key_added, overwrite, k, steps, sde
    )
    prob = np.clip(
        np.asarray(P @ tgt.astype(float)).ravel(), 0.0, 1.0
    )  # rows sum to 1 up to rounding
    if normalize:
        prob = prob * m
        if prob.sum() == 0:
            raise ValueError("no cell reaches the target; check t_from/t_to or the target set.")
        prob = prob / prob.sum()
    adata = adata.copy() if copy else adata
    out = np.full(adata.n_obs, np.nan)
    out[at_from] = prob
    adata.obs[key_added] = out
    return adata if copy else None


def fates(
    adata,
    model,
    groupby: str,
    *,
    t_from: float,
    t_to: float,
    groups=None,
    key_added: str | None = None,
    k: int = 30,
    steps: int = 100,
    sde: bool = False,
    overwrite: bool = False,
    copy: bool = False,
):
    """Fate probabilities: for every cell at ``t_from``, the share of its landing kernel at
    ``t_to`` on each group of ``obs[groupby]`` (as CellRank's fate probabilities, one column
    per group, each row summing to 1).

    Unlike :func:`pull` towards one set, every cell gets a full fate vector, so two fates can
    be compared even for cells that land on neither (e.g. ``F["Neu"] / (F["Neu"] + F["Mono"])``).

    Parameters
    ----------
    groupby
        A column of ``adata.obs`` (e.g. cell types or clusters) read at the cells of ``t_to``.
    groups
        The groups that get a column (default: every group present at ``t_to``); the mass
        landing on cells of other groups goes to a column ``"other"``. Cells whose label is
        missing (NaN) belong to no group: the fates are shares of the mass that lands on
        labelled cells (NaN, with a warning, for a cell that lands on none).
    key_added
        Default ``f"fates_{groupby}"``.
    t_from, t_to, k, steps, sde, overwrite, copy
        As in :func:`push`.

    Returns
    -------
    ``None`` (or the copy). Sets

    - ``obsm[key_added]``: a DataFrame (index ``obs_names``, one column per group) with the fate
      probabilities of the cells at ``t_from`` and NaN elsewhere;
    - ``uns[f"{key_added}_params"]``: ``groupby``, ``t_from``, ``t_to``, ``k``, ``sde``, and
      two summaries per group: ``ancestor_share``, the share of the cells at ``t_from`` whose
      future is the group (the mean of the fate probabilities), and ``descendant_share``, the
      share of their descendants at ``t_to`` in it (each cell weighted by the mass it carries
      to ``t_to``). Without growth every cell has one descendant and the two are equal; with
      growth they differ when one fate expands: most cells at ``t_to`` may belong to a fate
      that few cells at ``t_from`` take;
    - for a growth-aware model, ``obs[f"{key_added}_mass"]``: each cell's expected
      descendants at ``t_to`` (NaN at other times).
    """
    import pandas as pd
    import scipy.sparse as sp

    check_model(adata, model)
    if groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not a column of adata.obs.")
    key_added = key_added or f"fates_{groupby}"
    refuse_overwrite(
        [f"obsm[{key_added!r}]"] * (key_added in adata.obsm)
        + [f"uns[{key_added + '_params'!r}]"] * (f"{key_added}_params" in adata.uns),
        overwrite,
    )
    at_from, at_to = (
        _time_mask(adata, model, t_from, "t_from"),
        _time_mask(adata, model, t_to, "t_to"),
    )
    labels, present, names = _groups_at(adata, groupby, at_to, groups, t_to)
    columns = names + (["other"] if set(present) - set(names) else [])
    col = {g: i for i, g in enumerate(columns)}
    labelled = np.array([g is not None for g in labels])
    j = np.array([col.get(g, len(columns) - 1) for g in labels[labelled]], dtype=np.int64)
    onehot = sp.csr_matrix(
        (np.ones(len(j)), (np.flatnonzero(labelled), j)), shape=(len(labels), len(columns))
    )
    P, mass = _transitions(model, t_from, t_to, k, steps, sde)
    F = np.asarray((P @ onehot).todense())
    total = F.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = np.where(total > 0, F / total, np.nan)  # over the mass that lands on labelled cells
    if (total == 0).any():
        import warnings

        warnings.warn(
            f"{int((total == 0).sum())} cells at t_from={t_from} land only on cells without a label in "
            f"obs[{groupby!r}]; their fates are NaN.",
            stacklevel=2,
        )
    adata = adata.copy() if copy else adata
    out = pd.DataFrame(np.nan, index=adata.obs_names, columns=columns)
    out.loc[at_from] = F
    adata.obsm[key_added] = out
    ok = np.isfinite(F).all(1)
    ancestors = F[ok].mean(0) if ok.any() else np.full(len(columns), np.nan)
    descendants = (mass[ok, None] * F[ok]).sum(0) / mass[ok].sum() if ok.any() else ancestors
    if model.growth is not None:
        m_out = np.full(adata.n_obs, np.nan)
        m_out[at_from] = mass
        adata.obs[f"{key_added}_mass"] = m_out
    adata.uns[f"{key_added}_params"] = {
        "ancestor_share": {c: float(v) for c, v in zip(columns, ancestors)},
        "descendant_share": {c: float(v) for c, v in zip(columns, descendants)},
        "groupby": groupby,
        "t_from": float(t_from),
        "t_to": float(t_to),
        "k": int(k),
        "sde": bool(sde),
    }
    return adata if copy else None


def couplings(adata, model, *, k: int = 30, steps: int = 100) -> dict:
    """Transition matrices between consecutive measured times, for CellRank's
    ``RealTimeKernel(adata, time_key=..., couplings=...)``.

    Returns
    -------
    ``{(t_k, t_k+1): AnnData}``, keyed by the labels of ``obs[time_key]``, each with the cells
    at ``t_k`` as ``obs``, those at ``t_k+1`` as ``var``, and a sparse row-stochastic ``X``.
    ``adata`` is not modified; CellRank needs ``obs[time_key]`` to be categorical
    (``adata.obs[time_key] = adata.obs[time_key].astype("category")``).
    """
    import anndata as ad
    import pandas as pd

    check_model(adata, model)
    labels = time_labels(adata, model.time_key, model.times)
    out = {}
    t = cell_times(adata, model)
    for a, b in zip(model.times[:-1], model.times[1:]):
        P = model.transition_matrix(float(a), float(b), k=k, steps=steps)
        out[(labels[float(a)], labels[float(b)])] = ad.AnnData(
            X=P.astype(np.float64),
            obs=pd.DataFrame(index=adata.obs_names[t == a]),
            var=pd.DataFrame(index=adata.obs_names[t == b]),
        )
    return out
