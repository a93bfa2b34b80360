"""``cellflow bench tabular``: TabularFlow against ForestDiffusion on the same splits, in one run.

For each table: a stratified 80/20 split (seeded); each generator trains on the 80 % and
draws as many rows; the rows are scored by machine-learning efficiency (train on synthetic,
test on the real 20 %, divided by training on the real 80 %), the mean per-column W1 (in
real standard deviations) and KS statistic, and the correlation-matrix distance. Wall time
covers training and sampling. A row "real (test rows)" scores the real held-out rows the
same way: the floor that sampling noise alone sets for W1, KS and the correlation distance.

The peer is ForestDiffusion (``pip install forestdiffusion``; Jolicoeur-Martineau et al.,
AISTATS 2024) in flow mode with its defaults (n_t = 50, duplicate_K = 100, XGBoost),
conditioned on the label like ours. Its cost grows with rows × duplicate_K × columns²: on 2
cores wine takes about 10 minutes and breast_cancer an estimated 3 hours, so
``peer_duplicate_k`` (``--peer-duplicate-k``) lowers its noise duplication for large tables; the
generator is then labelled ``ForestDiffusion (K=...)``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .._io import write_json

__all__ = ["run"]


def _score(name, synth, train, test, label, seconds, seed) -> dict:
    from ..tabular import column_distances, correlation_distance, ml_efficiency

    me = ml_efficiency(synth, train, test, label, seed=seed)
    cd = column_distances(train.drop(columns=[label]), synth.drop(columns=[label]))
    return {
        "generator": name,
        "mle_ratio": me["ratio"],
        "mle_logistic": me["logistic"]["ratio"],
        "mle_forest": me["forest"]["ratio"],
        "acc_real_logistic": me["logistic"]["real"],
        "acc_real_forest": me["forest"]["real"],
        "w1_mean": float(cd["w1"].mean()),
        "ks_mean": float(cd["ks"].mean()),
        "corr_dist": correlation_distance(train, synth),
        "seconds": seconds,
    }


def _ours(train, label, method, steps, seed, progress):
    from ..tabular import TabularFlow

    t = time.perf_counter()
    tf = TabularFlow(train, label=label, method=method, seed=seed)
    tf.train(steps=steps, progress=progress)
    return tf.sample(len(train)), time.perf_counter() - t


def _forest_diffusion(train, label, seed, n_jobs, duplicate_k: int = 100):
    from ForestDiffusion import ForestDiffusionModel

    t = time.perf_counter()
    X = train.drop(columns=[label]).to_numpy(float)
    ints = [
        i
        for i, c in enumerate(train.drop(columns=[label]).columns)
        if pd.api.types.is_integer_dtype(train[c])
    ]
    fd = ForestDiffusionModel(
        X,
        label_y=train[label].to_numpy(),
        n_t=50,
        duplicate_K=duplicate_k,
        diffusion_type="flow",
        int_indexes=ints,
        n_jobs=n_jobs,
        seed=seed,
    )
    out = fd.generate(batch_size=len(train))
    seconds = time.perf_counter() - t
    synth = pd.DataFrame(out[:, :-1], columns=train.drop(columns=[label]).columns)
    for c in synth.columns:
        synth[c] = synth[c].astype(train[c].dtype)
    synth[label] = out[:, -1].astype(train[label].dtype)
    return synth[train.columns], seconds


def run(
    tables=("wine", "breast_cancer"),
    *,
    methods=("icfm", "ot"),
    steps: int = 5000,
    seeds=(0,),
    peer: bool = True,
    n_jobs: int = 2,
    peer_duplicate_k: int = 100,
    label: str = "target",
    progress: bool = False,
    out: str | None = None,
) -> pd.DataFrame:
    """Run the comparison; returns one row per (table, seed, generator) and prints medians."""
    from sklearn.model_selection import train_test_split

    from ..datasets import TABLES, load_table

    if peer:
        try:
            import ForestDiffusion  # noqa: F401
        except ImportError:
            print(
                "ForestDiffusion is not installed (pip install forestdiffusion): running cellflow "
                "alone."
            )
            peer = False
    rows = []
    for name in tables:
        df = load_table(name) if name in TABLES else pd.read_csv(name)
        for seed in seeds:
            train, test = train_test_split(df, test_size=0.2, stratify=df[label], random_state=seed)
            train, test = train.reset_index(drop=True), test.reset_index(drop=True)
            # the floor: real held-out rows scored as if they were synthetic (sampling noise alone)
            floor = _score("real (test rows)", test, train, test, label, 0.0, seed)
            floor.update(
                {k: float("nan") for k in ("mle_ratio", "mle_logistic", "mle_forest")}
            )  # tested on itself
            rows.append({"table": name, "seed": seed, **floor})
            print(_line(rows[-1]), flush=True)
            for method in methods:
                synth, sec = _ours(train, label, method, steps, seed, progress)
                rows.append(
                    {
                        "table": name,
                        "seed": seed,
                        **_score(f"cellflow-{method}", synth, train, test, label, sec, seed),
                    }
                )
                print(_line(rows[-1]), flush=True)
            if peer:
                synth, sec = _forest_diffusion(train, label, seed, n_jobs, peer_duplicate_k)
                fd = "ForestDiffusion" + (
                    f" (K={peer_duplicate_k})" if peer_duplicate_k != 100 else ""
                )
                rows.append(
                    {
                        "table": name,
                        "seed": seed,
                        **_score(fd, synth, train, test, label, sec, seed),
                    }
                )
                print(_line(rows[-1]), flush=True)
    res = pd.DataFrame(rows)
    summary = (
        res.groupby(["table", "generator"], sort=False)
        .median(numeric_only=True)
        .drop(columns="seed")
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    if out:
        write_json(out, {"rows": rows, "steps": steps, "seeds": list(seeds)})
    return res


def _line(r: dict) -> str:
    return (
        f"{r['table']:<14} seed {r['seed']} {r['generator']:<16} MLE {r['mle_ratio']:.3f} "
        f"(logistic {r['mle_logistic']:.3f}, forest {r['mle_forest']:.3f})  W1 {r['w1_mean']:.3f}  "
        f"KS {r['ks_mean']:.3f}  corr {r['corr_dist']:.4f}  {r['seconds']:.1f} s"
    )


if __name__ == "__main__":  # pragma: no cover
    np.seterr(all="ignore")
    run()
