"""``cellflow bench fates``: terminal states, fate probabilities, their uncertainty and driver
genes found without labels, on a course whose truth is known
(:func:`cellflow.datasets.simulated_differentiation`: every cell's true fate probability from
its simulated futures, the branch it commits to, every gene's programme), next to CellRank 2.

For each seed the course is simulated, normalised, log-transformed and reduced to 20 PCs; an
OT-CFM and an SB-CFM flow are trained on every day (``steps`` steps), and for each:

- **terminal states** (:func:`cellflow.tl.terminal_states`, no labels): the adjusted Rand index
  of the states (non-terminal cells as one more group) against the true branches at the last
  day;
- **fates** (:func:`cellflow.tl.fates` on those states; SB-CFM along its SDE, 10 paths per
  cell), along the chain of measured times (the default) and straight to the last day, from
  each of ``days``: the expected calibration error (10 equal-width bins) of P(A)
  against the branch each cell commits to, and the mean absolute error against the true
  probability;
- **uncertainty**: ``n_samples`` answers (OT-CFM: bootstrap replicates; SB-CFM: single SDE
  paths, ``spread="sde"``, and bootstrap replicates along the SDE unless ``--no-sb-bootstrap``): how
  often the nominal 90 % interval holds the true probability, and the AUROC of the fate entropy
  for telling undecided cells (true probability in 0.2–0.8) from committed ones;
- **driver genes** (:func:`cellflow.tl.driver_genes` on the fates from ``driver_day``): per
  branch, the AUROC of the correlation ranking for that branch's programme genes against all
  other genes; CellRank 2's ``compute_lineage_drivers`` on the same fates beside it;
- **moscot 0.5.2** (``moscot_python``: the python of an environment with moscot), run in its
  own environment (:mod:`cellflow.bench._moscot_fates_peer`): ``TemporalProblem`` on the same
  PCs, balanced, at each ε of ``moscot_eps``, each true branch's last-day cells pulled back to
  the scored days; the same calibration and errors;
- **CellRank GPCCA** on the OT-CFM flow's couplings (``RealTimeKernel``) and on its velocities
  (``VelocityKernel``): macrostates with CellRank's own choice of their number and with the true
  number (2), terminal states by its stability criterion, every last-day cell assigned to its
  likeliest macrostate; the same adjusted Rand index.

``--fates 3`` runs the same flows on :func:`cellflow.datasets.simulated_multifate` instead (three
fates, graded commitment, confounder programmes): terminal states without labels, each true
fate matched to the found state holding most of its last-day cells, and the fates of days 1–3
against every fate's true probability (mean absolute error over cells and fates; ECE of each
fate against the drawn outcome, averaged over fates), moscot beside them.

Example
-------
``cellflow bench fates --seeds 0 1 2 --out fates.csv``
(``--moscot-python ../moscot_venv/bin/python`` adds moscot)
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .._io import write_csv

#: the days whose cells' fates are scored (day 0 is undecided throughout, day 4 committed)
DAYS = (1, 2, 3)
#: the entropic regularisations moscot is run at (its ε, on its mean-scaled cost)
MOSCOT_EPS = (1e-3, 1e-2, 1e-1, 1.0)


def simulate(seed: int, n_cells: int = 250, n_pcs: int = 20):
    """The benchmark's course: simulated (100 futures per cell), normalised, log1p, PCA, kNN."""
    import scanpy as sc

    from ..datasets import simulated_differentiation

    adata = simulated_differentiation(n_cells_per_time=n_cells, random_state=seed, n_futures=100)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=n_pcs, random_state=0)
    sc.pp.neighbors(adata, n_pcs=n_pcs, random_state=0)
    return adata


