"""``cellflow bench scale``: a million-cell time course on one machine.

A synthetic time course of ``n_cells`` cells in ``n_pcs`` dimensions (three time points, the
cells drifting and spreading) is built as an AnnData with a float32 ``obsm["X_pca"]``. A
:class:`~cellflow.CellFlow` model is trained on it and, for comparison, on a
``small``-cell subsample, with the same steps and batch size: the step time must not depend on
the number of cells, because each step draws fixed-size minibatches by index. Then the
velocity of every cell is computed in chunks. The peak resident memory of the process
(``getrusage``) is reported after each phase.

Example
-------
``cellflow bench scale --n-cells 1000000 --n-pcs 50``
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import pandas as pd


def _peak_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024**3 if sys.platform == "darwin" else 1024**2)


def synthetic_time_course(n_cells: int, n_pcs: int, n_times: int = 3, seed: int = 0):
    """AnnData with ``obs["day"]`` 0..n_times-1 and a float32 ``obsm["X_pca"]``; built in
    float32 chunks, so memory stays near the size of the result."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, n_times, n_cells))
    X = np.empty((n_cells, n_pcs), dtype=np.float32)
    drift = np.zeros(n_pcs, dtype=np.float32)
    drift[0], drift[1 % n_pcs] = 2.0, 1.0
    chunk = 200_000
    for s in range(0, n_cells, chunk):
        d = day[s:s + chunk].astype(np.float32)[:, None]
        X[s:s + chunk] = rng.standard_normal((len(d), n_pcs), dtype=np.float32) * (1 + 0.3 * d) + d * drift
    adata = ad.AnnData(obs=pd.DataFrame({"day": day}, index=pd.RangeIndex(n_cells).astype(str)))
    adata.obsm["X_pca"] = X
    return adata


def run(*, n_cells: int = 1_000_000, n_pcs: int = 50, small: int = 10_000, method: str = "ot", steps: int = 50,
        batch_size: int = 512, seed: int = 0, verbose: bool = True) -> pd.DataFrame:
    """Train on ``small`` and on ``n_cells`` cells, then compute every cell's velocity."""
    from .._cellflow import CellFlow

    rows = []
    t0 = time.perf_counter()
    big = synthetic_time_course(n_cells, n_pcs, seed=seed)
    rows.append(dict(phase="build AnnData", n_cells=n_cells, seconds=time.perf_counter() - t0, peak_rss_gb=_peak_gb()))
    sub = big[np.random.default_rng(seed).choice(n_cells, min(small, n_cells), replace=False)].copy()
    for adata in (sub, big):
        n = adata.n_obs
        t0 = time.perf_counter()
        model = CellFlow(adata, "day", use_rep="X_pca", method=method, seed=seed)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.train(steps=steps, batch_size=batch_size, progress=False)
        train = time.perf_counter() - t0
        rows.append(dict(phase=f"train {method}", n_cells=n, seconds=train, setup_s=setup,
                         ms_per_step=1e3 * train / steps, peak_rss_gb=_peak_gb()))
        if verbose:
            print(rows[-1], flush=True)
    t0 = time.perf_counter()
    X = big.obsm["X_pca"]
    V = model.velocity(X, big.obs["day"].to_numpy(dtype=float))
    rows.append(dict(phase="velocity, all cells", n_cells=len(V), seconds=time.perf_counter() - t0,
                     peak_rss_gb=_peak_gb()))
    df = pd.DataFrame(rows)
    if verbose:
        print(f"\n{n_cells:,} cells × {n_pcs} PCs, {steps} steps of batch {batch_size} per time point")
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return df
