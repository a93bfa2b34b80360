r"""``cf.tl.terminal_states``: the states a time course ends in (and starts from), found from
the flow itself, with no labels.

**Where to look.** Every long push of the flow ends among the cells of the last measured time,
so the terminal states are groups of those cells (the initial states, groups of the first
time's cells). They are partitioned into macrostates: the clusters of ``obs[cluster_key]``,
or k-means in the model's units with the number of states that maximises the silhouette.

**Which are terminal.** A terminal state is where cells arrive and stay; a state that cells
pass through (progenitors still present at the last time) is one they leave. The flow says
which: take the cells of the time before, :math:`t_{n-1}`, place each in the macrostates
*where it sits* (its landing kernel at :math:`t_n` without moving, :math:`N`), and again
*where the flow takes it* by :math:`t_n` (:math:`F`, :meth:`cellflow.CellFlow.transition_matrix`).
The coarse-grained chain

.. math:: C_{ab} = \frac{\sum_i N_{ia} F_{ib}}{\sum_i N_{ia}}

is the share of the mass in state :math:`a` one interval earlier that lands in :math:`b`, and
its diagonal :math:`C_{aa}` is the state's *stability*: near 1 for a fate, low for a state
that cells leave. Macrostates with :math:`C_{aa} \geq` ``min_stability`` are terminal. This is
CellRank's criterion for terminal macrostates (the diagonal of the coarse-grained transition
matrix, its ``stability_threshold``) on the flow's own chain. Initial states are found the
same way at the first time, with the second time's cells pulled back to it: a source state's
cells come from it. Why this and not the flow's speed, or a chain that steps back and forth:
the method guide, "Terminal states".

Example
-------
>>> import cellflow as cf, scanpy as sc
>>> adata = cf.datasets.simulated_differentiation(n_cells_per_time=60, n_futures=0)
>>> sc.pp.normalize_total(adata); sc.pp.log1p(adata); sc.pp.pca(adata, n_comps=10)
>>> model = cf.CellFlow(adata, time_key="day", seed=0); _ = model.train(steps=200, progress=False)
>>> cf.tl.terminal_states(adata, model, n_states=2)
>>> adata.obs["terminal_states"].cat.categories.tolist()  # doctest: +SKIP
['T1', 'T2']
"""

from __future__ import annotations

import numpy as np

from .._defaults import MAX_STATES, TERMINAL_STABILITY
from .._io import refuse_overwrite
from .._types import whole_number
from ..models.landing import knn_assignment
from ._common import cell_times, check_model, model_digest