def ece(p: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the bin-size-weighted mean gap between the mean prediction and
    the mean outcome in equal-width bins of ``p``.

    >>> round(ece(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 0, 1, 1.0])), 6)
    0.1
    """
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    b = np.minimum((p * bins).astype(int), bins - 1)
    return float(
        sum((b == i).mean() * abs(p[b == i].mean() - outcome[b == i].mean()) for i in np.unique(b))
    )


def _ari(adata, labels) -> float:
    from sklearn.metrics import adjusted_rand_score

    last = (adata.obs["day"] == adata.obs["day"].max()).to_numpy()
    found = pd.Series(labels, index=adata.obs_names)[last].astype(object).fillna("none")
    return float(adjusted_rand_score(adata.obs["branch"][last].astype(str), found.astype(str)))


def _states_by_truth(adata, truth: str, key: str = "terminal_states") -> pd.DataFrame:
    """Last-day cells counted by found state (rows; cells in none left out) and by their true
    label ``obs[truth]`` (columns): a true fate's state is its column's largest row."""
    last = (adata.obs["day"] == adata.obs["day"].max()).to_numpy()
    table = pd.crosstab(adata.obs[key][last].astype(str), adata.obs[truth][last].astype(str))
    return table.drop(index="nan", errors="ignore")


def _state_of_A(adata, key: str = "terminal_states") -> tuple[str, str]:
    """The found states most of whose cells are in branch A and in B."""
    table = _states_by_truth(adata, "branch", key)
    return str(table["A"].idxmax()), str(table["B"].idxmax())


def _share_A(adata, key: str, A: str, B: str, at) -> np.ndarray:
    F = adata.obsm[key].loc[at]
    return (F[A] / (F[A] + F[B])).to_numpy()


def _driver_auroc(table: pd.DataFrame, adata, state: str, programme: str) -> float:
    from sklearn.metrics import roc_auc_score

    rows = table[table["fate"] == state].set_index("gene")["corr"].reindex(adata.var_names)
    truth = (adata.var["programme"] == programme).to_numpy()
    return float(roc_auc_score(truth, rows.fillna(-1.0).to_numpy()))


def _cellrank_drivers(adata, fates_key: str, A: str, B: str, at) -> dict:
    """CellRank 2's ``compute_lineage_drivers`` on the same fates: an estimator on the cells of
    ``at`` is handed the fate probabilities (CellRank has no public setter) and asked for its
    drivers on the same log-normalised X."""
    import cellrank as cr
    import scanpy as sc
    from cellrank import Lineage

    sub = adata[at].copy()
    F = adata.obsm[fates_key].loc[at, [A, B]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(
            sub, n_pcs=sub.obsm["X_pca"].shape[1], random_state=0
        )  # the estimator's graph
        kernel = cr.kernels.ConnectivityKernel(sub).compute_transition_matrix()
        g = cr.estimators.GPCCA(kernel)
        g._fate_probabilities = Lineage(F / F.sum(1, keepdims=True), names=[A, B])
        drivers = g.compute_lineage_drivers(lineages=[A, B])
    out = {}
    for state, programme in ((A, "branch_A"), (B, "branch_B")):
        table = pd.DataFrame(
            {"fate": state, "gene": drivers.index, "corr": drivers[f"{state}_corr"].to_numpy()}
        )
        out[programme] = _driver_auroc(table, adata, state, programme)
    return out


def cellflow_rows(adata, method: str, seed: int, steps: int, n_samples: int, sb_bootstrap: bool):
    """One trained model's rows: terminal states, fates, uncertainty and drivers."""
    from sklearn.metrics import roc_auc_score

    from .. import tl
    from ..models.cells import CellFlow

    a = adata.copy()
    m = CellFlow(a, "day", method=method, seed=seed)
    start = time.perf_counter()
    m.train(steps=steps, progress=False)
    seconds = time.perf_counter() - start
    tl.terminal_states(a, m)
    A, B = _state_of_A(a)
    sde = method == "sb"
    spreads = ["bootstrap"] if method == "ot" else ["sde"] + ["bootstrap"] * bool(sb_bootstrap)
    rows = []
    # along the chain of measured times (the default) and straight to the last day (before)
    for spread, chain in ((s, c) for s in spreads for c in (True, False)):
        p_all, truth_all, commit_all, inside, H_all = [], [], [], [], []
        for day in DAYS:
            key = f"fate_{day}"
            tl.fates(
                a,
                m,
                t_from=day,
                key_added=key,
                sde=sde,
                n_samples=n_samples,
                spread=spread,
                chain=chain,
                progress=False,
                overwrite=True,
            )
            at = (a.obs["day"] == day).to_numpy()
            p = _share_A(a, key, A, B, at)
            lo = a.obsm[key + "_low"].loc[at, A].to_numpy()  # the interval of P(A) itself
            hi = a.obsm[key + "_high"].loc[at, A].to_numpy()
            truth = a.obs["true_fate_A"].to_numpy()[at]
            p_all.append(p)
            truth_all.append(truth)
            commit_all.append((a.obs["commits_to"][at] == "A").to_numpy())
            inside.append(
                (truth >= np.minimum(lo, hi) - 1e-9) & (truth <= np.maximum(lo, hi) + 1e-9)
            )
            H_all.append(a.obs[key + "_entropy"].to_numpy()[at])
        p, truth, commit = map(np.concatenate, (p_all, truth_all, commit_all))
        H, inside = np.concatenate(H_all), np.concatenate(inside)
        undecided = (truth > 0.2) & (truth < 0.8)
        rows.append(
            dict(
                seed=seed,
                method=f"cellflow {'OT' if method == 'ot' else 'SB'}-CFM",
                spread=spread,
                path="chain" if chain else "straight",
                seconds=seconds,
                n_terminal=len(a.obs["terminal_states"].cat.categories),
                ari=_ari(a, a.obs["terminal_states"]),
                ece=ece(p, commit),
                ece_truth=ece(p, truth),
                mae=float(np.abs(p - truth).mean()),
                coverage90=float(inside.mean()),
                entropy_auroc=float(roc_auc_score(undecided, H)),
            )
        )
    # drivers from the fates of the driver day (the first spread's, the model's own fates)
    day = 2
    at = (a.obs["day"] == day).to_numpy()
    tl.fates(a, m, t_from=day, key_added="drivers_fates", sde=sde, overwrite=True)
    table = tl.driver_genes(a, "drivers_fates", groups=[A, B])
    ours = {
        "branch_A": _driver_auroc(table, a, A, "branch_A"),
        "branch_B": _driver_auroc(table, a, B, "branch_B"),
    }
    theirs = _cellrank_drivers(a, "drivers_fates", A, B, at)
    for row in rows:
        row.update(
            driver_auroc_A=ours["branch_A"],
            driver_auroc_B=ours["branch_B"],
            cellrank_driver_auroc_A=theirs["branch_A"],
            cellrank_driver_auroc_B=theirs["branch_B"],
        )
    return rows, m, a


