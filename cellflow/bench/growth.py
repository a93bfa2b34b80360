"""``cellflow bench growth``: growth-aware flows on a time course whose branches grow at known
rates (:func:`cellflow.datasets.simulated_growth`: branch A doubles each day, B loses 30 %),
next to balanced OT-CFM and, if its Python is given, moscot 0.5.2, in one run.

For each seed the course is simulated, normalised and log-transformed, scored for proliferation
and apoptosis (:func:`cellflow.pp.score_growth`, human gene sets) and reduced to 20 PCs; then

- **balanced** OT-CFM, and OT-CFM with ``growth="prior"`` (the gene prior) and ``"learned"``
  (from the prior) are trained on every day (``steps`` steps, timed);
- **growth rates**: the Spearman correlation of each model's rate
  (:func:`cellflow.tl.growth_rates`) with the true one, over the cells of every day but the last
  (the days moscot's plans start from);
- **ancestor fates**: the share of day-0 cells whose future is branch A
  (:func:`cellflow.tl.fates` to the last day, ``ancestor_share``), against the truth (each
  cell's simulated futures), and the descendant share beside it;
- **held-out days**: each model is trained again without one intermediate day and pushes the
  day before it there; W1 between the pushed cells, weighted by their masses, and the observed
  ones (mass-weighted W1; balanced cells weigh alike);
- **moscot**: ``TemporalProblem`` with ``score_genes_for_marginals`` (human sets) and its
  default τ, in its own environment (:mod:`cellflow.bench._moscot_growth_peer`): the Spearman
  correlation of its posterior growth rates, and its ancestor share from ``pull`` of each
  branch back to day 0.

Example
-------
``cellflow bench growth --seeds 0 1 2 3 4 --moscot-python ../moscot_venv/bin/python``
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import write_csv

MODELS = {
    "balanced": (None, None),
    "prior": ("prior", "growth_prior"),
    "learned": ("learned", "growth_prior"),
}


def simulate(seed: int, n_cells: int = 300, n_pcs: int = 20):
    """The benchmark's course for ``seed``: simulated, normalised, log1p, gene scores, PCA."""
    import scanpy as sc

    from ..datasets import simulated_growth
    from ..pp import score_growth

    adata = simulated_growth(n_cells_per_time=n_cells, random_state=seed)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    score_growth(adata, organism="human")
    sc.pp.pca(adata, n_comps=n_pcs, random_state=0)
    return adata


def _truth(adata) -> float:
    return float(adata.obs.loc[adata.obs["day"] == 0, "true_fate_A"].mean())


def _spearman(pred, adata) -> float:
    from scipy.stats import spearmanr

    day = adata.obs["day"].to_numpy()
    keep = (day < day.max()) & np.isfinite(pred)
    return float(spearmanr(pred[keep], adata.obs["true_growth_rate"].to_numpy()[keep])[0])


def _held_out_w1(adata, growth, key, seed, steps, h) -> float:
    from ..metrics import wasserstein
    from ..models.cells import CellFlow

    m = CellFlow(adata, "day", growth=growth, growth_key=key, seed=seed)
    m.train(steps=steps, holdout=h, progress=False)
    prev = m.source_time(h)
    if growth is None:
        Y, mass = m.push(m.cells_at(prev), prev, h), None
    else:
        Y, mass = m.push(m.cells_at(prev), prev, h, return_mass=True)
    return wasserstein(Y, m.cells_at(h), p=1, x_weights=mass)


def cellflow_row(adata, name: str, seed: int, steps: int, held_out) -> dict:
    """One model's row: seconds, growth Spearman, ancestor and descendant shares, held-out W1."""
    from .. import tl
    from ..models.cells import CellFlow

    growth, key = MODELS[name]
    a = adata.copy()
    m = CellFlow(a, "day", growth=growth, growth_key=key, seed=seed)
    start = time.perf_counter()
    m.train(steps=steps, progress=False)
    seconds = time.perf_counter() - start
    tl.fates(a, m, "branch", t_from=0, t_to=float(a.obs["day"].max()), groups=["A", "B"])
    p = a.uns["fates_branch_params"]
    anc, desc = (
        dict(zip(p["groups"], p[share])) for share in ("ancestor_share", "descendant_share")
    )
    anc, desc = anc["A"] / (anc["A"] + anc["B"]), desc["A"] / (desc["A"] + desc["B"])
    if growth is None:
        rho = np.nan
    else:
        tl.growth_rates(a, m)
        rho = _spearman(a.obs["growth_rate"].to_numpy(), a)
    w1 = [_held_out_w1(adata, growth, key, seed, steps, h) for h in held_out]
    return dict(
        method=f"cellflow OT-CFM {name}",
        seconds=seconds,
        spearman=rho,
        ancestor_share_A=anc,
        descendant_share_A=desc,
        w1_mass=float(np.mean(w1)) if w1 else np.nan,
    )


