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

from ._defaults import (
    BENCHMARK_METHODS,
    BENCHMARK_OT_PLAN,
    BENCHMARK_SEEDS,
    BENCHMARK_WHITEN,
    MAX_EVAL,
    STEPS,
    TIME_SCALE,
    USE_REP,
)
from ._types import Growth, OTPlan, TimeScale
from .course import TimeCourse
from .course.read import get_times, paper_n_pcs
from .metrics import mmd, wasserstein
from .models import cellflow_spec
from .models._growth import check_growth, growth_tau
from .models.cells import CellFlow

__all__ = ["evaluate_holdout", "summarize_holdout"]


def _scores(pred: np.ndarray, truth: np.ndarray, max_eval: int, seed: int) -> dict:
    return dict(
        w1=wasserstein(pred, truth, p=1, max_samples=max_eval, seed=seed),
        w2=wasserstein(pred, truth, p=2, max_samples=max_eval, seed=seed),
        mmd=mmd(pred, truth, max_samples=min(max_eval, 2000), seed=seed),
    )


def _mccann(
    x0: np.ndarray, x2: np.ndarray, frac: float, max_eval: int, rng: np.random.Generator
) -> np.ndarray:
    n = min(len(x0), len(x2), max_eval)
    a = x0[rng.choice(len(x0), n, replace=False)]
    b = x2[rng.choice(len(x2), n, replace=False)]
    P = ot.emd(ot.unif(n), ot.unif(n), ot.dist(a, b), numItermax=2**31 - 1)
    i, j = np.nonzero(P > 0)
    pick = rng.choice(len(i), n, p=P[i, j] / P[i, j].sum())
    return (1 - frac) * a[i[pick]] + frac * b[j[pick]]


def _checked(
    adata, time_key, use_rep, n_pcs, methods, seeds, held_out, max_eval, fractions, growth_args
):
    """:func:`evaluate_holdout`'s arguments checked before anything trains (a typo in a method,
    a time that is not intermediate, ...): the measured times, the width, the methods, seeds and
    held-out times as lists, the fractions as an array (or ``None``) and growth's ``tau_a``
    (``growth_args``: growth, growth_key, tau_a and its old name tau)."""
    growth, growth_key, tau_a, tau = growth_args
    fracs = None if fractions is None else np.asarray(fractions, dtype=float).ravel()
    if fracs is not None and (fracs.size == 0 or not np.all((fracs >= 0) & (fracs <= 1))):
        raise ValueError(
            f"fractions must be values in [0, 1] (parts of the merged interval), got {fractions!r}."
        )
    _, times = get_times(adata, time_key, min_points=3)
    n_pcs = paper_n_pcs(adata, use_rep) if n_pcs is None else n_pcs
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise ValueError(
            "methods is empty: name at least one flow to evaluate, e.g. methods=['ot'] "
            "(the baselines are scored beside the flows, not instead of them)."
        )
    for m in methods:  # a typo stops here, before any training
        cellflow_spec(m)
    check_growth(growth, growth_key, adata)
    tau_a = growth_tau(growth, tau_a, tau)
    geodesic = [m for m in methods if cellflow_spec(m).geodesic]  # any name of OT-MFM
    if growth is not None and geodesic:
        raise ValueError(f"growth is not available for OT-MFM; leave {geodesic} out of methods.")

    seeds = [seeds] if np.isscalar(seeds) else list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one, e.g. seeds=[0].")
    if isinstance(max_eval, bool) or not isinstance(max_eval, (int, np.integer)) or max_eval < 2:
        raise ValueError(
            f"max_eval must be a whole number of cells >= 2 (each side of W1/W2 is subsampled to "
            f"it), got {max_eval!r}."
        )
    held = list(times[1:-1]) if held_out is None else list(np.atleast_1d(held_out))
    for i, h in enumerate(held):
        h = h.item() if isinstance(h, np.generic) else h
        try:
            held[i] = float(h)
        except (TypeError, ValueError):
            held[i] = None
        if held[i] is None or held[i] not in times[1:-1]:
            raise ValueError(
                f"held_out={h!r} is not an intermediate measured time; choose from "
                f"{times[1:-1].tolist()} (the values of obs[{time_key!r}], neither the first nor "
                "the last)."
            )
    return times, n_pcs, methods, seeds, held, fracs, tau_a


