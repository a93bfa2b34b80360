r"""An embedded, simulated differentiation time course with ground-truth velocities.

Cells follow a two-dimensional latent SDE with a pitchfork bifurcation:

.. math::

    dz_1 = r\,dt + s_1\,dW_1, \qquad
    dz_2 = \big(a\,(z_1 - z_b)\,z_2 - z_2^3\big)\,dt + s_2\,dW_2 ,

so progenitors (:math:`z_2 \approx 0`) mature along :math:`z_1` and, once :math:`z_1` passes
:math:`z_b`, commit to branch A (:math:`z_2 > 0`) or branch B (:math:`z_2 < 0`). Gene
:math:`g` has log-rate :math:`x_g = b_g + W_g\,\phi(z)` for five programmes
:math:`\phi` = (progenitor, maturation, branch A, branch B, timer), and a cell's counts are
Poisson with mean :math:`L\,\mathrm{softmax}(x)_g`. Each cell is sampled destructively at one of
the sampling times, as in a real time course.

The true velocity is that of the expected normalised, log-transformed expression that scanpy's
``normalize_total(target_sum=1e4)`` and ``log1p`` produce,
:math:`y_g = \log(1 + 10^4 p_g)` with :math:`p = \mathrm{softmax}(x)`:
:math:`\dot y_g = \frac{10^4 p_g}{1 + 10^4 p_g}\,(\dot x_g - \sum_h p_h \dot x_h)`, with
:math:`\dot x = W\,J_\phi(z)\,f(z)` along the deterministic drift :math:`f`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulated_differentiation", "true_velocity_pca"]

TARGET_SUM = 1e4
#: the latent SDE: maturation speed r, bifurcation point z_b, pitchfork strength a, the noise
#: (s_1, s_2) and the Euler–Maruyama step
RATE, BIFURCATION, PITCHFORK, NOISE, DT = 1.0, 1.5, 1.5, (0.15, 0.2), 0.01


def _sig(u):
    return 1.0 / (1.0 + np.exp(-u))


def _programmes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ(z), shape (n, 5), and its Jacobian, shape (n, 5, 2)."""
    z1, z2 = z[:, 0], z[:, 1]
    m = _sig(z1 - 2.0)  # maturation
    dm = m * (1 - m)
    a, b = _sig(3.0 * z2), _sig(-3.0 * z2)  # branch identity
    da, db = 3.0 * a * (1 - a), -3.0 * b * (1 - b)
    phi = np.stack([1.0 - m, m, a * m, b * m, np.tanh(z1 / 2.5)], 1)
    J = np.zeros((len(z), 5, 2))
    J[:, 0, 0], J[:, 1, 0] = -dm, dm
    J[:, 2, 0], J[:, 2, 1] = a * dm, da * m
    J[:, 3, 0], J[:, 3, 1] = b * dm, db * m
    J[:, 4, 0] = (1 - np.tanh(z1 / 2.5) ** 2) / 2.5
    return phi, J


def _drift(z: np.ndarray) -> np.ndarray:
    """The deterministic part :math:`f(z)` of the latent SDE."""
    z1, z2 = z[:, 0], z[:, 1]
    return np.stack([np.full(len(z), RATE), PITCHFORK * (z1 - BIFURCATION) * z2 - z2**3], 1)


def _initial_states(rng, n: int) -> np.ndarray:
    r"""Progenitors at the first time: :math:`z_1 \sim N(0, 0.3^2)`, :math:`z_2 \sim N(0,
    0.05^2)`."""
    return np.stack([rng.normal(0.0, 0.3, n), rng.normal(0.0, 0.05, n)], 1)


def _evolve(rng, z, start, stop, growth=None):
    r"""Move each state ``z[i]`` from time ``start[i]`` to ``stop[i]`` by Euler–Maruyama (in
    place), all on one clock; with ``growth(z)`` (a net rate), also return each state's
    :math:`\int g\,dt`, its log number of descendants."""
    log_weight = np.zeros(len(z))
    t, end = float(start.min()), float(stop.max())
    while t < end - 1e-12:
        h = min(DT, end - t)
        move = (stop > t + 1e-12) & (start <= t + 1e-12)
        if growth is not None:
            log_weight[move] += growth(z[move]) * h
        noise = rng.normal(size=(int(move.sum()), 2)) * np.array(NOISE) * np.sqrt(h)
        z[move] += _drift(z[move]) * h + noise
        t += h
    return z, log_weight