def _macrostates(Z, labels, n_states, max_states, seed):
    """Macrostate labels of the rows of ``Z`` (given, or k-means), and the silhouette of each
    number of states tried."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if labels is not None:
        return labels, {}
    if n_states == 1:
        return np.full(len(Z), "1"), {}
    tries = [int(n_states)] if n_states is not None else range(2, int(max_states) + 1)
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(Z), min(len(Z), 3000), replace=False)
    best, scores = None, {}
    for k in tries:
        if k > len(Z) - 1:
            break
        cut = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Z)
        scores[k] = (
            float(silhouette_score(Z[sub], cut[sub])) if len(np.unique(cut[sub])) > 1 else -1.0
        )
        if best is None or scores[k] > scores[best[0]]:
            best = (k, cut)
    if best is None:
        raise ValueError(f"too few cells ({len(Z)}) for {tries[0]} states.")
    return best[1].astype(str), scores


def _sit_and_land(model, t_end, t_next, k, steps):
    """The two kernels of the chain onto the cells of ``t_end``: where each cell of ``t_next``
    sits (its landing kernel without moving, :math:`N`) and where the flow takes it
    (:math:`F`, :meth:`cellflow.CellFlow.transition_matrix`)."""
    here = model.course.scaler.forward(model.course.cells_at(t_next))
    there = model.course.scaler.forward(model.course.cells_at(t_end))
    N = knn_assignment(here, there, k=k)
    return N, model.transition_matrix(t_next, t_end, k=k, steps=steps)


def _stability(model, t_end, t_next, labels, names, k, steps):
    """The coarse-grained chain from ``t_next`` to ``t_end`` over the macrostates at ``t_end``:
    ``C[a, b]``, the share of the mass sitting in state a at ``t_next`` that the flow takes to b."""
    import scipy.sparse as sp

    index = {g: i for i, g in enumerate(names)}
    j = np.array([index[g] for g in labels])
    onehot = sp.csr_matrix((np.ones(len(j)), (np.arange(len(j)), j)), shape=(len(j), len(names)))
    N, F = _sit_and_land(model, t_end, t_next, k, steps)
    sits = np.asarray((N @ onehot).todense())
    lands = np.asarray((F @ onehot).todense())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sits.T @ lands) / sits.sum(0)[:, None]


def _end_states(adata, model, at, t_end, t_next, cluster_key, n_states, max_states, k, steps):
    Z = model.course.scaler.forward(model.course.cells_at(t_end))
    given = None
    if cluster_key is not None:
        col = adata.obs[cluster_key][at]
        if col.isna().any():
            raise ValueError(
                f"obs[{cluster_key!r}] has {int(col.isna().sum())} missing labels at the cells of "
                f"time {t_end}; every cell there needs a cluster."
            )
        given = col.astype(str).to_numpy()
    labels, scores = _macrostates(Z, given, n_states, max_states, model.seed)
    names, sizes = np.unique(labels, return_counts=True)
    if given is None:  # T1 is the largest state
        order = np.argsort(-sizes, kind="stable")
        rename = {names[o]: str(i + 1) for i, o in enumerate(order)}
        labels = np.array([rename[g] for g in labels])
        names = np.array([str(i + 1) for i in range(len(names))])
    C = _stability(model, t_end, t_next, labels, list(names), k, steps)
    # a state where no earlier cell sits has lost no one: only arrivals
    stab = np.where(np.isfinite(np.diag(C)), np.diag(C), 1.0)
    return labels, list(names), stab, C, scores


def _above_largest_gap(names, stab) -> tuple[list, float]:
    """The macrostates above the largest gap between consecutive stabilities (sorted, with 0
    below the lowest), and the lowest stability kept: the best-supported terminal states when
    none reaches ``min_stability`` (states of like stability stay together; a lone stable one
    stands alone).

    >>> _above_largest_gap(["a", "b", "c", "d"], [0.74, 0.62, 0.35, 0.20])
    (['a', 'b'], 0.62)
    >>> _above_largest_gap(["a", "b"], [0.74, 0.70])
    (['a', 'b'], 0.7)
    """
    s = np.nan_to_num(np.asarray(stab, dtype=np.float64), nan=0.0)
    order = np.argsort(-s, kind="stable")
    ranked = s[order]
    gaps = ranked - np.append(ranked[1:], 0.0)
    cut = int(np.argmax(gaps))
    return [names[i] for i in order[: cut + 1]], float(ranked[cut])


def terminal_states(
    adata,
    model,
    *,
    cluster_key: str | None = None,
    n_states: int | None = None,
    max_states: int = MAX_STATES,
    min_stability: float = TERMINAL_STABILITY,
    k: int = 30,
    steps: int = 100,
    key_added: str = "terminal_states",
    initial_key: str = "initial_states",
    overwrite: bool = False,
    copy: bool = False,
):
    """Find the terminal and initial states of a time course from the flow, without labels.

    The cells of the last measured time are grouped into macrostates, and those whose cells'
    cells, once there, stay (stability ≥ ``min_stability``, module docstring) are terminal; the
    first time's cells likewise give the initial states. The result is a column that
    :func:`cellflow.tl.fates` takes as ``groupby`` (``cf.tl.fates(adata, model)`` calls this
    function when ``obs[key_added]`` is absent).

    Parameters
    ----------
    adata
        The AnnData the model was trained on.
    model
        A trained :class:`cellflow.CellFlow` with at least two measured times.
    cluster_key
        A column of ``obs`` whose clusters (e.g. Leiden) are the macrostates, and name the
        states. Default: k-means in the model's units on the cells of each end.
    n_states
        The number of k-means macrostates at each end. Default: of 2 to ``max_states``, the
        one with the highest silhouette (on up to 3,000 cells). One population may then be
        cut in two, each part stable (two initial states of one progenitor pool, say); give
        ``n_states`` or ``cluster_key`` when you know better.
    min_stability
        A macrostate is terminal when at least this share of the mass sitting in it one
        interval earlier is still in it at the last time (initial: when at least this share of
        the second time's mass sitting in it came from it). When no macrostate at the last time
        reaches it, those above the largest gap between the stabilities are kept, with a
        warning that lists every candidate's stability (small real courses: the method guide,
        "Terminal states").
    k, steps
        Neighbours of the landing kernel, and Euler steps (:func:`cellflow.tl.push`).
    key_added, initial_key
        The ``obs`` columns written.
    overwrite, copy
        Replace existing columns; return a modified copy instead of writing in place.

    Returns
    -------
    ``None`` (or the copy). Sets

    - ``obs[key_added]``: categorical, the terminal state of each cell of the last time
      (``T1``, ``T2``, ... by size, or the cluster's name); NaN for other cells and for
      macrostates that are not terminal;
    - ``obs[initial_key]``: the same for the initial states at the first time (``I1``, ...;
      empty, with a warning, when no macrostate there is stable);
    - ``obs[f"{key_added}_macrostates"]``, ``obs[f"{initial_key}_macrostates"]``: every
      macrostate of each end, terminal or not;
    - ``uns[f"{key_added}_params"]``: per end (``"terminal"``, ``"initial"``), the time, every
      macrostate (``states``) and, in that order, its ``stability`` and ``size``, the coarse-grained
      chain (``transitions``, rows and
      columns in ``states`` order), the silhouette per number of states tried, and the
      settings.
    """
    import pandas as pd

    check_model(adata, model)
    if len(model.course.times) < 2:
        raise ValueError("terminal_states needs a model with at least two measured times.")
    if cluster_key is not None and cluster_key not in adata.obs:
        raise KeyError(f"cluster_key {cluster_key!r} is not a column of adata.obs.")
    if n_states is not None:
        whole_number(n_states, "n_states", hint=" Leave it None to choose by silhouette.")
    whole_number(max_states, "max_states", 2)
    whole_number(k, "k")
    if not 0.0 < float(min_stability) <= 1.0:
        raise ValueError(f"min_stability must be in (0, 1], got {min_stability!r}.")
    if key_added == initial_key:
        raise ValueError("key_added and initial_key must differ.")
    params_key = f"{key_added}_params"
    written = [c + m for c in (key_added, initial_key) for m in ("", "_macrostates")]
    refuse_overwrite(
        [f"obs[{c!r}]" for c in written if c in adata.obs]
        + [f"uns[{params_key!r}]"] * (params_key in adata.uns),
        overwrite,
    )
    t = cell_times(adata, model)
    # the neighbouring time of each end among the trained ones: a held-out time point's cells
    # were never seen by the flow
    trained = [float(s) for s in model.course.times if s != model.holdout]
    ends = {
        "terminal": (trained[-1], trained[-2], key_added, "T"),
        "initial": (trained[0], trained[1], initial_key, "I"),
    }
    columns, summary = {}, {}
    for end, (t_end, t_next, column, prefix) in ends.items():
        at = t == t_end
        labels, names, stab, C, scores = _end_states(
            adata, model, at, t_end, t_next, cluster_key, n_states, max_states, k, steps
        )
        keep = [g for g, s in zip(names, stab) if s >= float(min_stability)]
        if not keep and end == "initial":  # fates need terminal states, nothing needs these
            import warnings

            warnings.warn(
                f"no initial state: the most stable macrostate at time {t_end} has stability "
                f"{np.nanmax(stab):.2f}, below min_stability={min_stability}; "
                f"obs[{column!r}] is empty.",
                stacklevel=2,
            )
        shown = {g: g if cluster_key is not None else f"{prefix}{g}" for g in names}
        threshold = float(min_stability)
        if not keep and end == "terminal":  # fates need terminal states: the best supported
            keep, threshold = _above_largest_gap(names, stab)
            import warnings

            listed = ", ".join(
                f"{shown[g]} {s:.2f}" for s, g in sorted(zip(stab, names), reverse=True)
            )
            warnings.warn(
                f"no macrostate at time {t_end} reaches min_stability={min_stability} "
                f"(stability: {listed}); kept those above the largest gap between the "
                f"stabilities ({', '.join(shown[g] for g in keep)}: {threshold:.2f} and up) as "
                "terminal. Give min_stability, n_states or cluster_key to choose otherwise.",
                stacklevel=2,
            )
        out = np.full(adata.n_obs, None, dtype=object)
        out[np.flatnonzero(at)] = [shown[g] if g in keep else None for g in labels]
        columns[column] = pd.Categorical(out, categories=[shown[g] for g in keep])
        every = np.full(adata.n_obs, None, dtype=object)
        every[np.flatnonzero(at)] = [shown[g] for g in labels]
        columns[f"{column}_macrostates"] = pd.Categorical(every, categories=list(shown.values()))
        summary[end] = {
            "time": t_end,
            "states": [shown[g] for g in names],
            # arrays in the order of "states": a dict keyed by names such as "Ery/Mk" comes back
            # from an h5ad as nested dicts
            "stability": np.asarray(stab, dtype=np.float64),
            "size": np.array([int((labels == g).sum()) for g in names], dtype=np.int64),
            "transitions": C.astype(np.float64),
            "silhouette": {str(n): v for n, v in scores.items()},
            # the stability a state needed: min_stability, or where the largest gap fell
            "threshold": threshold,
        }
    adata = adata.copy() if copy else adata
    for column, values in columns.items():
        adata.obs[column] = values
    adata.uns[params_key] = {
        **summary,
        "model": model_digest(model),  # cf.tl.fates reuses these states for this model only
        "cluster_key": cluster_key or "",
        "min_stability": float(min_stability),
        "k": int(k),
        "steps": int(steps),
    }
    return adata if copy else None


def absorbed_fates(adata, model, states, *, k: int = 30, steps: int = 100, tol: float = 1e-6):
    r"""Fates of the last time's cells among the terminal states: a cell of a terminal state is
    that state; a cell of a transient macrostate goes on as the cells that sat where it sits one
    interval earlier went.

    With :math:`N` the landing kernel of the previous time's cells where they sit and :math:`F`
    where the flow takes them (both onto the last time's cells), the cell-level chain
    :math:`S = D^{-1} N^\top F` (:math:`D` the mass sitting on each cell) steps a last-time cell
    to where such cells went. The fates :math:`\Phi` (cells × terminal states) solve
    :math:`\Phi_T = E_T` on terminal cells and :math:`\Phi_t = (S \Phi)_t` on transient ones
    (absorption, as CellRank's fate probabilities on its chain), by fixed-point iteration until
    no entry moves by ``tol``; :math:`S` is applied as :math:`D^{-1} N^\top (F \Phi)`, never formed.

    Parameters
    ----------
    states
        The terminal state of each cell of the last time (``None`` for transient cells), in
        ``obs`` order.

    Returns
    -------
    The terminal states (columns) and :math:`\Phi` (last-time cells × states); a row sums to
    less than 1 by the mass that never reaches a terminal state.
    """
    t_end, t_prev = float(model.course.times[-1]), float(model.course.times[-2])
    names = [g for g in dict.fromkeys(states) if g is not None]
    col = {g: i for i, g in enumerate(names)}
    terminal = np.array([g is not None for g in states])
    E = np.zeros((len(states), len(names)))
    E[np.flatnonzero(terminal), [col[g] for g in np.asarray(states, dtype=object)[terminal]]] = 1.0
    if terminal.all():
        return names, E
    N, F = _sit_and_land(model, t_end, t_prev, k, steps)
    sits = np.asarray(N.sum(0)).ravel()
    inv = np.where(sits > 0, 1.0 / np.maximum(sits, 1e-300), 0.0)[:, None]
    phi = E.copy()
    for _ in range(10_000):
        new = np.where(terminal[:, None], E, inv * (N.T @ (F @ phi)))
        done = np.abs(new - phi).max() < tol
        phi = new
        if done:
            break
    return names, phi
