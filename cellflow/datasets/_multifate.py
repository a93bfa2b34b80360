r"""A simulated time course with three or more fates and graded commitment, and each cell's true
fate probabilities.

Cells mature along :math:`z_1` and choose a fate in the plane :math:`w = z_2 + i z_3` (a
complex number):

.. math::

    dz_1 = r\,dt + s_1\,dW_1, \qquad
    dw = \big(a\,(z_1 - z_b)\,w - |w|^2 w + \beta\,\bar w^{\,k-1}\big)\,dt + s_2\,dW_w .

Before :math:`z_b` the origin attracts (progenitors); past it the origin turns unstable and
:math:`\beta\,\bar w^{k-1}` makes :math:`k` directions :math:`\theta_j = 2\pi j / k` the stable
ones, so that each cell ends in one of :math:`k` fates. Noise keeps commitment graded: a cell
near the origin late is still undecided, one far along a direction is not. A cell's true fate
probabilities are the shares of its simulated futures (from its state, on their own random
stream) that end nearest each direction at the last time.

Genes are driven by programmes, as in :func:`cellflow.datasets.simulated_differentiation`:
progenitor, maturation, one per fate (:math:`m \cdot \mathrm{softmax}_j(\kappa |w| \cos(\theta -
\theta_j))`), and two **confounders** that carry no fate: a cell-cycle-like oscillation with a
random phase per cell and a per-cell stress level; the rest are housekeeping genes. Counts are
Poisson around a log-normal library size.

Example
-------
>>> import cellflow as cf
>>> a = cf.datasets.simulated_multifate(n_cells_per_time=40, n_futures=8, random_state=0)
>>> a.obsm["true_fates"].shape, list(a.obsm["true_fates"].columns)
((240, 3), ['F1', 'F2', 'F3'])
>>> bool(abs(a.obsm["true_fates"].sum(1) - 1).max() < 1e-12)
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._simulated import _check_course, _counts, _softmax

__all__ = ["simulated_multifate"]

#: maturation speed r, bifurcation point z_b, its strength a, the k-fold term β, the noise
#: (s_1, s_2), the Euler–Maruyama step, and how sharply a fate's genes follow its direction (κ)
RATE, BIFURCATION, STRENGTH, SYMMETRY, NOISE, DT, SHARPNESS = (
    1.0,
    1.5,
    1.5,
    0.6,
    (0.15, 0.25),
    0.01,
    3.0,
)


def _drift(z: np.ndarray, k: int) -> np.ndarray:
    w = z[:, 1] + 1j * z[:, 2]
    lam = STRENGTH * (z[:, 0] - BIFURCATION)
    dw = lam * w - np.abs(w) ** 2 * w + SYMMETRY * np.conj(w) ** (k - 1)
    return np.stack([np.full(len(z), RATE), dw.real, dw.imag], 1)


def _evolve(rng, z, start, stop, k: int):
    """Move each state ``z[i]`` from ``start[i]`` to ``stop[i]`` (in place), on one clock."""
    t, end = float(start.min()), float(stop.max())
    scale = np.array([NOISE[0], NOISE[1], NOISE[1]])
    while t < end - 1e-12:
        h = min(DT, end - t)
        move = (stop > t + 1e-12) & (start <= t + 1e-12)
        noise = rng.normal(size=(int(move.sum()), 3)) * scale * np.sqrt(h)
        z[move] += _drift(z[move], k) * h + noise
        t += h
    return z


def _nearest_direction(z: np.ndarray, k: int) -> np.ndarray:
    """The fate (0..k-1) whose direction :math:`2\\pi j/k` is nearest each state's angle."""
    theta = np.arctan2(z[:, 2], z[:, 1]) % (2 * np.pi)
    return np.rint(theta / (2 * np.pi / k)).astype(int) % k


def _programmes(z: np.ndarray, k: int, phase: np.ndarray, stress: np.ndarray) -> np.ndarray:
    """Programme activities, shape (n, k + 5): progenitor, maturation, the k fates, timer,
    cell cycle, stress."""
    m = 1.0 / (1.0 + np.exp(-(z[:, 0] - 2.0)))
    r, theta = np.hypot(z[:, 1], z[:, 2]), np.arctan2(z[:, 2], z[:, 1])
    directions = 2 * np.pi * np.arange(k) / k
    identity = _softmax(SHARPNESS * r[:, None] * np.cos(theta[:, None] - directions[None, :]))
    cycle = 0.5 * (1 + np.sin(phase + 2 * np.pi * z[:, 0]))
    return np.column_stack([1 - m, m, identity * m[:, None], np.tanh(z[:, 0] / 2.5), cycle, stress])


