r"""``cf.tl.push``, ``cf.tl.pull``, ``cf.tl.fates`` and ``cf.tl.couplings``: where cells go,
where they came from, fate probabilities, and transition matrices for CellRank's
``RealTimeKernel``.

Cells are pushed along the learned ODE and spread over the observed cells at the other time.
``push`` and ``couplings`` use :meth:`cellflow.CellFlow.transition_matrix` (the ``k`` nearest
cells, a sparse matrix); ``fates`` and ``pull`` land with the entropic kernel
:math:`e^{-d^2/\varepsilon}` over all of them, :math:`\varepsilon` a fraction ``eps`` of their
mean squared distance (:func:`cellflow.models.landing.kernel_landing`), a width in the data's own
units that does not shrink as the cells grow denser (method guide, "How wide a landing").

**Along the chain of measured times.** ``fates`` and ``pull`` (forward, balanced models, by
default) do not push a cell straight to ``t_to``: with :math:`P_{ab}` the transition matrix of
one interval, from the cells of a measured time :math:`a` to those of the next, :math:`b`, the
label mass of the cells of each time is swept back from ``t_to``,

.. math:: G_{t_\mathrm{to}} = L, \qquad G_a = P_{ab}\, G_b ,

(:math:`L`: cells at ``t_to`` × groups), and a cell's fates are its row of :math:`G` as shares.
Each interval's landing adds its own spread, as a cell's uncertainty grows with the time still
ahead; one straight push of a deterministic flow lands in one spot and gives fates nearer 0 or 1
(the method guide, "Fates without labels", has the comparison). ``chain=False`` pushes straight.

**At scale.** The kernel lands on at most :data:`~cellflow._defaults.FATE_LANDMARKS` cells of a
time (drawn at random, seeded by the model's ``seed``; its width is set by all the cells there).
A time between the cells asked for and ``t_to`` is only landed on, so only its landmarks are
pushed on: the fates of millions of cells cost one push of the cells asked for, and one of a
few thousand cells per interval.

**How sure.** ``fates`` and ``pull`` with ``n_samples=K`` compute their answer K times and
report the mean, the standard deviation and a percentile interval per cell. The K answers come
from K bootstrap replicates of the model (``spread="bootstrap"``, any method: each trained as
the model was, on the cells of every time point resampled with replacement;
:meth:`cellflow.CellFlow.bootstrap`), or from K single paths of the Schrödinger bridge SDE per
cell (``spread="sde"``, SB models). The first says how well the data pin the flow down; the
second, how much a cell's own future varies. Which is calibrated: the method guide, "How sure
the flow is". ``fates`` also writes each cell's fate entropy,
:math:`H = -\sum_f p_f \log p_f / \log n_{\text{fates}}`, 0 when one fate is certain and 1
when all are equally likely.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from .._defaults import FATE_EPS, FATE_LANDMARKS
from .._io import refuse_overwrite
from .._types import FateSpread, whole_number
from ._common import (
    cell_times,
    check_model,
    model_digest,
    obs_index,
    select_cells,
    time_labels,
)


def _time_mask(adata, model, t: float, what: str) -> np.ndarray:
    """The cells of ``adata`` measured at ``t`` (a measured time of the model)."""
    return cell_times(adata, model) == model.course.measured(t, what)


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


def _transitions(model, t_from, t_to, k, steps, sde, **path):
    """The transition matrix from ``t_from`` to ``t_to`` and each source cell's mass at ``t_to``
    (its expected descendants; all 1 for a model without growth). ``path``: ``n_samples`` and
    ``seed`` of the SDE paths."""
    if model.growth is None:
        P = model.transition_matrix(t_from, t_to, k=k, steps=steps, sde=sde, **path)
        return P, np.ones(P.shape[0])
    return model.transition_matrix(
        t_from, t_to, k=k, steps=steps, sde=sde, return_mass=True, **path
    )


def _landing_eps(eps, model) -> float | None:
    """The landing width ``eps`` as used: ``"auto"`` is :data:`~cellflow._defaults.FATE_EPS` for
    a balanced model and ``None`` (the ``k`` nearest cells) for a growth-aware one, whose
    mass-carrying pushes go straight to ``t_to`` and can end away from every measured cell, where
    a kernel of fixed width puts all the weight on the nearest one. Refuses anything else that
    is not a positive number, before any work."""
    if isinstance(eps, str) and eps == "auto":
        return FATE_EPS if model.growth is None else None
    if eps is None:
        return None
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
        raise ValueError(
            f"eps must be a number > 0 (the landing kernel's ε as a fraction of the mean squared "
            f"distance between the cells landed on), 'auto' (the default: {FATE_EPS} for a "
            f"balanced model) or None (the sharp landing on the k nearest cells), got {eps!r}."
        )
    return float(eps)


def _landing_rows(model, t, eps) -> np.ndarray | None:
    """The positions, among the cells at ``t``, that a landing there lands on: at most
    :data:`~cellflow._defaults.FATE_LANDMARKS` of them for the entropic kernel
    (:func:`cellflow.models.landing.landmark_rows`), ``None`` for all."""
    from ..models.landing import landmark_rows

    if eps is None:
        return None
    return landmark_rows(model.course.sizes()[model.course.index(t)], FATE_LANDMARKS, model.seed)


def _landed(
    model,
    t_from,
    t_to,
    G,
    k,
    eps,
    steps,
    sde,
    n_samples=10,
    seed=None,
    mass=False,
    rows=None,
    at_landmarks=False,
):
    r"""Where the label mass ``G`` of the cells at ``t_to`` lands from each cell at ``t_from``
    (cells × groups): :math:`P G` with the transition matrix of :meth:`CellFlow.transition_matrix`
    (the ``k`` nearest cells) for ``eps=None``, else the entropic kernel at relative ``eps``
    (:func:`cellflow.models.landing.kernel_landing`) on the landmarks of ``t_to``
    (:func:`_landing_rows`: only those cells are read, and only their rows of ``G`` are used),
    averaged over ``n_samples`` SDE paths per cell with ``sde``. ``rows``: the positions of the
    cells at ``t_from`` to push (default all; the entropic kernel only); ``at_landmarks``: ``G``
    holds the rows of the landmarks of ``t_to`` only. With ``mass``, also each cell's mass at
    ``t_to`` along its ODE path (all 1 without growth)."""
    from ..models.landing import kernel_landing

    grows = mass and model.growth is not None
    if eps is None:
        path = {"n_samples": n_samples, "seed": seed} if sde else {}
        P = model.transition_matrix(
            t_from, t_to, k=k, steps=steps, sde=sde, return_mass=grows, **path
        )
        P, m = P if grows else (P, None)
        L = P @ G
        L = L.toarray() if hasattr(L, "toarray") else np.asarray(L, dtype=np.float64)
    else:
        cells = None if rows is None else model.course.cells_at(t_from, rows)
        Y, m = model.endpoints(
            t_from,
            t_to,
            cells=cells,
            steps=steps,
            sde=sde,
            n_samples=n_samples,
            seed=seed,
            return_mass=grows,
        )
        paths = int(n_samples) if sde else 1
        pick = _landing_rows(model, t_to, eps)
        scale = model.course.scaler.scale
        L = kernel_landing(
            model.course.scaler.forward(Y),
            model.course.scaler.forward(model.course.cells_at(t_to, pick)),
            G if pick is None or at_landmarks else G[pick],
            eps,
            # the kernel's width is set by all the cells at t_to, not by the landmarks
            spread=float((model.course.moments_at(t_to)[1] / scale**2).sum()),
        )
        if paths > 1:
            L = L.reshape(len(Y) // paths, paths, -1).mean(1)
    if not mass:
        return L
    return L, (np.ones(L.shape[0]) if m is None else m)  # the mass came with the push


def _check_samples(n_samples, spread, confidence, model) -> None:
    """Refuse settings of the uncertainty before any work."""
    if n_samples is None:
        return
    whole_number(
        n_samples,
        "n_samples",
        2,
        " A spread needs at least 2 samples (10 or more for an interval worth reading); leave "
        "n_samples=None for the estimate alone.",
    )
    if spread not in get_args(FateSpread):
        raise ValueError(f"spread must be one of {get_args(FateSpread)}, got {spread!r}.")
    if spread == "sde" and model.score_net is None:
        raise ValueError(
            f"spread='sde' needs an SB model (method='sb'), which learns a score; this one is "
            f"{model.method!r}. Use spread='bootstrap'."
        )
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")


def _samples(model, n_samples, spread, progress):
    """``(model, path)`` for each of the ``n_samples`` answers: the bootstrap replicates with no
    path settings, or the model itself with one SDE path per cell and a seed per sample."""
    if spread == "sde":
        return [(model, {"n_samples": 1, "seed": model.seed + 1 + i}) for i in range(n_samples)]
    return [(rep, {}) for rep in model.bootstrap(n_samples, progress=progress)]


def _spread(values: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Mean, standard deviation and the central ``confidence`` percentile interval over axis 0
    (NaN where every sample is)."""
    import warnings

    lo = 50.0 * (1.0 - float(confidence))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        return {
            "": np.nanmean(values, 0),
            "_std": np.nanstd(values, 0, ddof=1),
            "_low": np.nanpercentile(values, lo, 0),
            "_high": np.nanpercentile(values, 100.0 - lo, 0),
        }


