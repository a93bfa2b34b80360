"""``cellflow demo``: the whole single-cell pipeline on the embedded simulated time course.

1. simulate a branching differentiation (6 days, 60 genes, true velocities);
2. scanpy: ``normalize_total``, ``log1p``, highly variable genes, PCA, neighbours, UMAP;
3. fit an OT-CFM flow on the first 10 PCs over all days;
4. held-out evaluation of the middle day (day 3 left out), OT-CFM vs I-CFM vs the
   previous-day and McCann baselines, on the paper's 5 whitened PCs (``cellflow evaluate``
   runs every intermediate day and several seeds);
5. export velocities (``obsm["velocity_pca"]``, ``layers["velocity"]``, ``obsm["velocity_umap"]``)
   and score them against the truth (cosine similarity in PC space);
6. fate towards branch A (``cf.tl.pull``) and a prediction at a held-out day.

Writes to ``out``: ``results.h5ad``, ``evaluation.csv``, ``summary.csv``, ``velocity.csv``,
``model/`` and the figures ``umap.png``, ``trajectories.png``, ``velocity.png``, ``fate.png``,
``prediction.png``, ``evaluation.png``. No download; a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .._io import check_output_folder, save_figure, write_csv, write_h5ad

FILES = [  # what the demo writes, in the order a reader should look at it
    ("trajectories.png", "cells pushed along the learned flow, on the UMAP (start here)"),
    ("velocity.png", "the learned velocity field, coloured by day"),
    ("fate.png", "each day-2 cell's probability of reaching branch A"),
    (
        "prediction.png",
        "cells predicted at day 3 by a flow that never saw it, beside the measured ones",
    ),
    ("evaluation.png", "held-out day 3: W1 of each method and baseline (lower is better)"),
    ("umap.png", "the time course: day and branch"),
    ("results.h5ad", "the AnnData with velocities (obsm, layers), fates (obs) and the UMAP"),
    ("evaluation.csv", "the held-out table, one row per method and seed; summary.csv: its means"),
    ("velocity.csv", "median cosine of learned and true velocity, per day"),
    ("model/", "the fitted flow: cf.CellFlow.load(folder, adata)"),
]


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _figures(adata, model, held, pred, df, cos, out) -> None:
    """The demo's figures, written into ``out``: the UMAP, trajectories, velocities, fates,
    the prediction of the held-out day and the evaluation."""
    import scanpy as sc

    from .. import pl

    sc.settings.figdir = out
    fig = sc.pl.umap(adata, color=["day", "branch"], show=False, return_fig=True)
    _save(fig, out / "umap.png")
    ax = pl.trajectories(adata, model, basis="umap", n_cells=150)
    _save(ax.figure, out / "trajectories.png")
    ax = pl.velocity(
        adata,
        "umap",
        color="day",
        title=f"learned velocity on UMAP (median cosine to truth {np.median(cos):.2f})",
    )
    _save(ax.figure, out / "velocity.png")
    fig = sc.pl.umap(
        adata,
        color="fate_A",
        color_map="magma",
        show=False,
        return_fig=True,
        title="P(day-2 cell reaches branch A)",
    )
    _save(fig, out / "fate.png")
    ax = pl.prediction(adata, held, pred, time=3, basis="umap")
    _save(ax.figure, out / "prediction.png")
    ax = pl.evaluation(df)
    _save(ax.figure, out / "evaluation.png")


def _report(summary, cos, out, secs: float) -> None:
    """The demo's results and the files it wrote (printed with --quiet too: that silences
    progress only)."""
    print(
        "\nheld-out day 3, 5 whitened PCs (W1, W2, MMD: distance to the measured cells, lower is "
        "better):"
    )
    print(
        summary[["w1_mean", "w2_mean", "mmd_mean", "seconds_mean"]].to_string(
            float_format=lambda v: f"{v:.3f}"
        )
    )
    print(f"\nvelocity: median cosine to the true velocity {np.median(cos):.3f} (1 is perfect)")
    print(f"\nwrote to {out}/ in {secs:.0f} s:")
    for name, what in FILES:
        print(f"  {name:<17} {what}")
    print(f"open {out / 'trajectories.png'} first.")


def run_demo(
    out: str | Path = "cellflow_out",
    *,
    steps: int = 1500,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    n_cells_per_time: int = 250,
) -> pd.DataFrame:
    """Run the demo pipeline and return the evaluation summary (see the module docstring)."""
    import scanpy as sc

    from .. import tl
    from ..datasets import simulated_differentiation, true_velocity_pca
    from ..evaluate import evaluate_holdout, summarize_holdout
    from ..metrics import velocity_cosine
    from ..models.cells import CellFlow

    out = check_output_folder(out)
    if (out / "results.h5ad").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds demo results; pass --overwrite or choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    t_start = time.perf_counter()

    say("1/6 simulating a branching time course ...")
    adata = simulated_differentiation(n_cells_per_time=n_cells_per_time, random_state=seed)
    say("2/6 scanpy preprocessing: normalize_total, log1p, HVG, PCA, neighbours, UMAP ...")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=40)
    sc.pp.pca(adata, n_comps=20, random_state=seed)
    sc.pp.neighbors(adata, n_pcs=10, random_state=seed)
    sc.tl.umap(adata, random_state=seed)

    say(f"3/6 fitting OT-CFM on 10 PCs ({steps} steps) ...")
    model = CellFlow(adata, "day", use_rep="X_pca", n_pcs=10, method="ot", seed=seed)
    model.train(steps=steps, progress=progress)
    model.save(out / "model", overwrite=overwrite)

    say("4/6 held-out evaluation of day 3: OT-CFM vs I-CFM vs baselines on 5 whitened PCs ...")
    df = evaluate_holdout(
        adata,
        "day",
        methods=["ot", "icfm"],
        seeds=[seed],
        n_pcs=5,
        whiten=True,
        steps=steps,
        held_out=[3],
        progress=progress,
    )
    summary = summarize_holdout(df)
    write_csv(df, out / "evaluation.csv", index=False)
    write_csv(summary, out / "summary.csv")

    say("5/6 velocities: export and compare with the truth ...")
    tl.velocity(adata, model)
    tl.velocity_embedding(adata, basis="umap")
    cos = velocity_cosine(adata.obsm["velocity_pca"][:, :10], true_velocity_pca(adata)[:, :10])
    adata.obs["velocity_cosine_to_truth"] = cos
    vel = (
        pd.DataFrame({"day": adata.obs["day"].to_numpy(), "cosine": cos})
        .groupby("day")["cosine"]
        .median()
    )
    vel.loc["all"] = float(np.median(cos))
    write_csv(vel.to_frame("median cosine(learned, true velocity), 10 PCs"), out / "velocity.csv")

    say("6/6 fates and prediction ...")
    last = float(model.course.times[-1])
    tl.pull(adata, model, {"branch": "A"}, t_from=2, t_to=last, key_added="fate_A", normalize=False)
    held = CellFlow(adata, "day", use_rep="X_pca", n_pcs=10, method="ot", seed=seed)
    held.train(steps=steps, holdout=3, progress=progress)
    pred = tl.interpolate(adata, held, time=3)

    _figures(adata, model, held, pred, df, cos, out)

    adata.uns["cellflow_demo"] = {
        "steps": int(steps),
        "seed": int(seed),
        "velocity_median_cosine": float(np.median(cos)),
    }
    write_h5ad(adata, out / "results.h5ad")
    secs = time.perf_counter() - t_start
    _report(summary, cos, out, secs)
    return summary
