"""``cellflow bench arch``: OT-MFM against OT-CFM where straight paths leave the data.

On :func:`cellflow.datasets.arch_time_course` (times 0, 1, 2 along a half circle), time 1 is
held out and predicted by the paper's protocol (:func:`cellflow.evaluate_holdout`: whitened
coordinates, the cells of time 0 pushed to the middle of model time with 100 Euler steps, exact
W1 to the held-out cells). OT-CFM runs with each seed, and OT-MFM once per metric (``rbf``, the
default, and ``land``), next to the baselines (the previous time point and McCann interpolation
of the exact OT plan) and the sampling floor (a fresh draw of time 1 scored against the held-out
cells: what a perfect prediction would score). The summary gives the mean ± std, the median and, per
metric, the ratio
of OT-MFM's median W1 to OT-CFM's and the number of seeds on which OT-MFM is lower.

``n_dims`` embeds the arch in more dimensions (a random rotation, with noise in the new ones), and
``whiten=False`` runs the protocol's unwhitened setting (its defaults for 20 or more dimensions:
σ = 1.0, W1 in the data's own units), to ask whether the gain survives where most analyses work.

Example
-------
``cellflow bench arch --n-cells 5000 --seeds 0 1 2 --out bench_out`` (``--metric-eps 0.01`` for the
MFM paper's stronger pull towards the cells; ``--n-dims 50 --no-whiten`` for the arch in 50
unwhitened dimensions)
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from .._io import write_csv
from .._types import MetricKind
from ..flow.methods import method_spec

METRICS = get_args(MetricKind)


def run(
    *,
    n_cells: int = 5000,
    seeds=(0, 1, 2),
    metrics=METRICS,
    metric_eps: float | None = None,
    n_dims: int = 2,
    whiten: bool = True,
    steps: int = 2000,
    batch_size: int = 512,
    data_seed: int = 0,
    out: str | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Run the benchmark; returns the per-seed table (``method, metric, seed, w1, w2, mmd,
    seconds``), writes ``arch.csv`` and ``arch_summary.csv`` to ``out`` if given, and prints the
    summary if ``verbose``. ``metric_eps`` is the metrics' floor ε (default that of
    :func:`cellflow.flow.riemannian_metrics.fit_metric`, 0.1); ``n_dims`` is the width of the data
    (:func:`cellflow.datasets.arch_time_course`) and ``whiten`` the protocol's scaling (W1 in
    whitened units, or in the data's own); ``progress`` shows each model's training."""
    from ..datasets import arch_time_course
    from ..evaluate import evaluate_holdout

    adata = arch_time_course(n_cells, n_dims=n_dims, seed=data_seed)
    common = dict(
        use_rep="X_arch",
        whiten=whiten,
        held_out=[1],
        seeds=list(seeds),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
        verbose=progress,
    )
    tables = [evaluate_holdout(adata, "time", methods=["ot"], **common).assign(metric="")]
    for kind in metrics:
        metric = {"kind": kind} if metric_eps is None else {"kind": kind, "eps": float(metric_eps)}
        tables.append(
            evaluate_holdout(
                adata, "time", methods=["mfm"], metric=metric, baselines=False, **common
            ).assign(metric=kind)
        )
    fresh = arch_time_course(n_cells, n_dims=n_dims, seed=data_seed + 1)
    tables.append(sampling_floor(adata, fresh, seeds, whiten=whiten).assign(metric=""))
    df = pd.concat(tables, ignore_index=True)
    df = df[["method", "metric", "seed", "w1", "w2", "mmd", "seconds"]]
    summary = summarize(df)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(df, Path(out) / "arch.csv", index=False)
        write_csv(summary, Path(out) / "arch_summary.csv", index=False)
    if verbose:
        units = "whitened units" if whiten else "the data's units, unwhitened"
        print(
            f"\nArch, time 1 held out, {n_cells} cells per time point in {n_dims} dimensions, "
            f"{len(seeds)} seeds, "
            f"{steps} steps (W1 in {units}"
            + ("" if metric_eps is None else f"; metric eps {metric_eps}")
            + "):"
        )
        print(summary.to_string(index=False))
    return df


def sampling_floor(
    adata, fresh, seeds, max_eval: int = 4000, *, whiten: bool = True
) -> pd.DataFrame:
    """What a perfect prediction would score: W1 (and W2, MMD) between the held-out cells and as
    many cells drawn afresh from the same time point, in the same units (whitened, or the data's
    own) and with the same subsampling as :func:`cellflow.evaluate_holdout` (one row per seed of
    the subsample)."""
    from ..course.read import Standardizer
    from ..evaluate import _scores

    scale = (
        Standardizer.fit(adata.obsm["X_arch"], whiten=True).forward if whiten else np.asarray
    )  # as evaluate_holdout
    held, new = (scale(a.obsm["X_arch"][a.obs["time"].to_numpy() == 1]) for a in (adata, fresh))
    return pd.DataFrame(
        [
            dict(
                method="floor: a fresh sample of time 1",
                seed=seed,
                seconds=0.0,
                **_scores(new, held, max_eval, seed),
            )
            for seed in seeds
        ]
    )


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and metric: W1 mean ± std and median; for OT-MFM, its median over OT-CFM's
    and the seeds on which it is lower than OT-CFM with the same seed."""
    ot = df[df["method"] == method_spec("ot").label].set_index("seed")["w1"]
    rows = []
    for (method, metric), g in df.groupby(["method", "metric"], sort=False):
        row = dict(
            method=method,
            metric=metric,
            w1=f"{g['w1'].mean():.3f} ± {g['w1'].std(ddof=1) if len(g) > 1 else 0:.3f}",
            w1_median=round(float(g["w1"].median()), 3),
            seconds_median=round(float(g["seconds"].median()), 1),
            vs_ot_cfm="",
            seeds_lower="",
        )
        if method == method_spec("mfm", "cells").label:
            paired = g.set_index("seed")["w1"]
            row["vs_ot_cfm"] = f"{paired.median() / ot.median():.3f}"
            row["seeds_lower"] = (
                f"{int((paired < ot.reindex(paired.index)).sum())} of {len(paired)}"
            )
        rows.append(row)
    return pd.DataFrame(rows)
