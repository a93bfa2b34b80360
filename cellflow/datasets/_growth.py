r"""A simulated time course whose branches grow at known rates: branch A doubles each day, branch
B loses 30 % a day, and progenitors neither grow nor shrink.

The cells move by the latent SDE of :func:`cellflow.datasets.simulated_differentiation` (a
pitchfork: progenitors mature along :math:`z_1` and commit to A, :math:`z_2 > 0`, or B). Each
cell divides and dies at rates that depend on where it is,

.. math::

    \beta(z) = \beta_0 + m(z_1)\,[s_A(z_2)\,b_A + s_B(z_2)\,b_B], \qquad
    \delta(z) = \delta_0 + m(z_1)\,[s_A(z_2)\,d_A + s_B(z_2)\,d_B],

with commitment :math:`m(z_1) = \sigma(3 (z_1 - 2))`, branch identities
:math:`s_A = \sigma(3 z_2)`, :math:`s_B = 1 - s_A`, and the net growth rate
:math:`g = \beta - \delta` is 0 in progenitors, :math:`\log 2` in branch A and
:math:`\log 0.7` in branch B (per day).

**Sampling as in an experiment.** A lineage that starts as one cell at day 0 and follows the
path :math:`z(t)` has :math:`w = \exp\int_0^t g(z(s))\,ds` descendants at time :math:`t` in
expectation. For each day an independent pool of lineages is simulated, and a fixed number
of cells is drawn from it with probabilities proportional to :math:`w`: the population's
composition shifts towards A while the number of cells sequenced per day stays the same.

**Genes.** Besides the five programmes of the differentiation simulator, a proliferation
programme (expression rising with :math:`\beta`) and an apoptosis programme (rising with
:math:`\delta`) are carried by genes named after real markers of the human sets shipped in
:mod:`cellflow.pp._markers`, so that :func:`cellflow.pp.score_growth` finds them.

**Truth.** For every sampled cell, ``n_futures`` independent futures are run to the last day:
``true_fate_A`` is the share of those futures that end in A (what an ancestor-fate estimate
should give), ``true_fate_A_descendants`` the share of their descendants' mass in A (what a balanced
coupling, which sees only the later population, tends to report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._types import whole_number
from ..pp._markers import HUMAN_APOPTOSIS, HUMAN_PROLIFERATION
from ._simulated import (
    BIFURCATION,
    _check_course,
    _counts,
    _drift,
    _evolve,
    _initial_states,
    _programmes,
    _sig,
    _softmax,
)

__all__ = ["simulated_growth"]

#: per-day net growth rates of the two branches: A doubles, B keeps 70 %
GROWTH_A, GROWTH_B = float(np.log(2.0)), float(np.log(0.7))
_BASE = 0.4  # progenitors: births = deaths
_BIRTH = {"A": 1.0, "B": 0.3}  # births per day in committed cells; deaths follow from g
#: log-rate loadings of the proliferation and apoptosis genes, smaller than the lineage genes'
#: so that their scores stay where the published birth–death curves of
#: :func:`cellflow.pp.score_growth` respond, as real scores do (method guide, "Growth")
GROWTH_LOADINGS = (0.6, 1.2)


def _rates(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Birth and death rates per day at latent states ``z``."""
    m = _sig(3.0 * (z[:, 0] - 2.0))
    a = _sig(3.0 * z[:, 1])
    birth_A, birth_B = _BIRTH["A"], _BIRTH["B"]
    death_A, death_B = birth_A - GROWTH_A, birth_B - GROWTH_B
    beta = _BASE + m * (a * (birth_A - _BASE) + (1 - a) * (birth_B - _BASE))
    delta = _BASE + m * (a * (death_A - _BASE) + (1 - a) * (death_B - _BASE))
    return beta, delta