def _moscot_peer(adata, labels: np.ndarray, python: str, eps) -> dict:
    """moscot's fates (:mod:`cellflow.bench._moscot_fates_peer`), run by ``python`` (moscot's
    environment) on a temporary ``.h5ad`` holding the PCs, the days and ``labels`` (each
    last-day cell's fate, ``""`` elsewhere); its JSON answer."""
    peer = Path(__file__).with_name("_moscot_fates_peer.py")
    a = ad.AnnData(
        X=adata.X, obs=adata.obs[["day"]].copy(), var=pd.DataFrame(index=adata.var_names)
    )
    a.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"])
    a.obs["fate_label"] = labels
    with tempfile.TemporaryDirectory() as tmp:
        a.write_h5ad(Path(tmp) / "in.h5ad")
        cmd = [python, str(peer), str(Path(tmp) / "in.h5ad"), str(Path(tmp) / "out.json")]
        cmd += [str(e) for e in eps] + ["--days"] + [str(d) for d in DAYS]
        subprocess.run(cmd, check=True, capture_output=True)
        return json.loads((Path(tmp) / "out.json").read_text())


def moscot_rows(adata, python: str, seed: int, eps=MOSCOT_EPS) -> list[dict]:
    """moscot 0.5.2's fates at each ε, run by ``python`` (moscot's environment) on a temporary
    ``.h5ad`` of the same PCs; each last-day cell labelled with its true branch."""
    last = (adata.obs["day"] == adata.obs["day"].max()).to_numpy()
    r = _moscot_peer(adata, np.where(last, adata.obs["branch"].astype(str), ""), python, eps)
    col = r["fates"].index("A")
    rows = []
    for e, res in r["by_eps"].items():
        p, truth, commit = [], [], []
        for day in DAYS:
            at = (adata.obs["day"] == day).to_numpy()
            p.append(np.asarray(res["probs"][str(float(day))], dtype=float)[:, col])
            truth.append(adata.obs["true_fate_A"].to_numpy()[at])
            commit.append((adata.obs["commits_to"][at] == "A").to_numpy())
        p, truth, commit = map(np.concatenate, (p, truth, commit))
        ok = np.isfinite(p)  # a cell that no fate's mass reaches has no probability
        rows.append(
            dict(
                seed=seed,
                method=f"moscot 0.5.2 TemporalProblem, eps={float(e):g}",
                spread="",
                path="chain",
                seconds=res["seconds"],
                ece=ece(p[ok], commit[ok]),
                ece_truth=ece(p[ok], truth[ok]),
                mae=float(np.abs(p[ok] - truth[ok]).mean()),
                no_fate=int((~ok).sum()),
                converged=bool(res["converged"]),
            )
        )
    return rows