def _prepare(
    adata, model, cells, what: str, t_from, t_to, key_added, overwrite, k, steps, sde, P=True
):
    """Shared checks of push/pull; the selected cells at their time point, the transition matrix
    and the source cells' masses (``None`` for both without ``P``)."""
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
    if not P:
        return at_from, at_to, sel, None, None
    return at_from, at_to, sel, *_transitions(model, t_from, t_to, k, steps, sde)


def _use_chain(chain, model) -> bool:
    """``chain=None``: along the chain of measured times for a balanced model; a growth-aware
    model's fates follow its own paths, which carry the mass (the measured cells of an expanding
    branch are over-represented at every time, and a chain through them over-counts it)."""
    return model.growth is None if chain is None else bool(chain)


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
    n_samples: int | None = None,
    spread: FateSpread = "bootstrap",
    confidence: float = 0.9,
    eps: float | Literal["auto"] | None = "auto",
    k: int = 30,
    steps: int = 100,
    sde: bool = False,
    chain: bool | None = None,
    progress: bool = True,
    overwrite: bool = False,
    copy: bool = False,
):
    """Which cells at ``t_from`` end up in the ``target`` cells at ``t_to`` (fate towards a set).

    Each observed cell at ``t_from`` is followed to ``t_to`` (through every measured time
    between, ``chain``, as :func:`fates`); its value is the share of where it lands on
    ``target`` cells (a probability in [0, 1]): one column of :func:`fates`.

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
    n_samples, spread, confidence
        Compute the answer ``n_samples`` times (at least 2) from bootstrap replicates or SDE
        paths (module docstring) and report its mean and spread, with the central
        ``confidence`` percentile interval. ``None`` (default): the model's answer alone.
    progress
        A progress bar while bootstrap replicates train.
    chain
        As in :func:`fates` (default: along the chain of measured times for a balanced model,
        forward in time; straight to ``t_to`` for a growth-aware one or backwards).
    eps, k
        How a pushed cell lands, as in :func:`fates`.
    t_from, t_to, key_added, steps, sde, overwrite, copy
        As in :func:`push`.

    Returns
    -------
    ``None`` (or the copy); sets ``obs[key_added]`` on the cells at ``t_from`` (NaN at other
    times). With ``n_samples``, that is the mean over the samples, and ``obs[f"{key_added}_std"]``,
    ``obs[f"{key_added}_low"]`` and ``obs[f"{key_added}_high"]`` hold their standard deviation
    and interval.
    """
    _check_samples(n_samples, spread, confidence, model)
    eps = _landing_eps(eps, model)
    whole_number(k, "k")
    extra = [f"{key_added}{s}" for s in ("_std", "_low", "_high")] if n_samples else []
    refuse_overwrite([f"obs[{c!r}]" for c in extra if c in adata.obs], overwrite)
    # times as numbers from here on (a label such as "2" names the measured time 2.0)
    t_from, t_to = model.course.measured(t_from, "t_from"), model.course.measured(t_to, "t_to")
    chain = _use_chain(chain, model) and t_from < t_to
    at_from, at_to, tgt, _, _ = _prepare(
        adata, model, target, "target", t_from, t_to, key_added, overwrite, k, steps, sde, P=False
    )
    import scipy.sparse as sp

    two = sp.csr_matrix(np.c_[tgt, ~tgt].astype(np.float64))  # the target and the rest

    def transitions(m_, sde_, **path):  # each source cell's probability of the target, its mass
        if chain:
            (F,), (mass,) = _chained_fates(m_, [t_from], t_to, two, k, eps, steps, sde_, **path)
            return F[:, 0], mass
        L, mass = _landed(m_, t_from, t_to, two, k, eps, steps, sde_, mass=True, **path)
        return L[:, 0], mass

    def answer(prob, m):
        prob = np.clip(prob, 0.0, 1.0)  # rows sum to 1 up to rounding
        if normalize:
            prob = prob * m
            if prob.sum() == 0:
                raise ValueError("no cell reaches the target; check t_from/t_to or the target set.")
            prob = prob / prob.sum()
        return prob

    values = {"": answer(*transitions(model, sde))}
    if n_samples:
        draws = [
            answer(*transitions(rep, sde or bool(path), **path))
            for rep, path in _samples(model, int(n_samples), spread, progress)
        ]
        values = _spread(np.stack(draws), confidence)
    adata = adata.copy() if copy else adata
    for suffix, value in values.items():
        out = np.full(adata.n_obs, np.nan)
        out[at_from] = value
        adata.obs[f"{key_added}{suffix}"] = out
    return adata if copy else None