def moscot_row(adata, python: str) -> dict:
    """moscot's row, run by ``python`` (moscot's environment) on a temporary ``.h5ad``."""
    peer = Path(__file__).with_name("_moscot_growth_peer.py")
    with tempfile.TemporaryDirectory() as tmp:
        a = adata.copy()
        a.layers.clear()
        a.write_h5ad(Path(tmp) / "in.h5ad")
        start = time.perf_counter()
        subprocess.run(
            [python, str(peer), str(Path(tmp) / "in.h5ad"), str(Path(tmp) / "out.json")],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        r = json.loads((Path(tmp) / "out.json").read_text())
    post = np.log(np.asarray(r["posterior_growth"], dtype=float))
    return dict(
        method="moscot 0.5.2 TemporalProblem",
        seconds=r["seconds"],
        spearman=_spearman(post, adata),
        ancestor_share_A=r["ancestor_share_A"],
        descendant_share_A=r["descendant_share_A"],
        w1_mass=np.nan,
        wall_seconds=wall,
    )


def run(
    seeds=(0, 1, 2, 3, 4),
    *,
    steps: int = 2000,
    n_cells: int = 300,
    held_out=(2, 3, 4),
    models=tuple(MODELS),
    moscot_python: str | None = None,
    out: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every model (and moscot) on every seed; a tidy table, also written to ``out``."""
    rows = []
    _warm_up()
    for seed in seeds:
        adata = simulate(seed, n_cells)
        truth = _truth(adata)
        for name in models:
            row = dict(
                seed=seed,
                truth_ancestor_share_A=truth,
                **cellflow_row(adata, name, seed, steps, held_out),
            )
            rows.append(row)
            if progress:
                print(_line(row), flush=True)
        if moscot_python:
            row = dict(seed=seed, truth_ancestor_share_A=truth, **moscot_row(adata, moscot_python))
            rows.append(row)
            if progress:
                print(_line(row), flush=True)
        if out:
            write_csv(pd.DataFrame(rows), out, index=False)
    df = pd.DataFrame(rows)
    df["ancestor_error"] = (df["ancestor_share_A"] - df["truth_ancestor_share_A"]).abs()
    if out:
        write_csv(df, out, index=False)
    return df


def regions(
    file: str,
    time_key: str,
    *,
    n_regions: int = 5,
    seed: int = 0,
    steps: int = 2000,
    n_pcs: int | None = None,
    whiten: bool = True,
) -> pd.DataFrame:
    """Learned growth on a real file without genes: a ``growth="learned"`` OT-CFM on every time
    point (the benchmark's 5 whitened PCs by default), then the mean rate per time point and per
    region (k-means on those PCs, ``n_regions`` clusters, seeded), with the cells per cell."""
    import anndata as ad
    from sklearn.cluster import KMeans

    from .. import tl
    from ..course.read import paper_n_pcs
    from ..models.cells import CellFlow

    adata = ad.read_h5ad(file)
    n_pcs = paper_n_pcs(adata, "X_pca") if n_pcs is None else n_pcs
    m = CellFlow(adata, time_key, n_pcs=n_pcs, whiten=whiten, growth="learned", seed=seed)
    m.train(steps=steps, progress=False)
    tl.growth_rates(adata, m)
    X = m.scaler.forward(np.asarray(adata.obsm["X_pca"], dtype=np.float64)[:, :n_pcs])
    adata.obs["region"] = KMeans(n_regions, n_init=10, random_state=seed).fit_predict(X)
    g = adata.obs.groupby([time_key, "region"], observed=True)["growth_rate"]
    table = g.mean().unstack().round(3)
    table["all"] = adata.obs.groupby(time_key, observed=True)["growth_rate"].mean().round(3)
    cells = g.size().unstack()
    return table, cells


def _warm_up() -> None:
    """Compile the OT solver (numba) before any model is timed."""
    from ..models.cells import CellFlow

    a = simulate(0, 40, 5)
    CellFlow(a, "day").train(steps=2, progress=False)


def _line(row: dict) -> str:
    return (
        f"seed {row['seed']}  {row['method']:<30} {row['seconds']:6.1f}s  spearman "
        f"{row['spearman']:.3f}  "
        f"ancestors A {row['ancestor_share_A']:.3f} (truth {row['truth_ancestor_share_A']:.3f})  "
        f"descendants A {row['descendant_share_A']:.3f}  held-out W1 {row['w1_mass']:.3f}"
    )


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Medians per method, the cost relative to balanced OT-CFM, and on how many seeds each
    model's held-out W1 is below balanced OT-CFM's."""
    med = df.groupby("method", sort=False)[
        [
            "seconds",
            "spearman",
            "ancestor_share_A",
            "ancestor_error",
            "descendant_share_A",
            "w1_mass",
        ]
    ].median()
    base = df[df.method == "cellflow OT-CFM balanced"].set_index("seed")
    med["cost_vs_balanced"] = med["seconds"] / base["seconds"].median() if len(base) else np.nan
    wins = {}
    for method, g in df.groupby("method", sort=False):
        g = g.set_index("seed")
        common = g.index.intersection(base.index)
        wins[method] = int((g.loc[common, "w1_mass"] < base.loc[common, "w1_mass"]).sum())
    med["seeds_w1_below_balanced"] = pd.Series(wins)
    med["seeds"] = df.groupby("method", sort=False).size()
    return med