def cellrank_rows(adata, model, seed: int) -> list[dict]:
    """CellRank 2's GPCCA on the flow's couplings and velocities: terminal states' ARI."""
    import cellrank as cr

    from .. import tl

    a = adata.copy()
    tl.velocity(a, model, genes=False)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kernels = {
            "RealTimeKernel": lambda: cr.kernels.RealTimeKernel(
                a, time_key="day_category", couplings=tl.couplings(a, model)
            ).compute_transition_matrix(self_transitions="all", conn_weight=0.2, threshold="auto"),
            "VelocityKernel": lambda: cr.kernels.VelocityKernel(
                a, attr="obsm", xkey="X_pca", vkey="velocity_pca"
            ).compute_transition_matrix(show_progress_bar=False),
        }
        for name, make in kernels.items():
            kernel = make()
            for n_states in (None, 2):
                start = time.perf_counter()
                g = cr.estimators.GPCCA(kernel)
                try:
                    g.fit(n_states=[2, 8] if n_states is None else n_states)
                    g.predict_terminal_states()
                    member = g.macrostates_memberships
                    likeliest = np.asarray(member.names)[np.asarray(member.X).argmax(1)]
                    terminal = set(g.terminal_states.cat.categories)
                    labels = np.where(np.isin(likeliest, list(terminal)), likeliest, "none")
                    ari, n_terminal, error = _ari(a, labels), len(terminal), ""
                except Exception as e:  # noqa: BLE001  a peer that fails is reported, not fatal
                    ari, n_terminal, error = np.nan, 0, f"{type(e).__name__}: {e}"[:200]
                rows.append(
                    dict(
                        seed=seed,
                        method=f"CellRank 2 GPCCA, {name} of OT-CFM",
                        spread=f"n_states={'auto' if n_states is None else n_states}",
                        seconds=time.perf_counter() - start,
                        n_terminal=n_terminal,
                        ari=ari,
                        error=error,
                    )
                )
    return rows


