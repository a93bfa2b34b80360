r"""How close a synthetic table is to the real one.

- :func:`column_distances`: per column, the 1-Wasserstein distance and the Kolmogorov–Smirnov
  statistic for numbers (W1 in units of the real column's standard deviation), the total
  variation distance :math:`\tfrac12\sum_k |p_k - q_k|` for categories.
- :func:`correlation_distance`: :math:`\|R_{real} - R_{synth}\|_F / d` between the Pearson
  correlation matrices of the encoded tables (categories one-hot), ``d`` their width.
- :func:`ml_efficiency`: accuracy on real held-out rows of a classifier trained on synthetic
  rows, divided by that of the same classifier trained on the real training rows.

Example
-------
>>> from cellflow.datasets import load_table
>>> from cellflow.tabular import column_distances
>>> df = load_table("iris")
>>> float(column_distances(df, df)["w1"].max())
0.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, wasserstein_distance

from ._encoder import TabularEncoder

__all__ = ["column_distances", "correlation_distance", "ml_efficiency"]


def _check_columns(real: pd.DataFrame, synth: pd.DataFrame):
    missing = [c for c in real.columns if c not in synth.columns]
    if missing:
        raise KeyError(f"the synthetic table lacks columns {missing}.")


def column_distances(real: pd.DataFrame, synth: pd.DataFrame) -> pd.DataFrame:
    """One row per column: ``column, kind, w1, ks, tvd`` (NaN where a statistic does not apply)."""
    _check_columns(real, synth)
    enc = TabularEncoder(missing="impute").fit(real)
    rows = []
    for c in enc.columns:
        r, s = real[c.name], synth[c.name]
        if c.kind == "categorical":
            p = r.astype(object).value_counts(normalize=True)
            q = s.astype(object).value_counts(normalize=True)
            tvd = 0.5 * float(p.subtract(q, fill_value=0.0).abs().sum())
            rows.append((c.name, c.kind, np.nan, np.nan, tvd))
        else:
            x, y = r.to_numpy(float), s.to_numpy(float)
            w1 = wasserstein_distance(x, y) / c.std
            rows.append((c.name, c.kind, float(w1), float(ks_2samp(x, y).statistic), np.nan))
    return pd.DataFrame(rows, columns=["column", "kind", "w1", "ks", "tvd"])


def correlation_distance(real: pd.DataFrame, synth: pd.DataFrame) -> float:
    """Frobenius distance between the correlation matrices, divided by their width."""
    _check_columns(real, synth)
    enc = TabularEncoder(missing="impute").fit(real)
    a, b = enc.encode(real).astype(float), enc.encode(synth[real.columns]).astype(float)
    keep = (a.std(0) > 0) & (b.std(0) > 0)
    ra, rb = np.corrcoef(a[:, keep], rowvar=False), np.corrcoef(b[:, keep], rowvar=False)
    return float(np.linalg.norm(np.atleast_2d(ra - rb)) / max(int(keep.sum()), 1))


def _classifier(kind: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    if kind == "forest":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    raise ValueError(f"unknown classifier {kind!r}; choose 'logistic' or 'forest'.")


def ml_efficiency(
    synth: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    label: str,
    *,
    classifiers: tuple[str, ...] = ("logistic", "forest"),
    seed: int = 0,
) -> dict:
    """Train on synthetic rows, test on real ones, against training on the real rows.

    Returns
    -------
    dict
        For each classifier ``{name: {"real": acc, "synthetic": acc, "ratio": synthetic / real}}``
        and ``"ratio"``: the mean ratio over the classifiers.
    """
    for name, df in (("synthetic", synth), ("train", train), ("test", test)):
        if label not in df.columns:
            raise KeyError(f"label {label!r} is not a column of the {name} table.")
    enc = TabularEncoder(missing="impute").fit(train.drop(columns=[label]))
    X = {
        k: enc.encode(df.drop(columns=[label]))
        for k, df in (("synth", synth), ("train", train), ("test", test))
    }
    y = {
        "synth": synth[label].astype(str).to_numpy(),
        "train": train[label].astype(str).to_numpy(),
        "test": test[label].astype(str).to_numpy(),
    }
    out: dict = {}
    for kind in classifiers:
        res = {}
        for src, key in (("real", "train"), ("synthetic", "synth")):
            if len(np.unique(y[key])) < 2:
                res[src] = float(
                    np.mean(y["test"] == y[key][0])
                )  # a single class predicts that class
                continue
            clf = _classifier(kind, seed).fit(X[key], y[key])
            res[src] = float(np.mean(clf.predict(X["test"]) == y["test"]))
        res["ratio"] = res["synthetic"] / res["real"] if res["real"] > 0 else float("nan")
        out[kind] = res
    out["ratio"] = float(np.mean([out[k]["ratio"] for k in classifiers]))
    return out
