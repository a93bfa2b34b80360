"""Leave-one-time-point-out evaluation (the protocol of Tong et al. 2024).

For each intermediate time point k: train on all other time points, push the observed cells
at k−1 forward to k with 100 Euler steps, and compare with the held-out cells at k by the
exact W1 (POT ``emd2``, Euclidean cost), W2 and MMD. Two baselines that need no flow sit in
the same table: the previous time point itself, and McCann (displacement) interpolation of
the exact OT plan between k−1 and k+1 at k's position in model time.

With ``fractions``, each flow is also pushed to other places in the merged interval, and the
one closest to the held-out cells is reported. This tells *when* from *where*: the protocol
puts k at its own model time (the middle of the interval for ``time_scale="index"``), which
assumes the cells move at an even pace from k−1 to k+1; if they do not, a flow can be right
about the path and still be scored as wrong. The best fraction uses the held-out cells, so it
is a diagnostic, not a prediction.

Example
-------
>>> import numpy as np, anndata as ad
>>> from cellflow import evaluate_holdout
>>> rng = np.random.default_rng(0)
>>> adata = ad.AnnData(obs={"day": np.repeat([0, 1, 2], 100)})
>>> adata.obsm["X_pca"] = rng.normal(size=(300, 2)) + np.repeat([0, 1, 2], 100)[:, None]
>>> df = evaluate_holdout(adata, "day", methods=["ot"], seeds=[0], steps=20, progress=False)
>>> sorted(df.method.unique())
['McCann OT interpolation', 'OT-CFM', 'previous time point']
"""

from __future__ import annotations

import time

import numpy as np
import ot
import pandas as pd

from ._anndata import get_times
from ._cellflow import CellFlow
from ._methods import cellflow_method
from .metrics import mmd, wasserstein

__all__ = ["evaluate_holdout", "summarize_holdout"]

LABELS = {"ot": "OT-CFM", "sb": "SB-CFM", "icfm": "I-CFM", "mfm": "OT-MFM"}


def _scores(pred: np.ndarray, truth: np.ndarray, max_eval: int, seed: int) -> dict:
    return dict(w1=wasserstein(pred, truth, p=1, max_samples=max_eval, seed=seed),
                w2=wasserstein(pred, truth, p=2, max_samples=max_eval, seed=seed),
                mmd=mmd(pred, truth, max_samples=min(max_eval, 2000), seed=seed))


def _mccann(x0: np.ndarray, x2: np.ndarray, frac: float, max_eval: int, rng: np.random.Generator) -> np.ndarray:
    n = min(len(x0), len(x2), max_eval)
    a = x0[rng.choice(len(x0), n, replace=False)]
    b = x2[rng.choice(len(x2), n, replace=False)]
    P = ot.emd(ot.unif(n), ot.unif(n), ot.dist(a, b), numItermax=2**31 - 1)
    i, j = np.nonzero(P > 0)
    pick = rng.choice(len(i), n, p=P[i, j] / P[i, j].sum())
    return (1 - frac) * a[i[pick]] + frac * b[j[pick]]