def run(
    seeds=(0, 1, 2),
    *,
    steps: int = 1500,
    n_cells: int = 250,
    n_samples: int = 10,
    sb_bootstrap: bool = True,
    cellrank: bool = True,
    moscot_python: str | None = None,
    moscot_eps=MOSCOT_EPS,
    out: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every model (and CellRank, and moscot if its python is given) on every seed; a tidy
    table, also written to ``out``."""
    rows = []
    for seed in seeds:
        adata = simulate(seed, n_cells)
        ot_model = None
        for method in ("ot", "sb"):
            new, model, _ = cellflow_rows(adata, method, seed, steps, n_samples, sb_bootstrap)
            ot_model = model if method == "ot" else ot_model
            rows += new
            if progress:
                for row in new:
                    print(_line(row), flush=True)
        if moscot_python:
            new = moscot_rows(adata, moscot_python, seed, moscot_eps)
            rows += new
            if progress:
                for row in new:
                    print(_line(row), flush=True)
        if cellrank:
            new = cellrank_rows(adata, ot_model, seed)
            rows += new
            if progress:
                for row in new:
                    print(_line(row), flush=True)
        if out:
            write_csv(pd.DataFrame(rows), out, index=False)
    return pd.DataFrame(rows)


def simulate_multifate(seed: int, n_fates: int = 3, n_cells: int = 250, n_pcs: int = 20):
    """The multi-fate course (:func:`cellflow.datasets.simulated_multifate`, 64 futures per
    cell), normalised, log1p, PCA, kNN."""
    import scanpy as sc

    from ..datasets import simulated_multifate

    adata = simulated_multifate(n_cells, n_fates=n_fates, random_state=seed)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=n_pcs, random_state=0)
    sc.pp.neighbors(adata, n_pcs=n_pcs, random_state=0)
    return adata


def _multi_scores(P: np.ndarray, truth: np.ndarray, commit: np.ndarray) -> dict:
    """Scores of fate probabilities ``P`` (cells × fates) against the true ones and one drawn
    outcome per cell (fate index): the mean of |P − truth| over cells and fates, the mean over
    fates of each fate's one-against-rest ECE, and the entropy's AUROC for undecided cells
    (no true probability above 0.8) against decided ones."""
    from sklearn.metrics import roc_auc_score

    k = truth.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.nansum(np.where(P > 0, P * np.log(P), 0.0), 1)
    undecided = truth.max(1) < 0.8
    return dict(
        ece=float(np.mean([ece(P[:, j], commit == j) for j in range(k)])),
        ece_truth=float(np.mean([ece(P[:, j], truth[:, j]) for j in range(k)])),
        mae=float(np.abs(P - truth).mean()),
        entropy_auroc=float(roc_auc_score(undecided, H)) if 0 < undecided.mean() < 1 else np.nan,
    )


def multifate_rows(adata, method: str, seed: int, steps: int, n_samples: int) -> list[dict]:
    """A model of the multi-fate course: terminal states found without labels, each true fate
    matched to the found state holding most of its last-day cells, and the fates of days 1–3
    (SB-CFM along its SDE, ``n_samples`` paths a cell) scored by :func:`_multi_scores`."""
    from .. import tl
    from ..models.cells import CellFlow

    a = adata.copy()
    fates = list(a.obsm["true_fates"].columns)
    m = CellFlow(a, "day", method=method, seed=seed)
    start = time.perf_counter()
    m.train(steps=steps, progress=False)
    seconds = time.perf_counter() - start
    tl.terminal_states(a, m)
    last = (a.obs["day"] == a.obs["day"].max()).to_numpy()
    table = _states_by_truth(a, "fate")
    state = {
        f: (str(table[f].idxmax()) if f in table and table[f].max() > 0 else None) for f in fates
    }
    sde = method == "sb"
    P, truth, commit = [], [], []
    for day in DAYS:
        tl.fates(
            a,
            m,
            t_from=day,
            key_added="f",
            sde=sde,
            n_samples=n_samples if sde else None,
            spread="sde" if sde else None,
            progress=False,
            overwrite=True,
        )
        at = (a.obs["day"] == day).to_numpy()
        F = a.obsm["f"].loc[at]
        cols = np.column_stack(
            [F[state[f]].to_numpy() if state[f] in F else np.zeros(at.sum()) for f in fates]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            P.append(cols / cols.sum(1, keepdims=True))
        truth.append(a.obsm["true_fates"].to_numpy()[at])
        commit.append(a.obs["commits_to"].cat.codes.to_numpy()[at])
    P, truth, commit = map(np.concatenate, (P, truth, commit))
    ok = np.isfinite(P).all(1)
    labels = a.obs["terminal_states"].astype(object).where(a.obs["terminal_states"].notna(), "none")
    from sklearn.metrics import adjusted_rand_score

    return [
        dict(
            seed=seed,
            method=f"cellflow {'OT' if method == 'ot' else 'SB'}-CFM",
            spread="sde" if sde else "",
            path="chain",
            seconds=seconds,
            n_terminal=len(a.obs["terminal_states"].cat.categories),
            ari=float(
                adjusted_rand_score(a.obs["fate"][last].astype(str), labels[last].astype(str))
            ),
            fates_matched=sum(v is not None for v in state.values()),
            no_fate=int((~ok).sum()),
            **_multi_scores(P[ok], truth[ok], commit[ok]),
        )
    ]


def moscot_multifate_rows(adata, python: str, seed: int, eps=MOSCOT_EPS) -> list[dict]:
    """moscot 0.5.2 on the multi-fate course: each true fate's last-day cells pulled back."""
    last = (adata.obs["day"] == adata.obs["day"].max()).to_numpy()
    fates = list(adata.obsm["true_fates"].columns)
    label = adata.obs["fate"].astype(str).to_numpy()
    r = _moscot_peer(adata, np.where(last & (label != "progenitor"), label, ""), python, eps)
    order = [r["fates"].index(f) if f in r["fates"] else None for f in fates]
    rows = []
    for e, res in r["by_eps"].items():
        P, truth, commit = [], [], []
        for day in DAYS:
            at = (adata.obs["day"] == day).to_numpy()
            M = np.asarray(res["probs"][str(float(day))], dtype=float)
            P.append(
                np.column_stack([M[:, o] if o is not None else np.zeros(len(M)) for o in order])
            )
            truth.append(adata.obsm["true_fates"].to_numpy()[at])
            commit.append(adata.obs["commits_to"].cat.codes.to_numpy()[at])
        P, truth, commit = map(np.concatenate, (P, truth, commit))
        ok = np.isfinite(P).all(1)
        rows.append(
            dict(
                seed=seed,
                method=f"moscot 0.5.2 TemporalProblem, eps={float(e):g}",
                spread="",
                path="chain",
                seconds=res["seconds"],
                no_fate=int((~ok).sum()),
                converged=bool(res["converged"]),
                **_multi_scores(P[ok], truth[ok], commit[ok]),
            )
        )
    return rows


def run_multifate(
    seeds=(0, 1, 2),
    *,
    n_fates: int = 3,
    steps: int = 1500,
    n_cells: int = 250,
    n_samples: int = 10,
    moscot_python: str | None = None,
    moscot_eps=MOSCOT_EPS,
    out: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """OT-CFM, SB-CFM (and moscot, if its python is given) on the multi-fate course."""
    rows = []
    for seed in seeds:
        adata = simulate_multifate(seed, n_fates, n_cells)
        new = []
        for method in ("ot", "sb"):
            new += multifate_rows(adata, method, seed, steps, n_samples)
        if moscot_python:
            new += moscot_multifate_rows(adata, moscot_python, seed, moscot_eps)
        rows += new
        if progress:
            for row in new:
                print(_line(row), flush=True)
        if out:
            write_csv(pd.DataFrame(rows), out, index=False)
    return pd.DataFrame(rows)


def _line(row: dict) -> str:
    keys = [
        "ari",
        "ece",
        "ece_truth",
        "mae",
        "coverage90",
        "entropy_auroc",
        "driver_auroc_A",
        "driver_auroc_B",
        "cellrank_driver_auroc_A",
        "cellrank_driver_auroc_B",
    ]
    vals = "  ".join(f"{k} {row[k]:.3f}" for k in keys if k in row and pd.notna(row[k]))
    how = (
        f"{row['spread']} {row.get('path', '')}".strip()
        if pd.notna(row.get("path"))
        else row["spread"]
    )
    return f"seed {row['seed']}  {row['method']:<38} {how:<20} {row['seconds']:6.1f}s  {vals}"


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Medians over seeds per method, spread and path (chain or straight)."""
    keys = ["method", "spread"] + ["path"] * ("path" in df.columns)
    df = df.assign(path=df["path"].fillna("")) if "path" in df.columns else df
    cols = [c for c in df.columns if c not in ("seed", "error", *keys)]
    return df.groupby(keys, sort=False)[cols].median()


def larry(file: str, *, steps: int = 1000, seed: int = 0, n_samples: int = 10) -> pd.DataFrame:
    """Tutorial 04's protocol on the LARRY file: an OT-CFM flow on every day in the SPRING
    layout, terminal states without labels, and day-2 fates scored against clonal fates.

    Rows: how the found states split the tutorial's two hand-placed day-6 ends (the lower lobe,
    neutrophils; the right arm, monocytes); the neutrophil-vs-monocyte AUROC of
    ``P(neutrophil state) - P(monocyte state)`` over the day-2 cells with a clonal fate (all of
    them, and the half not used to orient the score, as the tutorial), for the label-free
    states, for ``cf.tl.fates`` on the hand-placed ends, for the bootstrap mean of
    ``n_samples`` replicates, and the tutorial's nearest-end distance rule beside them; and the
    AUROC of the fate entropy for day-2 cells of mixed clones (clonal neutrophil share 0.3–0.7)
    against committed ones; and the seconds ``cf.tl.fates`` takes for every cell with the
    entropic landing and with the 30 nearest cells, and with ``n_samples`` bootstrap replicates
    (trained in that call).
    """
    import anndata as ad
    from sklearn.metrics import roc_auc_score

    from .. import tl
    from ..models.cells import CellFlow

    a = ad.read_h5ad(file)
    E, day = a.obsm["X_spring"], a.obs["day"].to_numpy()
    path = a.obs["neu_mono_trajectory"].to_numpy(bool)
    lower = (day == 6) & path & (E[:, 1] < -1000)
    right = (day == 6) & path & (E[:, 0] > 2000) & (E[:, 1] > -800)
    names = list(a.uns["clonal_fate_names"])
    neu_c, mono_c = (a.obsm["clonal_fate"][:, names.index(n)] for n in ("Neutrophil", "Monocyte"))
    frac = neu_c / np.where(neu_c + mono_c > 0, neu_c + mono_c, np.nan)
    clonal = (day == 2) & np.isfinite(frac) & (frac != 0.5)
    truth, bias = frac[clonal] > 0.5, frac[clonal]
    mixed = (bias >= 0.3) & (bias <= 0.7)
    calib = np.random.default_rng(0).random(clonal.sum()) < 0.5

    def scored(what: str, score) -> dict:
        """A row: the AUROC of ``score`` over all clonal cells, and over the half not used to
        orient it."""
        score = np.nan_to_num(np.asarray(score, dtype=float))
        sign = 1.0 if roc_auc_score(truth[calib], score[calib]) >= 0.5 else -1.0
        both = roc_auc_score(truth, score)
        half = roc_auc_score(truth[~calib], sign * score[~calib])
        return dict(what=f"AUROC, {what}", value=f"{both:.3f} (other half {half:.3f})")

    def entropy(what: str, H) -> dict:
        """A row: the AUROC of the entropy ``H`` for mixed against committed clones."""
        ok = np.isfinite(H)
        return dict(
            what=f"entropy AUROC, {what}, {mixed[ok].sum()} mixed vs "
            f"{(~mixed[ok]).sum()} committed",
            value=f"{roc_auc_score(mixed[ok], H[ok]):.3f} ({(~ok).sum()} cells without a fate)",
        )

    m = CellFlow(a, "day", use_rep="X_spring", method="ot", seed=seed)
    m.train(steps=steps, progress=False)
    tl.terminal_states(a, m)
    d6 = day == 6
    ends = np.where(lower, "lower lobe", np.where(right, "right arm", "other"))
    split = pd.crosstab(a.obs["terminal_states"][d6].astype(str), ends[d6])
    neu, mono = split["lower lobe"].idxmax(), split["right arm"].idxmax()
    rows = [
        dict(
            what="found states holding the lower lobe / the right arm",
            value=f"{neu} ({split.loc[neu, 'lower lobe'] / lower.sum():.0%} of the lobe, "
            f"{split.loc[neu, 'right arm'] / right.sum():.0%} of the arm) / {mono} "
            f"({split.loc[mono, 'right arm'] / right.sum():.0%} of the arm, "
            f"{split.loc[mono, 'lower lobe'] / lower.sum():.0%} of the lobe)",
        )
    ]
    tl.fates(a, m, t_from=2)
    F = a.obsm["fate"]
    rows.append(scored("fates of the found states", (F[neu] - F[mono]).to_numpy()[clonal]))
    rows.append(entropy("fates of the found states", a.obs["fate_entropy"].to_numpy()[clonal]))
    tl.fates(a, m, t_from=2, chain=False, key_added="straight")  # the default before
    S = a.obsm["straight"]
    rows.append(scored("the same, straight to day 6", (S[neu] - S[mono]).to_numpy()[clonal]))
    rows.append(
        entropy("the same, straight to day 6", a.obs["straight_entropy"].to_numpy()[clonal])
    )
    a.obs["hand_ends"] = pd.Categorical(np.where(lower, "lower", np.where(right, "right", None)))
    tl.fates(a, m, "hand_ends", t_from=2, t_to=6)
    G = a.obsm["fates_hand_ends"]
    rows.append(
        scored("fates of the hand-placed ends", (G["lower"] - G["right"]).to_numpy()[clonal])
    )
    seconds = {}
    for what, eps in (("the entropic landing (default)", "auto"), ("the 30 nearest cells", None)):
        start = time.perf_counter()
        tl.fates(a, m, eps=eps, key_added="every", overwrite=True)  # every cell, as CellRank's
        seconds[what] = time.perf_counter() - start
    rows.append(
        dict(
            what="seconds, cf.tl.fates for every cell: " + " / ".join(seconds),
            value=" / ".join(f"{v:.1f}" for v in seconds.values()),
        )
    )
    start = time.perf_counter()  # the replicates train here, then every cell lands n_samples times
    tl.fates(a, m, n_samples=n_samples, key_added="boot", progress=False)
    rows.append(
        dict(
            what=f"seconds, fates with {n_samples} bootstrap replicates for every cell, "
            "replicates trained",
            value=f"{time.perf_counter() - start:.0f}",
        )
    )
    B = a.obsm["boot"]
    rows.append(scored(f"bootstrap mean of {n_samples}", (B[neu] - B[mono]).to_numpy()[clonal]))
    rows.append(entropy(f"bootstrap mean of {n_samples}", a.obs["boot_entropy"].to_numpy()[clonal]))
    Y = m.push(E[clonal], 2, 6)
    dist = np.linalg.norm(Y - E[right].mean(0), axis=1) - np.linalg.norm(
        Y - E[lower].mean(0), axis=1
    )
    rows.append(scored("tutorial's nearest-end rule on the push", dist))
    return pd.DataFrame(rows).set_index("what")
