r"""Growth for :class:`cellflow.CellFlow`: cells that divide and die.

A cell at model time :math:`\tau` carries a mass :math:`m` (its expected number of descendants,
relative to itself) that follows its path by

.. math:: \frac{dm}{d\tau} = g(\tau, x)\, m, \qquad m(\tau_1) = m(\tau_0)\,
          \exp\!\int_{\tau_0}^{\tau_1} g(\tau, x_\tau)\, d\tau ,

so a constant rate gives :math:`e^{g \Delta\tau}`.

**How much each cell grows over an interval.** For the interval from time point :math:`k` to
:math:`l` (:math:`\Delta s` apart in ``obs[time_key]``), every cell :math:`i` of :math:`k` gets a
log mass change :math:`r_i`:

- ``growth="prior"``: the prior, :math:`r_i = g^{\text{prior}}_i\,\Delta s`, from a rate per unit of
  ``obs[time_key]`` in ``obs[growth_key]`` (e.g. :func:`cellflow.pp.score_growth`);
- ``growth="learned"``: what the data imply, in two steps.

  1. *The prior's scale.* Gene scores rank cells by proliferation well, but the published
     curves that turn them into rates fix a scale that a given data set need not have. The
     prior is multiplied by the :math:`c \in [0, 2]` (a grid of 0.05) under which the
     prior-weighted cells of each time point are closest to the next time point:
     :math:`c^* = \arg\min_c \sum_{(k,l)} W_2^2\big(\sum_i \tfrac{e^{c\,r_i}}{Z_c}\delta_{x_i},\,
     \tfrac1m\sum_j \delta_{y_j}\big)` (exact OT, at most 2,000 cells per time point), the
     growth that best explains how the composition changes along the prior's direction
     (:func:`calibrate_prior`). Without a prior there is nothing to scale.
  2. *The posterior.* One unbalanced OT plan between *all* cells of the two time points
     (:class:`cellflow.couplings.UnbalancedOT`; source weights :math:`a_i = e^{c^* r_i}/n`,
     uniform without a prior, relaxed by :math:`\tau_a`; the target uniform with the same total
     and held), and :math:`r_i = \log(n\,(P\mathbf 1)_i)`: the posterior growth of
     Waddington-OT and moscot. Solving it once per interval on every cell, rather than per
     minibatch, keeps the sampling noise of a minibatch out of the growth (the method guide,
     "Growth", has the comparison).

**Training** (simulation-free). Each step draws the source cells of an interval in proportion to
their mass :math:`e^{r_i}` (the targets uniformly), so the method's own minibatch coupling (OT,
entropic, independent) pairs a mass-weighted source with the later time point: a cell expected
to have twice the descendants is paired twice as often. The growth network
:math:`g_\phi(\tau, x)` is regressed beside the velocity on each pair's constant rate,
:math:`g_\phi(\tau, x_\tau) \approx r_i / \Delta\tau` at the pair's point of the path, as flow
matching regresses the velocity on the straight path's constant speed (unbalanced flow
matching: Eyring et al., ICLR 2024).
"""

from __future__ import annotations

import warnings
from typing import get_args

import numpy as np
import torch

from .._defaults import GROWTH_TAU
from .._types import Growth
from ..couplings import UnbalancedOT, check_tau

__all__ = [
    "check_growth",
    "growth_tau",
    "growth_prior",
    "check_prior_scale",
    "interval_log_growth",
    "calibrate_prior",
]

#: the grid of prior scales that :func:`calibrate_prior` searches
SCALE_GRID = np.round(np.arange(0.0, 2.0001, 0.05), 2)
#: cells per time point in the calibration's exact OT problems
MAX_CALIBRATION_CELLS = 2000

#: the largest change of a time point's population over one interval that a growth prior may
#: imply (either way) before it is refused as a unit error (a rate per day read per hour)
MAX_POPULATION_CHANGE = 1e4

#: cells per time point of the interval plan of learned growth (n × n float64: 200 MB at 5,000)
MAX_PLAN_CELLS = 5000