def evaluate_holdout(adata, time_key: str, *, methods=("ot", "sb", "icfm"), seeds=(0, 1, 2, 3, 4),
                     use_rep: str = "X_pca", n_pcs: int | None = None, whiten: bool = False,
                     held_out=None, steps: int = 2000, batch_size: int = 512, sigma: float | None = None,
                     time_scale: str = "index", ema_decay: float | None = None, per_interval: bool = False,
                     max_eval: int = 4000, fractions=None, baselines: bool = True, progress: bool = True,
                     verbose: bool | None = None, device: str = "cpu", **train_kwargs) -> pd.DataFrame:
    """Run the leave-one-time-point-out benchmark.

    Parameters
    ----------
    adata, time_key, use_rep, n_pcs, whiten, time_scale, per_interval
        As for :class:`cellflow.CellFlow` (the paper: ``n_pcs=5, whiten=True`` and one shared
        network, ``per_interval=False``; with ``True`` the merged interval around the held-out
        time point has a network of its own).
    methods, seeds
        Flows to train, each once per seed and held-out time.
    held_out
        Times to hold out (default: every intermediate time).
    steps, batch_size, sigma, **train_kwargs
        Training settings (:meth:`cellflow.CellFlow.train`).
    ema_decay
        ``None`` (default): the last weights, as in the paper's protocol, although
        :meth:`cellflow.CellFlow.train` itself averages them (0.999); pass 0.999 to evaluate
        that model (EB, seeds 0–2: W1 0.884 against 0.877 without; Cite 0.819 against 0.818).
    baselines
        Also score the previous time point and McCann interpolation of the exact OT plan (default);
        ``False`` leaves them out, for a second call on the same data whose baselines are known.
    progress
        Show a progress bar while each model trains.
    verbose
        Print one line per trained model (held-out time, method, seed, W1, seconds); default:
        as ``progress``.
    max_eval
        Subsample each side of W1/W2 to at most this many cells (seeded) so that no cost
        matrix exceeds ``max_eval²``.
    fractions
        Optional fractions ``f`` in [0, 1] of the merged interval's model time,
        :math:`\tau = \tau_{k-1} + f(\tau_{k+1} - \tau_{k-1})`: each flow is also pushed there
        (the same 100 Euler steps) and scored by W1, and the columns ``best_fraction`` (the
        ``f`` of least W1) and ``w1_best_fraction`` (that W1) are added. A diagnostic of
        the pace across the interval, not a prediction: it reads the held-out cells.
    device
        Where each flow trains and pushes (``"cpu"``, ``"cuda"``, ...; see :class:`cellflow.CellFlow`).

    Returns
    -------
    A tidy DataFrame: ``method, held_out_time, seed, w1, w2, mmd, seconds`` (metrics in the
    units of the — whitened, if asked — representation), and with ``fractions`` also
    ``best_fraction, w1_best_fraction`` (NaN on the baseline rows).
    """
    verbose = progress if verbose is None else verbose
    fracs = None if fractions is None else np.asarray(fractions, dtype=float).ravel()
    if fracs is not None and (fracs.size == 0 or not np.all((fracs >= 0) & (fracs <= 1))):
        raise ValueError(f"fractions must be values in [0, 1] (parts of the merged interval), got {fractions!r}.")
    _, times = get_times(adata, time_key, min_points=3)
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise ValueError("methods is empty: name at least one flow to evaluate, e.g. methods=['ot'] "
                         "(the baselines are scored beside the flows, not instead of them).")
    for m in methods:  # a typo stops here, before any training
        cellflow_method(m)
    seeds = [seeds] if np.isscalar(seeds) else list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one, e.g. seeds=[0].")
    if isinstance(max_eval, bool) or not isinstance(max_eval, (int, np.integer)) or max_eval < 2:
        raise ValueError(f"max_eval must be a whole number of cells >= 2 (each side of W1/W2 is subsampled to "
                         f"it), got {max_eval!r}.")
    held = list(times[1:-1]) if held_out is None else list(np.atleast_1d(held_out))
    for i, h in enumerate(held):
        h = h.item() if isinstance(h, np.generic) else h
        try:
            held[i] = float(h)
        except (TypeError, ValueError):
            held[i] = None
        if held[i] is None or held[i] not in times[1:-1]:
            raise ValueError(f"held_out={h!r} is not an intermediate measured time; choose from "
                             f"{times[1:-1].tolist()} (the values of obs[{time_key!r}], neither the first nor the last).")
    rows = []
    base = CellFlow(adata, time_key, use_rep=use_rep, n_pcs=n_pcs, whiten=whiten, method="icfm",
                    time_scale=time_scale)  # data access and scaling only; built once
    for h in held:
        k = int(np.flatnonzero(times == h)[0])
        prev, nxt = times[k - 1], times[k + 1]
        sc = base.scaler.forward if whiten else np.asarray  # metrics in whitened or original units
        x_prev, x_true, x_next = sc(base.cells_at(prev)), sc(base.cells_at(h)), sc(base.cells_at(nxt))
        frac = (base.model_time(h) - base.model_time(prev)) / (base.model_time(nxt) - base.model_time(prev))
        if baselines:
            rows.append(dict(method="previous time point", held_out_time=h, seed=0, seconds=0.0,
                             **_scores(x_prev, x_true, max_eval, 0)))
            s = time.perf_counter()
            mid = _mccann(x_prev, x_next, frac, max_eval, np.random.default_rng(0))
            rows.append(dict(method="McCann OT interpolation", held_out_time=h, seed=0,
                             seconds=time.perf_counter() - s, **_scores(mid, x_true, max_eval, 0)))
        for m in methods:
            for seed in seeds:
                model = CellFlow(adata, time_key, use_rep=use_rep, n_pcs=n_pcs, whiten=whiten, method=m,
                                 sigma=sigma if m != "sb" else None, time_scale=time_scale, per_interval=per_interval,
                                 seed=seed, device=device)
                s = time.perf_counter()
                model.train(steps=steps, batch_size=batch_size, holdout=h, ema_decay=ema_decay, progress=progress,
                            **train_kwargs)
                secs = time.perf_counter() - s
                pred = sc(model.push(model.cells_at(prev), prev, h, method="euler", steps=100))
                rows.append(dict(method=LABELS[model.method], held_out_time=h, seed=seed, seconds=secs,
                                 **_scores(pred, x_true, max_eval, seed)))
                if fracs is not None:  # the protocol's own place is scored already
                    rows[-1].update(_best_fraction(model, prev, nxt, fracs, x_true, sc, max_eval, seed,
                                                   known=(frac, rows[-1]["w1"])))
                if verbose:
                    r = rows[-1]
                    best = (f"  (best fraction {r['best_fraction']:g}: W1 {r['w1_best_fraction']:.3f})"
                            if fracs is not None else "")
                    print(f"held out {h:g}  {r['method']:<7} seed {seed}: W1 {r['w1']:.3f}  {secs:.0f}s{best}",
                          flush=True)
    columns = ["method", "held_out_time", "seed", "w1", "w2", "mmd", "seconds"]
    return pd.DataFrame(rows, columns=columns + ([] if fracs is None else ["best_fraction", "w1_best_fraction"]))