def _new_model(adata, time_key, method: str, seed: int, sigma, fit: dict) -> CellFlow:
    """One flow of the benchmark; SB-CFM keeps its own σ, which sets its coupling."""
    own = cellflow_spec(method).coupling == "sinkhorn"
    return CellFlow(adata, time_key, method=method, sigma=None if own else sigma, seed=seed, **fit)


def _baseline_rows(h, x_prev, x_true, x_next, frac, max_eval, done_keys) -> list[dict]:
    """The two baselines' rows for held-out time ``h`` (those not already ``done``): the previous
    time point as it is, and McCann's interpolation between the neighbours at ``frac``."""
    rows = []
    if ("previous time point", h, 0) not in done_keys:
        rows.append(
            dict(
                method="previous time point",
                held_out_time=h,
                seed=0,
                seconds=0.0,
                **_scores(x_prev, x_true, max_eval, 0),
            )
        )
    if ("McCann OT interpolation", h, 0) not in done_keys:
        s = time.perf_counter()
        mid = _mccann(x_prev, x_next, frac, max_eval, np.random.default_rng(0))
        rows.append(
            dict(
                method="McCann OT interpolation",
                held_out_time=h,
                seed=0,
                seconds=time.perf_counter() - s,
                **_scores(mid, x_true, max_eval, 0),
            )
        )
    return rows


def _flow_scores(model, prev, h, nxt, x_true, sc, max_eval, seed, growth, fracs) -> dict:
    """A trained flow's scores at held-out time ``h``: the cells of ``prev`` pushed there
    (Euler, 100 steps) against the held-out cells ``x_true``, both through ``sc``; with growth
    also the mass-weighted W1, with ``fracs`` also the best place along the interval."""
    pushed = model.push(
        model.course.cells_at(prev), prev, h, solver="euler", steps=100, return_mass=bool(growth)
    )
    pred = sc(pushed[0] if growth else pushed)
    row = _scores(pred, x_true, max_eval, seed)
    if growth:
        row["w1_mass"] = wasserstein(
            pred, x_true, p=1, max_samples=max_eval, seed=seed, x_weights=pushed[1]
        )
    if fracs is not None:  # the protocol's own place is scored already
        c = model.course
        frac = (c.model_time(h) - c.model_time(prev)) / (c.model_time(nxt) - c.model_time(prev))
        row.update(
            _best_fraction(
                model, prev, nxt, fracs, x_true, sc, max_eval, seed, known=(frac, row["w1"])
            )
        )
    return row