def _shares(G) -> np.ndarray:
    """Rows of the label mass ``G`` (cells × groups) as shares of the mass that reached labelled
    cells; NaN for a row that reached none."""
    G = np.asarray(G.todense() if hasattr(G, "todense") else G, dtype=np.float64)
    total = G.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, G / total, np.nan)


def _fate_matrix(model, t_from, t_to, onehot, k, eps, steps, sde, **path):
    """Fate probabilities of a straight push (cells at ``t_from`` × groups; NaN for a cell that
    lands on no labelled cell) and each cell's mass at ``t_to``."""
    L, mass = _landed(model, t_from, t_to, onehot, k, eps, steps, sde, mass=True, **path)
    return _shares(L), mass


def _chained_fates(model, sources, t_to, onehot, k, eps, steps, sde, **path):
    r"""Fates along the chain of measured times (module docstring): with :math:`P_{ab}` the
    one-interval landing from the cells of :math:`a` on those of the next time :math:`b`
    (:func:`_landed`), the label mass of the cells of each time is :math:`G_a = P_{ab} G_b`, swept
    back
    from :math:`G_{t_\mathrm{to}}` = ``onehot``; each time's fates are its rows as shares. The
    chain runs through every trained time between the sources and ``t_to`` (a held-out time
    only when its own cells are asked for). Returns the fates of each source's cells, stacked
    in the order of ``sources``, and their masses at ``t_to`` (along the ODE)."""
    trained = [float(s) for s in model.course.times if s != model.holdout]
    lo = min(sources)
    chain = sorted({*map(float, sources), *(s for s in trained if lo <= s <= t_to)})
    G = {float(t_to): onehot.tocsr().astype(np.float64)}
    wanted = set(map(float, sources))
    on_landmarks = set()  # the times whose G holds the rows of their landmarks only
    for a, b in reversed(list(zip(chain[:-1], chain[1:]))):
        # a time between the sources and t_to is only landed on: its landmarks alone are pushed
        rows = None if a in wanted else _landing_rows(model, a, eps)
        given = dict(at_landmarks=True) if b in on_landmarks else {}
        G[a] = _landed(model, a, b, G[b], k, eps, steps, sde, rows=rows, **given, **path)
        if rows is not None:
            on_landmarks.add(a)
        if b not in wanted:
            del G[b]  # swept past
    fates, masses = [], []
    for s in sources:
        fates.append(_shares(G[float(s)]))
        if model.growth is None or float(s) == float(t_to):
            masses.append(np.ones(fates[-1].shape[0]))
        else:
            masses.append(
                model.push(model.course.cells_at(s), s, t_to, steps=steps, return_mass=True)[1]
            )
    return fates, masses