def _best_fraction(model: CellFlow, prev: float, nxt: float, fracs: np.ndarray, x_true: np.ndarray, sc,
                   max_eval: int, seed: int, known: tuple[float, float]) -> dict:
    """Push the cells at ``prev`` to each fraction of the model time from ``prev`` to ``nxt``;
    the fraction of least W1 to ``x_true`` and that W1. ``known`` is a fraction already scored
    (the protocol's) with its W1, which is not pushed again."""
    t0, t1 = model.model_time(prev), model.model_time(nxt)
    x0, w1 = model.cells_at(prev), []
    for f in fracs:
        if np.isclose(f, known[0], rtol=0.0, atol=1e-12):
            w1.append(known[1])
            continue
        pred = sc(model.push(x0, prev, model.measured_time(t0 + f * (t1 - t0)), method="euler", steps=100))
        w1.append(wasserstein(pred, x_true, p=1, max_samples=max_eval, seed=seed))
    i = int(np.argmin(w1))
    return dict(best_fraction=float(fracs[i]), w1_best_fraction=float(w1[i]))


def summarize_holdout(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: W1/W2/MMD averaged over held-out times for each seed, then mean ± std over seeds."""
    cols = ["w1", "w2", "mmd", "seconds"] + (["w1_best_fraction"] if "w1_best_fraction" in df else [])
    per_seed = df.groupby(["method", "seed"])[cols].mean()
    g = per_seed.groupby("method")
    mean = g.mean()
    std = g.std().fillna(0.0).mask(mean.isna())  # one seed: 0; a column a method lacks: NaN
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    out["n_seeds"] = g.size()
    return out.sort_values("w1_mean")
