"""A tiny time course for the fault tests: ``n`` cells per time point, drifting along the first of
``d`` coordinates by one unit per time point."""

import anndata as ad
import numpy as np
import pandas as pd


def course(n=40, d=3, times=(0, 1, 2, 3), seed=0, names=True):
    rng = np.random.default_rng(seed)
    t = np.repeat(times, n).astype(float)
    X = rng.normal(scale=0.3, size=(len(t), d))
    X[:, 0] += np.repeat(np.arange(len(times)), n)
    index = [f"c{i}" for i in range(len(t))] if names else [str(i) for i in range(len(t))]
    a = ad.AnnData(obs=pd.DataFrame({"day": t}, index=index))
    a.obsm["X_pca"] = X
    return a