def simulated_growth(
    n_cells_per_time: int = 300,
    times=(0, 1, 2, 3, 4, 5),
    n_genes: int = 60,
    *,
    n_growth_genes: int = 12,
    pool_factor: int = 10,
    n_futures: int = 32,
    library_size: float = 3000.0,
    random_state: int = 0,
):
    """Simulate a branching time course in which branch A doubles daily and branch B shrinks.

    Parameters
    ----------
    n_cells_per_time
        Cells sequenced at each time (the same every day, whatever the population's size).
    times
        Sampling times (days); at least 2.
    n_genes
        Genes of the five differentiation programmes and housekeeping genes (at least 20).
    n_growth_genes
        Genes of the proliferation programme, and as many of the apoptosis programme.
    pool_factor
        Lineages simulated per sequenced cell, from which the cells are drawn by their mass.
    n_futures
        Futures run from each sampled cell to the last day for its true fate.
    library_size, random_state
        Median counts per cell; the seed of the whole simulation.

    Returns
    -------
    AnnData with raw counts in ``X`` (and ``layers["counts"]``) and

    - ``obs["day"]``, ``obs["branch"]`` (``progenitor``, ``A``, ``B``), ``obs["latent_time"]``;
    - ``obs["true_growth_rate"]``: the net growth rate per day, ``obs["true_birth_rate"]``,
      ``obs["true_death_rate"]``;
    - ``obs["true_fate_A"]``: the probability that the cell's future ends in A;
      ``obs["true_fate_A_descendants"]``: the share of its descendants' mass in A;
      ``obs["commits_to"]``: ``A`` or ``B``, whichever is likelier;
    - ``obsm["X_latent"]``, ``obsm["velocity_latent"]``;
    - ``var["programme"]``: ``progenitor``, ``maturation``, ``branch_A``, ``branch_B``, ``timer``,
      ``housekeeping``, ``proliferation`` or ``apoptosis``;
    - ``uns["simulation"]``: the rates, and ``population_size``, the population per day relative
      to day 0.

    Examples
    --------
    >>> import cellflow as cf
    >>> adata = cf.datasets.simulated_growth(n_cells_per_time=50, random_state=0)
    >>> adata.shape
    (300, 84)
    >>> bool(adata.obs.groupby("branch", observed=True)["true_growth_rate"].mean()["A"] > 0.5)
    True
    """
    import anndata as ad

    times = _check_course(n_genes, times)
    whole_number(n_cells_per_time, "n_cells_per_time", 2)
    n_growth_genes = int(n_growth_genes)
    if not 1 <= n_growth_genes <= min(len(HUMAN_PROLIFERATION), len(HUMAN_APOPTOSIS)):
        raise ValueError(f"n_growth_genes must be between 1 and 97, got {n_growth_genes}.")
    if int(pool_factor) < 2 or int(n_futures) < 1:
        raise ValueError("pool_factor must be at least 2 and n_futures at least 1.")
    rng = np.random.default_rng(random_state)

    def growth(z):
        beta, delta = _rates(z)
        return beta - delta

    n = int(n_cells_per_time)
    pool = n * int(pool_factor)
    stop = np.repeat(times, pool)
    z, logw = _evolve(
        rng, _initial_states(rng, len(stop)), np.full(len(stop), times[0]), stop, growth
    )
    chosen, size = [], []
    for k, s in enumerate(times):
        w = np.exp(logw[k * pool : (k + 1) * pool])
        size.append(float(w.mean()))
        chosen.append(k * pool + rng.choice(pool, n, replace=False, p=w / w.sum()))
    chosen = np.concatenate(chosen)
    z, day = z[chosen], stop[chosen]

    # each cell's futures to the last day: its fate as an ancestor, and its descendants' share
    K = int(n_futures)
    fz = np.repeat(z, K, axis=0)
    fz, flogw = _evolve(rng, fz, np.repeat(day, K), np.full(len(fz), times[-1]), growth)
    in_A = (fz[:, 1] > 0).reshape(-1, K)
    fw = np.exp(flogw).reshape(-1, K)
    fate_A = in_A.mean(1)
    fate_A_desc = (in_A * fw).sum(1) / fw.sum(1)

    # genes: the five differentiation programmes, housekeeping, proliferation, apoptosis
    programme_names = np.array(
        ["progenitor", "maturation", "branch_A", "branch_B", "timer", "housekeeping"]
        + ["proliferation", "apoptosis"]
    )
    n_prog = max(4, (n_genes - 8) // 5)
    labels = np.full(n_genes + 2 * n_growth_genes, 5)
    for k in range(5):
        labels[k * n_prog : (k + 1) * n_prog] = k
    labels[n_genes : n_genes + n_growth_genes] = 6
    labels[n_genes + n_growth_genes :] = 7
    G = len(labels)
    W = np.zeros((G, 7))
    for g in range(G):
        if labels[g] < 5:
            W[g, labels[g]] = rng.uniform(2.0, 4.0)
            W[g, rng.integers(5)] += rng.normal(0.0, 0.5)  # some cross-talk
        elif labels[g] >= 6:  # growth genes vary less: see GROWTH_LOADINGS
            W[g, labels[g] - 1] = rng.uniform(*GROWTH_LOADINGS)
    base = rng.normal(0.0, 0.7, G)

    beta, delta = _rates(z)
    phi, _ = _programmes(z)
    prolif = (beta - _BIRTH["B"]) / (_BIRTH["A"] - _BIRTH["B"])  # 0 … 1
    d_lo, d_hi = _BIRTH["A"] - GROWTH_A, _BIRTH["B"] - GROWTH_B
    apopt = (delta - d_lo) / (d_hi - d_lo)
    phi = np.column_stack([phi, prolif, apopt])
    x = base + phi @ W.T
    counts = _counts(rng, _softmax(x), library_size)

    names = [f"gene{g}" for g in range(n_genes)]
    names += list(HUMAN_PROLIFERATION[:n_growth_genes]) + list(HUMAN_APOPTOSIS[:n_growth_genes])
    branch = np.where(z[:, 0] < BIFURCATION + 0.5, "progenitor", np.where(z[:, 1] > 0, "A", "B"))
    obs = pd.DataFrame(
        {
            "day": day.astype(int) if np.all(times == times.astype(int)) else day,
            "branch": pd.Categorical(branch, categories=["progenitor", "A", "B"]),
            "latent_time": z[:, 0],
            "true_growth_rate": beta - delta,
            "true_birth_rate": beta,
            "true_death_rate": delta,
            "true_fate_A": fate_A,
            "true_fate_A_descendants": fate_A_desc,
            "commits_to": pd.Categorical(np.where(fate_A >= 0.5, "A", "B"), categories=["A", "B"]),
        },
        index=[f"cell{i}" for i in range(len(z))],
    )
    var = pd.DataFrame(
        {"programme": pd.Categorical(programme_names[labels])}, index=pd.Index(names)
    )
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.obsm["X_latent"] = z.astype(np.float32)
    adata.obsm["velocity_latent"] = _drift(z).astype(np.float32)
    adata.uns["simulation"] = {
        "growth_A": GROWTH_A,
        "growth_B": GROWTH_B,
        "times": times.tolist(),
        "population_size": size,
        "random_state": int(random_state),
    }
    return adata