def evaluate_holdout(
    adata,
    time_key: str,
    *,
    methods=BENCHMARK_METHODS,
    seeds=BENCHMARK_SEEDS,
    use_rep: str = USE_REP,
    n_pcs: int | None = None,
    whiten: bool = BENCHMARK_WHITEN,
    held_out=None,
    steps: int = STEPS,
    batch_size: int | None = None,
    sigma: float | None = None,
    time_scale: TimeScale = TIME_SCALE,
    ema_decay: float | None = None,
    ot_plan: OTPlan = BENCHMARK_OT_PLAN,
    per_interval: bool = False,
    growth: Growth | None = None,
    growth_key: str | None = None,
    tau_a: float | None = None,
    max_eval: int = MAX_EVAL,
    fractions=None,
    baselines: bool = True,
    progress: bool = True,
    verbose: bool | None = None,
    device: str = "cpu",
    done: pd.DataFrame | None = None,
    on_row=None,
    **train_kwargs,
) -> pd.DataFrame:
    """Run the leave-one-time-point-out benchmark.

    Parameters
    ----------
    adata, time_key, use_rep, time_scale, per_interval
        As for :class:`cellflow.CellFlow` (the paper: one shared network, ``per_interval=False``;
        with ``True`` the merged interval around the held-out time point has a network of its own).
    n_pcs, whiten
        The paper's protocol by default, so that W1 compares with published numbers: the 5
        leading columns of ``use_rep`` (or all of a narrower one, such as a 2-D layout), each
        standardised. To score the model you fit on your own data, pass its settings
        (``n_pcs=50, whiten=False`` for :class:`cellflow.CellFlow`'s defaults on scanpy's PCA).
    methods, seeds
        Flows to train, each once per seed and held-out time.
    growth, growth_key, tau_a
        Train growth-aware flows (:class:`cellflow.CellFlow`; labelled e.g.
        ``"OT-CFM + learned growth"``) and add the column ``w1_mass``: W1 with each predicted
        cell weighted by the mass it carries to the held-out time (on baseline rows, their W1).
    held_out
        Times to hold out (default: every intermediate time).
    steps, batch_size, sigma, **train_kwargs
        Training settings (:meth:`cellflow.CellFlow.train`).
    ot_plan
        ``"minibatch"`` (default): a new plan per minibatch, as in the paper's protocol, although
        :meth:`cellflow.CellFlow.train` itself solves one whole plan per interval where it fits
        (``"auto"``); pass ``"auto"`` to evaluate that model (the two score alike on EB: method
        guide, "Whole plans").
    ema_decay
        ``None`` (default): the last weights, as in the paper's protocol, although
        :meth:`cellflow.CellFlow.train` itself averages them (0.999); pass 0.999 to evaluate
        that model (the two score alike here: method guide, "The weight average").
    baselines
        Also score the previous time point and McCann interpolation of the exact OT plan (default);
        ``False`` leaves them out, for a second call on the same data whose baselines are known.
    progress
        Show a progress bar while each model trains.
    verbose
        Print the plan first (how many models, of how many steps, and about how long, timed
        from a short training run of each method), then one line per trained model (held-out
        time, method, seed, W1, seconds); default: as ``progress``.
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
        Where each flow trains and pushes (``"cpu"``, ``"cuda"``, ...; see
        :class:`cellflow.CellFlow`).
    done
        The table of an earlier run with the same settings: its rows are kept, and each
        (method, held-out time, seed) found there is not trained again. ``cellflow evaluate
        --resume`` passes the CSV it wrote.
    on_row
        Called with the table so far after each new row, e.g. to write it to disk as the run
        goes (``cellflow evaluate`` writes its CSV so).

    Returns
    -------
    A tidy DataFrame: ``method, held_out_time, seed, w1, w2, mmd, seconds`` (metrics in the
    units of the — whitened, if asked — representation), with ``growth`` also ``w1_mass``, and
    with ``fractions`` also ``best_fraction, w1_best_fraction`` (NaN on the baseline rows).
    """
    verbose = progress if verbose is None else verbose
    growth_args = (growth, growth_key, tau_a, train_kwargs.pop("tau", None))  # tau: tau_a's
    times, n_pcs, methods, seeds, held, fracs, tau_a = _checked(  # old name
        adata, time_key, use_rep, n_pcs, methods, seeds, held_out, max_eval, fractions, growth_args
    )

    def label(m: str) -> str:
        return cellflow_spec(m).label + (f" + {growth} growth" if growth else "")

    extra = _extra_columns(fracs is not None, growth is not None)
    done_keys, rows = _earlier_rows(done, extra)
    fit = dict(
        use_rep=use_rep,
        n_pcs=n_pcs,
        whiten=whiten,
        time_scale=time_scale,
        per_interval=per_interval,
        device=device,
    )
    train = dict(
        steps=steps, batch_size=batch_size, ema_decay=ema_decay, ot_plan=ot_plan, **train_kwargs
    )

    if growth:
        fit.update(growth=growth, growth_key=growth_key, tau_a=tau_a)

    def model_for(m: str, seed: int) -> CellFlow:
        return _new_model(adata, time_key, m, seed, sigma, fit)

    todo = [
        (h, m, s) for h in held for m in methods for s in seeds if (label(m), h, s) not in done_keys
    ]
    if verbose:
        print(
            _plan_text(
                todo,
                len(held) * len(methods) * len(seeds),
                steps,
                _estimate_seconds(model_for, todo, train, max_eval) if todo else {},
            ),
            flush=True,
        )
    base = TimeCourse(
        adata, time_key, **{k: fit[k] for k in ("use_rep", "n_pcs", "whiten", "time_scale")}
    )
    sc = base.scaler.forward if whiten else np.asarray  # metrics in whitened or original units

    def add(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(_table(rows, extra))

    for h in held:
        k = int(np.flatnonzero(times == h)[0])
        prev, nxt = times[k - 1], times[k + 1]
        x_prev, x_true, x_next = (
            sc(base.cells_at(prev)),
            sc(base.cells_at(h)),
            sc(base.cells_at(nxt)),
        )
        frac = (base.model_time(h) - base.model_time(prev)) / (
            base.model_time(nxt) - base.model_time(prev)
        )
        if baselines:
            for row in _baseline_rows(h, x_prev, x_true, x_next, frac, max_eval, done_keys):
                add({**row, **({"w1_mass": None} if growth else {})})
        for m in methods:
            for seed in seeds:
                if (label(m), h, seed) in done_keys:
                    continue
                model = model_for(m, seed)
                s = time.perf_counter()
                model.train(holdout=h, progress=progress, **train)
                secs = time.perf_counter() - s
                row = dict(
                    method=label(m),
                    held_out_time=h,
                    seed=seed,
                    seconds=secs,
                    **_flow_scores(model, prev, h, nxt, x_true, sc, max_eval, seed, growth, fracs),
                )
                add(row)
                if verbose:
                    _print_row(row)
    table = _table(rows, extra)
    _warn_if_no_better(table)
    return table


def _print_row(row: dict) -> None:
    """One line of progress: a flow's held-out W1 and training time (and its best fraction)."""
    best = (
        f"  (best fraction {row['best_fraction']:g}: W1 {row['w1_best_fraction']:.3f})"
        if "best_fraction" in row
        else ""
    )
    print(
        f"held out {row['held_out_time']:g}  {row['method']:<7} seed {row['seed']}: "
        f"W1 {row['w1']:.3f}  {row['seconds']:.0f}s{best}",
        flush=True,
    )


#: a flow whose held-out W1 is not at least this much below the previous time point's is warned
#: about: it carries little of the course's motion in this representation
NO_BETTER = 0.95


def _warn_if_no_better(table: pd.DataFrame) -> None:
    """Warn for each flow and held-out time where the flow's mean W1 over seeds is not clearly
    below that of the previous time point (the cells not moved at all), naming the usual fix."""
    import warnings

    base = table[table["method"] == "previous time point"].set_index("held_out_time")["w1"]
    baselines = ("previous time point", "McCann OT interpolation")
    flows = table[~table["method"].isin(baselines)]
    for (method, h), w1 in flows.groupby(["method", "held_out_time"])["w1"].mean().items():
        if h in base.index and w1 > NO_BETTER * float(base[h]):
            warnings.warn(
                f"held out {h:g}: {method} (W1 {w1:.3g}) is no better than the previous time "
                f"point (W1 {float(base[h]):.3g}): the flow carries little of the course's motion "
                "in this representation. Try fewer PCs (n_pcs=10, --n-pcs 10) or whiten=True "
                "(method guide, 'How many PCs, and whitening').",
                stacklevel=3,
            )


COLUMNS = ["method", "held_out_time", "seed", "w1", "w2", "mmd", "seconds"]
FRACTION_COLUMNS = ["best_fraction", "w1_best_fraction"]


def _extra_columns(fractions: bool, growth: bool) -> list[str]:
    return (["w1_mass"] if growth else []) + (FRACTION_COLUMNS if fractions else [])


def _table(rows: list[dict], extra: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS + extra)
    if "w1_mass" in extra:  # a baseline's cells have equal masses: its W1
        df["w1_mass"] = pd.to_numeric(df["w1_mass"]).fillna(df["w1"])
    return df


def _earlier_rows(done: pd.DataFrame | None, extra: list[str]) -> tuple[set, list[dict]]:
    """The keys ``(method label, held-out time, seed)`` of the rows of an earlier run, and the
    rows themselves, checked to have this run's columns."""
    if done is None or len(done) == 0:
        return set(), []
    want = COLUMNS + extra
    if list(done.columns) != want:
        raise ValueError(
            f"the earlier table's columns {list(done.columns)} are not this run's {want} "
            "(was it written with other fractions, or by another program?)."
        )
    done = done[done[COLUMNS].notna().all(axis=1)]  # a row cut off mid-write is not done
    keys = {(str(r.method), float(r.held_out_time), int(r.seed)) for r in done.itertuples()}
    return keys, done.to_dict("records")


PROBE_STEPS = 20  # the timed part of the plan's short training runs


def _estimate_seconds(
    model_for, todo: list, train: dict, max_eval: int, probe: int = PROBE_STEPS
) -> dict[str, float]:
    """Seconds one model of each method takes, end to end: two short trainings (2 and 2 +
    ``probe`` steps) give the seconds per step and the fixed cost, and one push and scoring of the
    probe model the rest. The first held-out time stands for all."""
    out = {}
    for h, m, _ in todo:
        if m in out:
            continue
        short = {**train, "steps": 2}
        t = []
        for n in (2, 2 + probe):
            model = model_for(m, 0)
            s = time.perf_counter()
            model.train(holdout=h, progress=False, **{**short, "steps": n})
            t.append(time.perf_counter() - s)
        per_step = max(t[1] - t[0], 0.0) / probe
        i = int(np.searchsorted(model.course.times, h))
        s = time.perf_counter()
        pred = model.push(
            model.course.cells_at(model.course.times[i - 1]),
            model.course.times[i - 1],
            h,
            solver="euler",
            steps=100,
        )
        _scores(pred, model.course.cells_at(h), max_eval, 0)
        out[m] = max(t[0] - 2 * per_step, 0.0) + train["steps"] * per_step + time.perf_counter() - s
    return out


def _plan_text(todo: list, total: int, steps: int, seconds: dict[str, float]) -> str:
    """What the run will do: how many models, of how many steps, and about how long."""
    if not todo:
        return f"all {total} models are in the earlier table; nothing to train."
    held = sorted({h for h, _, _ in todo})
    per = {m: sum(1 for _, mm, _ in todo if mm == m) for m in dict.fromkeys(m for _, m, _ in todo)}
    parts = ", ".join(f"{n} {cellflow_spec(m).label}" for m, n in per.items())
    est = sum(seconds.get(m, 0.0) * n for m, n in per.items())
    skipped = f" ({total - len(todo)} done earlier)" if len(todo) < total else ""
    return (
        f"plan: {len(todo)} model{'s' if len(todo) > 1 else ''}{skipped} of {steps} steps each "
        f"({parts}), "
        f"held out: {', '.join(f'{h:g}' for h in held)}; about {_duration(est)} on this machine "
        f"(timed from a {2 + PROBE_STEPS}-step run of each method)."
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _best_fraction(
    model: CellFlow,
    prev: float,
    nxt: float,
    fracs: np.ndarray,
    x_true: np.ndarray,
    sc,
    max_eval: int,
    seed: int,
    known: tuple[float, float],
) -> dict:
    """Push the cells at ``prev`` to each fraction of the model time from ``prev`` to ``nxt``;
    the fraction of least W1 to ``x_true`` and that W1. ``known`` is a fraction already scored
    (the protocol's) with its W1, which is not pushed again."""
    t0, t1 = model.course.model_time(prev), model.course.model_time(nxt)
    x0, w1 = model.course.cells_at(prev), []
    for f in fracs:
        if np.isclose(f, known[0], rtol=0.0, atol=1e-12):
            w1.append(known[1])
            continue
        pred = sc(
            model.push(
                x0, prev, model.course.measured_time(t0 + f * (t1 - t0)), solver="euler", steps=100
            )
        )
        w1.append(wasserstein(pred, x_true, p=1, max_samples=max_eval, seed=seed))
    i = int(np.argmin(w1))
    return dict(best_fraction=float(fracs[i]), w1_best_fraction=float(w1[i]))


def summarize_holdout(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: W1/W2/MMD averaged over held-out times for each seed, then mean ± std over
    seeds."""
    cols = ["w1", "w2", "mmd", "seconds"] + (
        ["w1_best_fraction"] if "w1_best_fraction" in df else []
    )
    per_seed = df.groupby(["method", "seed"])[cols].mean()
    g = per_seed.groupby("method")
    mean = g.mean()
    std = g.std().fillna(0.0).mask(mean.isna())  # one seed: 0; a column a method lacks: NaN
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    out["n_seeds"] = g.size()
    return out.sort_values("w1_mean")