def _absorbed_labels(adata, model, at_to, columns, col, k, steps):
    """Soft labels of the last time's cells (cells × ``columns``): their fates among the
    terminal states of ``obs["terminal_states"]``, transient cells followed on
    (:func:`cellflow.tl._terminal.absorbed_fates`)."""
    import pandas as pd
    import scipy.sparse as sp

    from ._terminal import absorbed_fates

    states = [None if pd.isna(v) else str(v) for v in adata.obs["terminal_states"][at_to]]
    names, phi = absorbed_fates(adata, model, states, k=k, steps=steps)
    to_col = np.zeros((len(names), len(columns)))
    for t, name in enumerate(names):
        to_col[t, col.get(name, len(columns) - 1)] = 1.0
    return sp.csr_matrix(phi @ to_col)


def fate_entropy(F: np.ndarray) -> np.ndarray:
    """Each row's Shannon entropy divided by the log of the number of fates: 0 when one fate is
    certain, 1 when all are equally likely (NaN rows stay NaN).

    >>> fate_entropy(np.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [0.0, 1.0]
    """
    F = np.asarray(F, dtype=np.float64)
    if F.shape[1] < 2:
        return np.where(np.isfinite(F[:, 0]), 0.0, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(F > 0, -F * np.log(F), 0.0)
    H = terms.sum(1) / np.log(F.shape[1])
    return np.where(np.isfinite(F).all(1), np.clip(H, 0.0, 1.0), np.nan)


def _found_states(adata, model, k: int, steps: int, overwrite: bool) -> None:
    """``obs["terminal_states"]`` found by this model: computed with the defaults of
    :func:`cellflow.tl.terminal_states` when absent, refused when another model found them."""
    from ._terminal import terminal_states

    if "terminal_states" not in adata.obs:
        terminal_states(adata, model, k=k, steps=steps, overwrite=overwrite)
        return
    made_by = dict(adata.uns.get("terminal_states_params", {})).get("model")
    if made_by is not None and made_by != model_digest(model):
        raise ValueError(
            "obs['terminal_states'] was found with another model (other weights or another "
            "held-out time); run cf.tl.terminal_states(adata, model, overwrite=True) for "
            "this one, or pass groupby='terminal_states' to use those states as labels."
        )


def _landing_labels(adata, model, groupby, groups, at_to, t_to, found, k, steps):
    """The fate columns, and each cell of ``t_to``'s one-hot row over them (sparse): its group,
    ``"other"`` for the groups left out, none when unlabelled; a cell of a transient state
    found by :func:`cellflow.tl.terminal_states` (or named as labels) gets the terminal states
    it is absorbed in instead."""
    import scipy.sparse as sp

    labels, present, names = _groups_at(adata, groupby, at_to, groups, t_to)
    columns = names + (["other"] if set(present) - set(names) else [])
    col = {g: i for i, g in enumerate(columns)}
    absorb = found or (
        "terminal" in dict(adata.uns.get(f"{groupby}_params", {}))
        and float(t_to) == float(model.course.times[-1])
    )
    if absorb:
        return columns, _absorbed_labels(adata, model, at_to, columns, col, k, steps)
    labelled = np.array([g is not None for g in labels])
    j = np.array([col.get(g, len(columns) - 1) for g in labels[labelled]], dtype=np.int64)
    onehot = sp.csr_matrix(
        (np.ones(len(j)), (np.flatnonzero(labelled), j)), shape=(len(labels), len(columns))
    )
    return columns, onehot


def _fate_rows(m, chain, sde, *, sources, t_to, onehot, k, eps, steps, **path):
    """Every source time's fates and masses under model ``m``, stacked in the order of
    ``sources``: along the chain of measured times, or pushed straight to ``t_to`` (the cells at
    ``t_to`` take their own labels)."""
    if chain:
        out, masses = _chained_fates(m, sources, t_to, onehot, k, eps, steps, sde, **path)
        return np.concatenate(out), np.concatenate(masses)
    out, masses = [], []
    for s in sources:
        F_s, mass_s = (
            (_shares(onehot), np.ones(onehot.shape[0]))
            if s == t_to
            else _fate_matrix(m, s, t_to, onehot, k, eps, steps, sde, **path)
        )
        out.append(F_s)
        masses.append(mass_s)
    return np.concatenate(out), np.concatenate(masses)


def _shares_of(F0: np.ndarray, m0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The share of cells whose future is each fate (the mean fate of the cells with one), and
    the share of their descendants in it (weighted by the mass each carries)."""
    ok = np.isfinite(F0).all(1)
    if not ok.any():
        nan = np.full(F0.shape[1], np.nan)
        return nan, nan
    ancestors = F0[ok].mean(0)
    return ancestors, (m0[ok, None] * F0[ok]).sum(0) / m0[ok].sum()


def fates(
    adata,
    model,
    groupby: str | None = None,
    *,
    t_from: float | None = None,
    t_to: float | None = None,
    groups=None,
    key_added: str | None = None,
    n_samples: int | None = None,
    spread: FateSpread = "bootstrap",
    confidence: float = 0.9,
    eps: float | Literal["auto"] | None = "auto",
    k: int = 30,
    steps: int = 100,
    sde: bool = False,
    chain: bool | None = None,
    progress: bool = True,
    overwrite: bool = False,
    copy: bool = False,
):
    r"""Fate probabilities: for every cell up to ``t_to`` (or the cells of one time,
    ``t_from``), the share of its landing kernel at ``t_to`` on each group of ``obs[groupby]``
    (as CellRank's fate probabilities, one column per group, each row summing to 1).

    Unlike :func:`pull` towards one set, every cell gets a full fate vector, so two fates can
    be compared even for cells that land on neither (e.g. ``F["Neu"] / (F["Neu"] + F["Mono"])``).

    Parameters
    ----------
    groupby
        A column of ``adata.obs`` (e.g. cell types or clusters) read at the cells of ``t_to``.
        ``None`` (default): the terminal states the flow finds itself,
        ``obs["terminal_states"]``, computed by :func:`cellflow.tl.terminal_states` with its
        defaults when that column is absent (then ``t_to`` must be the last time). A cell that
        lands on last-time cells of a transient macrostate goes on as the cells that sat there
        one interval earlier went (absorption in the flow's cell-level chain,
        :func:`cellflow.tl._terminal.absorbed_fates`), so every cell gets a fate. States found
        with another model (other weights or held-out time) are refused here; name their
        column (``groupby="terminal_states"``) to use them as labels, with the same
        absorption through this model's chain.
    t_from, t_to
        Measured times. ``t_to`` defaults to the last. ``t_from=None`` (default): the cells of
        every time up to ``t_to``, each time's cells pushed to ``t_to``, and the cells at
        ``t_to`` taking their own (soft) label, so that entropy, plots and
        :func:`cellflow.tl.driver_genes` see every time; a number: the cells of that time only.
    groups
        The groups that get a column (default: every group present at ``t_to``); the mass
        landing on cells of other groups goes to a column ``"other"``. Cells whose label is
        missing (NaN) belong to no group: the fates are shares of the mass that lands on
        labelled cells (NaN, with a warning, for a cell that lands on none).
    key_added
        Default ``f"fates_{groupby}"``, and ``"fate"`` for the terminal states found by the flow.
    n_samples, spread, confidence
        Compute the fates ``n_samples`` times (at least 2) from bootstrap replicates of the model
        (``"bootstrap"``, default; trained the first time they are asked for, then reused) or
        single paths of the SB SDE (``"sde"``), and report the mean with the standard deviation
        and the central ``confidence`` percentile interval of each fate (module docstring).
        ``None`` (default): the model's fates alone.
    progress
        A progress bar while bootstrap replicates train.
    chain
        Follow the cells through every measured time between them and ``t_to``: each interval's
        push lands on that time's cells, which go on as they go (a Markov chain of one-interval
        transitions, as moscot composes its couplings), so that the uncertainty of every
        interval adds up. ``False``: one push straight to ``t_to`` and one landing there, which
        gives fates near 0 or 1 for a deterministic flow (method guide, "Fates without labels").
        ``None`` (default): the chain for a balanced model, the straight push for a
        growth-aware one, whose paths carry the mass (the measured cells of an expanding branch
        are over-represented at every time, and a chain through them over-counts it).
    eps
        How wide a pushed cell lands (every interval's landing): it is spread over the cells of
        the next time with the entropic kernel :math:`e^{-d^2/\varepsilon}`, :math:`\varepsilon`
        this fraction of their mean squared distance (moscot's convention of a mean-scaled
        cost), so that where a cell could go is a distance in the data, whatever their number
        (on at most 8,192 of them, drawn at random and seeded, at larger times:
        :func:`cellflow.models.landing.kernel_landing`). ``"auto"`` (default): 0.1 for a balanced
        model (how it was chosen: method guide, "How wide a landing"), the sharp landing for a
        growth-aware one (its straight pushes can end away from every measured cell, where a
        kernel of fixed width lands on the nearest one alone). ``None``: the sharp landing on
        the ``k`` nearest cells (:meth:`cellflow.CellFlow.transition_matrix`).
    k
        Neighbours of the landing with ``eps=None``, and of the terminal states' chain (the
        label-free path and the absorption of transient states).
    steps, sde, overwrite, copy
        As in :func:`push` (``sde`` for every interval's landing).

    Returns
    -------
    ``None`` (or the copy). Sets

    - ``obsm[key_added]``: a DataFrame (index ``obs_names``, one column per group) with the fate
      probabilities of the cells that got fates (see ``t_from``) and NaN elsewhere (with
      ``n_samples``: their mean over the samples);
    - with ``n_samples``, ``obsm[f"{key_added}_std"]``, ``obsm[f"{key_added}_low"]`` and
      ``obsm[f"{key_added}_high"]``: the standard deviation and the interval, laid out alike;
    - ``obs[f"{key_added}_entropy"]``: each cell's fate entropy in [0, 1] (module docstring;
      ``obs["fate_entropy"]`` on the label-free path), NaN at other times;
    - ``uns[f"{key_added}_params"]``: ``groupby``, ``t_from`` (the times whose cells got fates),
      ``t_to``, ``k``, ``eps`` (NaN for the sharp landing), ``sde``, ``n_samples``, ``spread``,
      ``confidence``, the fates' names
      ``groups``, and two summaries, arrays in the order of ``groups``, of the cells of the
      earliest of those times: ``ancestor_share``, the share of them whose future is the group (the
      mean of the fate probabilities), and ``descendant_share``, the share of their
      descendants at ``t_to`` in it (each cell weighted by the mass it carries to ``t_to``).
      Without growth every cell has one descendant and the two are equal; with growth they
      differ when one fate expands: most cells at ``t_to`` may belong to a fate that few cells
      at ``t_from`` take;
    - for a growth-aware model, ``obs[f"{key_added}_mass"]``: each cell's expected
      descendants at ``t_to`` (NaN at other times);
    - on the label-free path, ``obs["terminal_states"]``, ``obs["initial_states"]`` and
      ``uns["terminal_states_params"]`` when they were absent (:func:`cellflow.tl.terminal_states`).

    Examples
    --------
    >>> cf.tl.fates(adata, model, n_samples=10)  # doctest: +SKIP
    >>> adata.obsm["fate"].head(), adata.obs["fate_entropy"].describe()  # doctest: +SKIP
    """
    import pandas as pd

    check_model(adata, model)
    _check_samples(n_samples, spread, confidence, model)
    eps = _landing_eps(eps, model)
    whole_number(k, "k")
    t_to = float(model.course.times[-1]) if t_to is None else t_to
    t_to = model.course.measured(t_to, "t_to")
    # every cell up to t_to (as CellRank's fate probabilities), or the cells of one time
    every = t_from is None
    t_from = float(model.course.times[0]) if every else t_from
    if model.course.measured(t_from, "t_from") > t_to:
        raise ValueError(
            f"t_from={t_from} is after t_to={t_to}: fates run forward in time, from the cells "
            "at t_from to the groups at t_to. Swap them; cf.tl.pull(..., t_from, t_to) takes "
            "the groups at either end."
        )
    found = groupby is None
    if found:
        groupby, key_added = "terminal_states", key_added or "fate"
        if model.course.measured(t_to, "t_to") != float(model.course.times[-1]):
            raise ValueError(
                f"the terminal states live at the last time, {model.course.times[-1]}; leave t_to "
                "at "
                "its default, or give your own labels with groupby=."
            )
    elif groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not a column of adata.obs.")
    key_added = key_added or f"fates_{groupby}"
    fields = [("obsm", key_added + s) for s in ("", *(("_std", "_low", "_high") * bool(n_samples)))]
    fields += [("obs", f"{key_added}_entropy"), ("uns", f"{key_added}_params")]
    refuse_overwrite([f"{f}[{c!r}]" for f, c in fields if c in getattr(adata, f)], overwrite)
    at_to = _time_mask(adata, model, t_to, "t_to")
    adata = adata.copy() if copy else adata
    if found:
        _found_states(adata, model, k, steps, overwrite)
    columns, onehot = _landing_labels(adata, model, groupby, groups, at_to, t_to, found, k, steps)
    sources = [float(s) for s in model.course.times if t_from <= s <= t_to] if every else [t_from]
    rows = [np.flatnonzero(_time_mask(adata, model, s, "t_from")) for s in sources]

    chain = _use_chain(chain, model)
    landing = dict(sources=sources, t_to=t_to, onehot=onehot, k=k, eps=eps, steps=steps)
    F, mass = _fate_rows(model, chain, sde, **landing)
    first = np.arange(len(rows[0]))  # the cells of the earliest source time
    pushed = np.concatenate([np.full(len(r), s != t_to) for s, r in zip(sources, rows)])
    lost = int((np.isnan(F).any(1) & pushed).sum())
    if lost:
        import warnings

        warnings.warn(
            f"{lost} cells land only on cells without a label in obs[{groupby!r}] at "
            f"t_to={t_to}; their fates are NaN.",
            stacklevel=2,
        )
    values = {"": F}
    if n_samples:
        draws = [
            _fate_rows(rep, chain, sde or bool(path), **landing, **path)[0]
            for rep, path in _samples(model, int(n_samples), spread, progress)
        ]
        values = _spread(np.stack(draws), confidence)
        F = values[""]
    at = np.concatenate(rows)
    for suffix, value in values.items():
        out = np.full((adata.n_obs, len(columns)), np.nan)
        out[at] = value
        adata.obsm[f"{key_added}{suffix}"] = pd.DataFrame(
            out, index=obs_index(adata), columns=columns
        )
    H = np.full(adata.n_obs, np.nan)
    H[at] = fate_entropy(F)
    adata.obs[f"{key_added}_entropy"] = H
    ancestors, descendants = _shares_of(F[first], mass[first])  # the earliest cells' (t_from)
    if model.growth is not None:
        m_out = np.full(adata.n_obs, np.nan)
        m_out[at] = mass
        adata.obs[f"{key_added}_mass"] = m_out
    adata.uns[f"{key_added}_params"] = {
        # arrays in the order of "groups" (a dict keyed by names such as "Ery/Mk" comes back
        # from an h5ad as nested dicts)
        "groups": np.array([str(c) for c in columns], dtype=object),
        "ancestor_share": np.asarray(ancestors, dtype=np.float64),
        "descendant_share": np.asarray(descendants, dtype=np.float64),
        "groupby": groupby,
        "t_from": np.asarray(sources, dtype=np.float64),  # the times whose cells got fates
        "t_to": float(t_to),
        "k": int(k),
        "eps": float("nan") if eps is None else float(eps),
        "sde": bool(sde),
        "chain": bool(chain),
        "n_samples": int(n_samples or 0),
        "spread": spread if n_samples else "",
        "confidence": float(confidence),
    }
    return adata if copy else None


def couplings(
    adata,
    model,
    *,
    k: int = 30,
    steps: int = 100,
    key_added: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Transition matrices between consecutive measured times, for CellRank's
    ``RealTimeKernel``, which also needs the time points as a categorical ``obs`` column: this
    function writes one beside ``obs[time_key]`` (left as it is), so that

    >>> rk = cr.kernels.RealTimeKernel(  # doctest: +SKIP
    ...     adata, time_key="day_category", couplings=cf.tl.couplings(adata, model)
    ... )

    runs as written (``time_key="day"`` in the model).

    Parameters
    ----------
    k, steps
        Neighbours of the landing kernel and Euler steps
        (:meth:`cellflow.CellFlow.transition_matrix`).
    key_added
        The categorical column written (default ``f"{time_key}_category"``). An existing column
        with the same categories per cell is kept; another is replaced only with ``overwrite``.

    Returns
    -------
    ``{(t_k, t_k+1): AnnData}``, keyed by the labels of ``obs[time_key]`` (the categories of
    ``obs[key_added]``), each with the cells at ``t_k`` as ``obs``, those at ``t_k+1`` as
    ``var``, and a sparse row-stochastic ``X``. Sets ``obs[key_added]``.
    """
    import anndata as ad
    import pandas as pd

    check_model(adata, model)
    labels = time_labels(adata, model.course.time_key, model.course.times)
    t = cell_times(adata, model)
    key_added = key_added or f"{model.course.time_key}_category"
    category = pd.Categorical(
        [labels[float(v)] for v in t], categories=[labels[float(v)] for v in model.course.times]
    )
    held = adata.obs.get(key_added)
    same = (
        held is not None
        and isinstance(held.dtype, pd.CategoricalDtype)
        and list(held.cat.categories) == list(category.categories)
        and (held.astype(object).to_numpy() == np.asarray(category, dtype=object)).all()
    )
    if not same:
        refuse_overwrite([f"obs[{key_added!r}]"] * (held is not None), overwrite)
        adata.obs[key_added] = category
    out = {}
    for a, b in zip(model.course.times[:-1], model.course.times[1:]):
        P = model.transition_matrix(float(a), float(b), k=k, steps=steps)
        out[(labels[float(a)], labels[float(b)])] = ad.AnnData(
            X=P.astype(np.float64),
            obs=pd.DataFrame(index=adata.obs_names[t == a]),
            var=pd.DataFrame(index=adata.obs_names[t == b]),
        )
    return out