def check_growth(growth, growth_key, adata) -> None:
    """Refuse a growth setting that cannot work, naming the fix."""
    if growth is None:
        if growth_key is not None:
            raise ValueError(
                f"growth_key={growth_key!r} is given but growth=None: pass growth='prior' (use "
                "the key as the growth) or growth='learned' (use it as the prior to learn from)."
            )
        return
    if growth not in get_args(Growth):
        raise ValueError(f"growth must be None, 'prior' or 'learned', got {growth!r}.")
    if growth == "prior" and growth_key is None:
        raise ValueError(
            "growth='prior' needs growth_key, the obs column of each cell's growth rate per unit "
            "of time (cf.pp.score_growth(adata, organism=...) writes 'growth_prior')."
        )
    if growth_key is not None and growth_key not in adata.obs:
        raise KeyError(
            f"growth_key={growth_key!r} is not a column of adata.obs; run "
            "cf.pp.score_growth(adata, organism=...) (it writes 'growth_prior') or name your "
            "column."
        )


def growth_tau(growth, tau_a, tau=None) -> float | None:
    """τ_a of learned growth's interval plan, moscot's name for the relaxation of the source
    marginal (``None``: :data:`~cellflow._defaults.GROWTH_TAU`); refused for the other settings,
    where it would silently do nothing (``growth="prior"`` uses the prior exactly). ``tau`` is
    its name before 0.1.1, accepted with a ``FutureWarning`` until 0.2."""
    if tau is not None:
        if tau_a is not None:
            raise ValueError("give tau_a only (tau is its old name).")
        warnings.warn(
            "tau is now tau_a (moscot's name; tau is model time everywhere else in cellflow); "
            "the old name stops working in cellflow 0.2.",
            FutureWarning,
            stacklevel=3,
        )
        tau_a = tau
    if growth != "learned":
        if tau_a is not None:
            raise ValueError(
                f"tau_a={tau_a!r} relaxes the interval plan of growth='learned' only; with "
                f"growth={growth!r} it would do nothing ("
                + ("the prior's masses are used exactly" if growth == "prior" else "no growth")
                + "). Drop tau_a, or use growth='learned'."
            )
        return None
    if isinstance(tau_a, (tuple, list)):
        raise ValueError(
            f"tau_a={tau_a!r}: a CellFlow relaxes only the source of each interval's plan (the "
            "target is held); give one number in (0, 1]."
        )
    return check_tau(GROWTH_TAU if tau_a is None else tau_a, "tau_a")[0]


def check_prior_scale(prior, groups_times, growth_key: str, time_key: str) -> None:
    """Refuse a prior whose rates imply an implausible change of a time point's population over
    an interval (more than :data:`MAX_POPULATION_CHANGE` times, either way): almost always a
    rate per day read per hour (or the like), which would push masses by many orders of
    magnitude without a word. ``prior``: the rates of each time point's cells;
    ``groups_times``: the measured times, in the same order."""
    for k in range(len(prior) - 1):
        span = float(groups_times[k + 1] - groups_times[k])
        r = np.asarray(prior[k], dtype=np.float64) * span
        change = float(np.log(np.mean(np.exp(r - r.max()))) + r.max())
        if abs(change) > np.log(MAX_POPULATION_CHANGE):
            raise ValueError(
                f"the growth prior obs[{growth_key!r}] makes the cells of {groups_times[k]:g} "
                f"{'grow' if change > 0 else 'shrink'} {np.exp(abs(change)):.3g}-fold by "
                f"{groups_times[k + 1]:g} (rates per unit of obs[{time_key!r}]; mean "
                f"{np.mean(prior[k]):.3g}); that is not a plausible population change. Is it a "
                f"rate per day with times in hours? Score it in the unit of obs[{time_key!r}] "
                "(cf.pp.score_growth(..., time_unit='hour'), cellflow fit --time-unit hour), or "
                "rescale the column."
            )