def simulated_multifate(
    n_cells_per_time: int = 250,
    times=(0, 1, 2, 3, 4, 5),
    n_genes: int = 80,
    *,
    n_fates: int = 3,
    library_size: float = 3000.0,
    n_futures: int = 64,
    random_state: int = 0,
):
    """Simulate a time course whose progenitors choose among ``n_fates`` fates (counts).

    Parameters
    ----------
    n_cells_per_time
        Cells sampled at each time.
    times
        Sampling times (days); at least 2.
    n_genes
        Number of genes (at least ``4 * (n_fates + 5)``): programmes of co-regulated genes plus
        housekeeping genes.
    n_fates
        Number of fates (at least 2).
    library_size
        Median total counts per cell.
    n_futures
        Futures simulated from every sampled cell to the last time, for its true fate
        probabilities; at least 1.
    random_state
        Seeds the whole simulation.

    Returns
    -------
    AnnData with

    - ``X``: raw counts (float32), also in ``layers["counts"]``;
    - ``obs["day"]``; ``obs["fate"]``: the fate a last-day cell is in (``F1`` ... ``Fk``, or
      ``progenitor`` while it is still near the origin), ``progenitor`` at earlier days;
    - ``obsm["true_fates"]``: a DataFrame (``F1`` ... ``Fk``) of each cell's true fate
      probabilities, the shares of its ``n_futures`` futures ending nearest each fate's
      direction; ``obs["commits_to"]``: the fate its first future ends in (one draw, for
      calibration), read off the cell itself at the last day;
    - ``obsm["X_latent"]``: the latent state :math:`(z_1, z_2, z_3)`;
    - ``var["programme"]``: which programme drives each gene (``fate_F1`` ... are the true
      drivers; ``cell_cycle`` and ``stress`` are confounders that carry no fate).
    """
    import anndata as ad

    k = int(n_fates)
    if k < 2:
        raise ValueError(f"n_fates must be at least 2, got {n_fates!r}.")
    n_prog = k + 5
    if n_genes < 4 * n_prog:
        raise ValueError(f"n_genes must be at least {4 * n_prog} for {k} fates, got {n_genes}.")
    if int(n_futures) < 1:
        raise ValueError(f"n_futures must be a whole number >= 1, got {n_futures!r}.")
    times = _check_course(n_genes, times)
    rng = np.random.default_rng(random_state)
    n = n_cells_per_time * len(times)
    day = np.repeat(times, n_cells_per_time)
    z0 = np.column_stack(
        [rng.normal(0.0, 0.3, n), rng.normal(0.0, 0.05, n), rng.normal(0.0, 0.05, n)]
    )
    z = _evolve(rng, z0, np.full(n, times[0]), day, k)
    phase, stress = rng.uniform(0, 2 * np.pi, n), rng.gamma(2.0, 0.25, n)

    names = ["progenitor", "maturation", *[f"fate_F{j + 1}" for j in range(k)], "timer"]
    names += ["cell_cycle", "stress", "housekeeping"]
    per = max(4, (n_genes - 8) // n_prog)
    labels = np.full(n_genes, n_prog)
    for j in range(n_prog):
        labels[j * per : (j + 1) * per] = j
    W = np.zeros((n_genes, n_prog))
    for g in range(n_genes):
        if labels[g] < n_prog:
            W[g, labels[g]] = rng.uniform(2.0, 4.0)
            W[g, rng.integers(n_prog)] += rng.normal(0.0, 0.5)  # some cross-talk
    base = rng.normal(0.0, 0.7, n_genes)
    counts = _counts(rng, _softmax(base + _programmes(z, k, phase, stress) @ W.T), library_size)

    fates = [f"F{j + 1}" for j in range(k)]
    futures_rng = np.random.default_rng([int(random_state), 1])
    fz = _evolve(
        futures_rng,
        np.repeat(z, n_futures, axis=0),
        np.repeat(day, n_futures),
        np.full(n * n_futures, times[-1]),
        k,
    )
    ends = _nearest_direction(fz, k).reshape(n, n_futures)
    truth = np.stack([(ends == j).mean(1) for j in range(k)], 1)
    last = day == times[-1]
    own = _nearest_direction(z, k)
    truth[last] = np.eye(k)[own[last]]
    commits = np.where(last, own, ends[:, 0])
    decided = last & (z[:, 0] > BIFURCATION + 0.5) & (np.hypot(z[:, 1], z[:, 2]) > 0.3)
    fate = np.where(decided, np.array(fates)[own], "progenitor")
    index = [f"cell{i}" for i in range(n)]
    obs = pd.DataFrame(
        {
            "day": day.astype(int) if np.all(times == times.astype(int)) else day,
            "fate": pd.Categorical(fate, categories=["progenitor", *fates]),
            "commits_to": pd.Categorical(np.array(fates)[commits], categories=fates),
        },
        index=index,
    )
    var = pd.DataFrame(
        {"programme": pd.Categorical(np.array(names)[labels])},
        index=[f"gene{g}" for g in range(n_genes)],
    )
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.obsm["X_latent"] = z.astype(np.float32)
    adata.obsm["true_fates"] = pd.DataFrame(truth, index=index, columns=fates)
    adata.uns["simulation"] = {
        "n_fates": k,
        "rate": RATE,
        "bifurcation_z1": BIFURCATION,
        "strength_a": STRENGTH,
        "symmetry_beta": SYMMETRY,
        "noise": list(NOISE),
        "random_state": int(random_state),
        "n_futures": int(n_futures),
    }
    return adata