def _check_course(n_genes: int, times) -> np.ndarray:
    if n_genes < 20:
        raise ValueError(f"n_genes must be at least 20, got {n_genes}.")
    times = np.asarray(sorted(times), dtype=float)
    if len(times) < 2:
        raise ValueError("give at least 2 sampling times.")
    return times


def _softmax(x: np.ndarray) -> np.ndarray:
    p = np.exp(x - x.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _counts(rng, p: np.ndarray, library_size: float) -> np.ndarray:
    r"""Poisson counts with mean :math:`L\,p` around a log-normal library size per cell."""
    lib = library_size * np.exp(rng.normal(0.0, 0.3, len(p)))
    return rng.poisson(p * lib[:, None]).astype(np.float32)


def simulated_differentiation(
    n_cells_per_time: int = 300,
    times=(0, 1, 2, 3, 4, 5),
    n_genes: int = 60,
    *,
    library_size: float = 3000.0,
    n_futures: int = 32,
    random_state: int = 0,
):
    """Simulate a branching differentiation time course (counts, no download).

    Parameters
    ----------
    n_cells_per_time
        Cells sampled at each time.
    times
        Sampling times (days); at least 2.
    n_genes
        Number of genes (at least 20): five programmes of co-regulated genes plus housekeeping
        genes.
    library_size
        Median total counts per cell.
    n_futures
        Futures simulated from every sampled cell to the last time, for its true fate
        (``obs["true_fate_A"]``); 0 skips them. They draw from their own random stream, so the
        cells and counts do not depend on ``n_futures``.
    random_state
        Seeds the whole simulation.

    Returns
    -------
    AnnData with

    - ``X``: raw counts (float32, cells × genes), also in ``layers["counts"]``;
    - ``obs["day"]``: sampling time; ``obs["branch"]``: ``progenitor``, ``A`` or ``B``;
      ``obs["latent_time"]``: the latent maturation :math:`z_1`;
    - ``obsm["X_latent"]``: the latent state :math:`z`; ``obsm["velocity_latent"]``: its drift;
    - ``layers["velocity_true"]``: the true velocity of log1p-normalised expression per day;
    - ``var["programme"]``: which programme drives each gene (``branch_A`` and ``branch_B`` are
      the true driver genes of the two fates);
    - ``obs["true_fate_A"]``: the share of the cell's ``n_futures`` simulated futures that are in
      branch A (:math:`z_2 > 0`) at the last time, its true fate probability;
      ``obs["commits_to"]``: ``A`` or ``B``, the branch its first future ends in, had the cell
      not been sampled (one draw of its fate, for calibration: among cells with
      ``true_fate_A`` = 0.3, about 30 % commit to A). At the last time both are read off the cell
      itself.

    Examples
    --------
    >>> import cellflow as cf
    >>> adata = cf.datasets.simulated_differentiation(n_cells_per_time=50, random_state=0)
    >>> adata.shape, sorted(adata.obs["day"].unique().tolist())
    ((300, 60), [0, 1, 2, 3, 4, 5])
    """
    import anndata as ad

    times = _check_course(n_genes, times)
    rng = np.random.default_rng(random_state)
    n = n_cells_per_time * len(times)
    day = np.repeat(times, n_cells_per_time)
    # each cell evolves until the day it is sampled
    z, _ = _evolve(rng, _initial_states(rng, n), np.full(n, times[0]), day)

    # gene programmes: 5 programmes with the remaining genes housekeeping
    programme_names = np.array(
        ["progenitor", "maturation", "branch_A", "branch_B", "timer", "housekeeping"]
    )
    n_prog = max(4, (n_genes - 8) // 5)
    labels = np.full(n_genes, 5)
    for k in range(5):
        labels[k * n_prog : (k + 1) * n_prog] = k
    W = np.zeros((n_genes, 5))
    for g in range(n_genes):
        if labels[g] < 5:
            W[g, labels[g]] = rng.uniform(2.0, 4.0)
            W[g, rng.integers(5)] += rng.normal(0.0, 0.5)  # some cross-talk
    base = rng.normal(0.0, 0.7, n_genes)

    phi, J = _programmes(z)
    x = base + phi @ W.T
    p = _softmax(x)
    counts = _counts(rng, p, library_size)

    f = _drift(z)
    xdot = np.einsum("gk,nkj,nj->ng", W, J, f)
    w = TARGET_SUM * p / (1.0 + TARGET_SUM * p)
    ydot = w * (xdot - (p * xdot).sum(1, keepdims=True))

    branch = np.where(z[:, 0] < BIFURCATION + 0.5, "progenitor", np.where(z[:, 1] > 0, "A", "B"))
    obs = pd.DataFrame(
        {
            "day": day.astype(int) if np.all(times == times.astype(int)) else day,
            "branch": pd.Categorical(branch, categories=["progenitor", "A", "B"]),
            "latent_time": z[:, 0],
        },
        index=[f"cell{i}" for i in range(n)],
    )
    if int(n_futures) > 0:
        in_A = _futures_in_A(z, day, times[-1], int(n_futures), random_state)
        obs["true_fate_A"] = in_A.mean(1)
        obs["commits_to"] = pd.Categorical(np.where(in_A[:, 0], "A", "B"), categories=["A", "B"])
    elif n_futures != 0:
        raise ValueError(f"n_futures must be a whole number >= 0, got {n_futures!r}.")
    var = pd.DataFrame(
        {"programme": pd.Categorical(programme_names[labels])},
        index=[f"gene{g}" for g in range(n_genes)],
    )
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.layers["velocity_true"] = ydot.astype(np.float32)
    adata.obsm["X_latent"] = z.astype(np.float32)
    adata.obsm["velocity_latent"] = f.astype(np.float32)
    adata.uns["simulation"] = {
        "rate": RATE,
        "bifurcation_z1": BIFURCATION,
        "pitchfork_a": PITCHFORK,
        "noise": list(NOISE),
        "target_sum": TARGET_SUM,
        "random_state": int(random_state),
        "loadings": W.astype(np.float64),
        "base": base.astype(np.float64),
    }
    return adata


def _futures_in_A(z, day, end: float, n_futures: int, random_state: int) -> np.ndarray:
    """Whether each of ``n_futures`` futures of every state ``z[i]`` (sampled at ``day[i]``) is
    in branch A at ``end``, shape (n_cells, n_futures); a random stream of their own."""
    rng = np.random.default_rng([int(random_state), 1])
    fz = np.repeat(z, n_futures, axis=0)
    fz, _ = _evolve(rng, fz, np.repeat(day, n_futures), np.full(len(fz), end))
    return (fz[:, 1] > 0).reshape(-1, n_futures)


def expected_log_expression(z: np.ndarray, loadings: np.ndarray, base: np.ndarray) -> np.ndarray:
    """:math:`y = \\log(1 + 10^4\\,\\mathrm{softmax}(b + W\\phi(z)))` for latent states ``z``."""
    phi, _ = _programmes(np.asarray(z, dtype=np.float64))
    return np.log1p(TARGET_SUM * _softmax(base + phi @ np.asarray(loadings).T))


def true_velocity_pca(adata, *, layer: str = "velocity_true", use_rep: str = "X_pca") -> np.ndarray:
    """The true gene-space velocity ``layers[layer]`` projected on the PCs of ``varm["PCs"]``.

    Valid after ``sc.pp.normalize_total(target_sum=1e4)``, ``sc.pp.log1p`` and ``sc.pp.pca``
    (with or without ``highly_variable`` genes), without ``sc.pp.scale``.
    """
    if layer not in adata.layers:
        raise KeyError(
            f"adata.layers has no {layer!r}; simulate with "
            "cellflow.datasets.simulated_differentiation."
        )
    if "PCs" not in adata.varm:
        raise KeyError("adata.varm has no 'PCs'; run sc.pp.pca(adata) first.")
    V = np.asarray(adata.layers[layer], dtype=np.float64)
    PCs = np.asarray(adata.varm["PCs"], dtype=np.float64)
    width = np.shape(adata.obsm[use_rep])[1] if use_rep in adata.obsm else PCs.shape[1]
    return V @ PCs[:, :width]