def growth_prior(
    adata, growth_key: str | None, groups: list[np.ndarray]
) -> list[np.ndarray] | None:
    """The prior rate (per unit of ``obs[time_key]``, log scale) of each cell, per time point."""
    if growth_key is None:
        return None
    col = adata.obs[growth_key]
    try:
        rate = np.asarray(col, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"obs[{growth_key!r}] must hold numbers (a growth rate per unit of time), got "
            f"dtype {col.dtype}."
        ) from None
    bad = ~np.isfinite(rate)
    if bad.any():
        raise ValueError(
            f"obs[{growth_key!r}] has {int(bad.sum())} NaN or infinite values (e.g. cell "
            f"{adata.obs_names[np.flatnonzero(bad)[0]]!r}); every cell needs a finite growth rate."
        )
    return [rate[idx] for idx in groups]


def calibrate_prior(store, pairs, priors, spans, *, seed: int) -> float:
    """The scale :math:`c^*` of the prior (see the module docstring): for each candidate ``c`` of
    :data:`SCALE_GRID`, the sum over the intervals ``pairs`` of the exact squared-Euclidean OT
    cost between the cells of the first time point weighted by ``exp(c * prior * span)`` and the
    uniform cells of the second; the ``c`` of least cost (the smallest, on a tie)."""
    import ot

    g = torch.Generator().manual_seed(int(seed))
    problems = []
    for (i, j), span in zip(pairs, spans):
        pick0 = torch.randperm(store.sizes()[i], generator=g)[:MAX_CALIBRATION_CELLS].sort().values
        pick1 = torch.randperm(store.sizes()[j], generator=g)[:MAX_CALIBRATION_CELLS].sort().values
        x0, x1 = store.draw(i, pick0).double(), store.draw(j, pick1).double()
        C = torch.cdist(x0, x1).pow(2).numpy()
        r = np.asarray(priors[i], dtype=np.float64)[pick0.numpy()] * span
        problems.append((C, r - r.max(), np.full(len(pick1), 1.0 / len(pick1))))
    costs = []
    for c in SCALE_GRID:
        total = 0.0
        for C, r, b in problems:
            a = np.exp(c * r)
            total += float(ot.emd2(a / a.sum(), b, C, numItermax=10**7))
        costs.append(total)
    return float(SCALE_GRID[int(np.argmin(costs))])


def interval_log_growth(
    store,
    i: int,
    j: int,
    prior: np.ndarray | None,
    span: float,
    *,
    learned: bool,
    tau_a: float,
    eps: float,
    seed: int,
    max_cells: int = MAX_PLAN_CELLS,
) -> torch.Tensor:
    """Each cell's log mass change over the interval from time point ``i`` to ``j`` (float64,
    in the order of time point ``i``'s cells; see the module docstring). A time point with more
    than ``max_cells`` cells is planned on that many drawn at random (seeded), and every other
    cell takes the mean of its 5 nearest planned cells."""
    n0, n1 = store.sizes()[i], store.sizes()[j]
    r0 = np.zeros(n0) if prior is None else np.asarray(prior, dtype=np.float64) * span
    if not learned:
        return torch.from_numpy(r0)
    g = torch.Generator().manual_seed(int(seed))
    pick0 = torch.randperm(n0, generator=g)[:max_cells].sort().values
    pick1 = torch.randperm(n1, generator=g)[:max_cells].sort().values
    x0, x1 = store.draw(i, pick0).double(), store.draw(j, pick1).double()
    prior = torch.from_numpy(r0)[pick0]
    a = torch.exp(prior - float(r0.max()))
    a = a / a.sum()
    b = torch.full((len(pick1),), 1.0 / len(pick1), dtype=torch.float64)
    P = UnbalancedOT(eps, (tau_a, 1.0), relative=True, tol=1e-6).plan(x0, x1, a, b)
    r = torch.log((P.sum(1) / a).clamp_min(1e-30)) + prior
    if len(pick0) == n0:
        return r
    # the cells left out of the plan: the mean of their 5 nearest planned cells
    from sklearn.neighbors import NearestNeighbors

    everyone = store.draw(i, torch.arange(n0)).numpy()
    _, nn = NearestNeighbors(n_neighbors=5).fit(x0.numpy()).kneighbors(everyone)
    out = r.numpy()[nn].mean(1)
    out[pick0.numpy()] = r.numpy()
    return torch.from_numpy(out)
