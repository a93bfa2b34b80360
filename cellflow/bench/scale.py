"""``cellflow bench scale``: a million-cell time course on one machine.

A synthetic time course of ``n_cells`` cells in ``n_pcs`` dimensions (three time points, the
cells drifting and spreading) is built as an AnnData with a float32 ``obsm["X_pca"]``. A
:class:`~cellflow.CellFlow` model is trained on it and, for comparison, on a
``small``-cell subsample, with the same steps and batch size: the step time must not depend on
the number of cells, because each step draws fixed-size minibatches by index. Then the
velocity of every cell is computed in chunks. The peak resident memory of the process
(``getrusage``) is reported after each phase.

Before that, with ``x_cells > 0``, a sparse count matrix ``X`` (``x_cells × x_genes``) is
trained on directly (``use_rep="X"``), once in memory and once from a backed ``.h5ad``, to
show that X is read a minibatch at a time: each of these phases reports its own peak memory
above what the process held before it, next to the size X would have dense.

Example
-------
``cellflow bench scale --n-cells 1000000 --n-pcs 50``
"""

from __future__ import annotations

import gc
import resource
import sys
import time

import numpy as np
import pandas as pd

from .._defaults import SCALE_X_CELLS
from .._io import write_h5ad


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
        d = day[s : s + chunk].astype(np.float32)[:, None]
        X[s : s + chunk] = (
            rng.standard_normal((len(d), n_pcs), dtype=np.float32) * (1 + 0.3 * d) + d * drift
        )
    adata = ad.AnnData(obs=pd.DataFrame({"day": day}, index=pd.RangeIndex(n_cells).astype(str)))
    adata.obsm["X_pca"] = X
    return adata


def _reset_peak() -> bool:
    """Reset the peak-RSS high-water mark of this process (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_gb(field: str) -> float | None:
    """A memory field of ``/proc/self/status`` (Linux: ``VmRSS``, ``VmHWM``) in GB; None
    elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def measured(fn):
    """Run ``fn()`` and return ``(its result, seconds, peak GB, GB held before)``: the peak is
    this call's own where Linux lets the high-water mark be reset, else the process's so far."""
    gc.collect()
    base, exact = _proc_status_gb("VmRSS") or 0.0, _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, (_proc_status_gb("VmHWM") if exact else None) or _peak_gb(), base


def synthetic_counts(
    n_cells: int, n_genes: int, density: float = 0.05, n_times: int = 3, seed: int = 0
):
    """AnnData with a sparse CSR count matrix ``X`` (float32; about ``density`` of the entries
    non-zero) and ``obs["day"]``; the first 10 genes rise with the day. Built a block of rows
    at a time, so no dense ``n_cells × n_genes`` array ever exists."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, n_times, n_cells))
    blocks = []
    step = max(1, 2**24 // n_genes)
    for s in range(0, n_cells, step):
        d = day[s : s + step]
        block = (rng.random((len(d), n_genes), dtype=np.float32) < density).astype(np.float32)
        block *= rng.poisson(2.0, size=block.shape).astype(np.float32) + 1
        k = min(10, n_genes)
        block[:, :k] = rng.poisson(1.0 + 2.0 * d[:, None], size=(len(d), k))
        blocks.append(sp.csr_matrix(block))
    obs = pd.DataFrame({"day": day}, index=pd.RangeIndex(n_cells).astype(str))
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(sp.vstack(blocks, format="csr"), obs=obs, var=var)


def sparse_x_phases(
    *,
    n_cells: int = 200_000,
    n_genes: int = 2000,
    density: float = 0.05,
    method: str = "ot",
    steps: int = 50,
    batch_size: int = 512,
    seed: int = 0,
    workdir: str | None = None,
    verbose: bool = True,
) -> list[dict]:
    """Train on a sparse ``X`` in memory and on the same ``X`` on disk (a backed ``.h5ad``),
    with ``use_rep="X"``. Each phase reports its own peak memory above the memory held
    before it (Linux resets the high-water mark), to compare with the size X would have dense."""
    import tempfile
    from pathlib import Path

    import anndata as ad

    from ..models.cells import CellFlow

    rows = []
    t0 = time.perf_counter()
    adata = synthetic_counts(n_cells, n_genes, density, seed=seed)
    dense_gb = n_cells * n_genes * 4 / 1024**3
    nnz = int(adata.X.nnz)
    rows.append(
        dict(
            phase="build sparse X",
            n_cells=n_cells,
            seconds=time.perf_counter() - t0,
            peak_rss_gb=_peak_gb(),
            note=f"{n_genes} genes, {nnz:,} non-zeros; dense float32 would be {dense_gb:.2f} GB",
        )
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "sparse_x.h5ad"
        write_h5ad(adata, path)
        for label, data in (("sparse X in memory", adata), ("backed X on disk", None)):
            if data is None:
                del adata
                gc.collect()
                data = ad.read_h5ad(path, backed="r")
            base = _proc_status_gb("VmRSS") or float("nan")
            exact = _reset_peak()
            t0 = time.perf_counter()
            model = CellFlow(data, "day", use_rep="X", method=method, seed=seed)
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.train(steps=steps, batch_size=batch_size, progress=False)
            train = time.perf_counter() - t0
            peak = (_proc_status_gb("VmHWM") if exact else None) or _peak_gb()
            rows.append(
                dict(
                    phase=f"train {method} on {label}",
                    n_cells=n_cells,
                    seconds=train,
                    setup_s=setup,
                    ms_per_step=1e3 * train / steps,
                    peak_rss_gb=peak,
                    note=f"peak {peak - base:+.2f} GB above the {base:.2f} GB held before",
                )
            )
            if verbose:
                print(rows[-1], flush=True)
            del model
            if label.startswith("backed"):
                data.file.close()
    return rows


def run(
    *,
    n_cells: int = 1_000_000,
    n_pcs: int = 50,
    small: int = 10_000,
    method: str = "ot",
    steps: int = 50,
    batch_size: int = 512,
    seed: int = 0,
    x_cells: int = SCALE_X_CELLS,
    x_genes: int = 2000,
    x_density: float = 0.05,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train on ``small`` and on ``n_cells`` cells, then compute every cell's velocity; with
    ``x_cells > 0``, first train on a sparse ``X`` of ``x_cells × x_genes``, in memory and
    backed on disk (:func:`sparse_x_phases`)."""
    from ..models.cells import CellFlow

    rows = []
    if x_cells:
        rows += sparse_x_phases(
            n_cells=x_cells,
            n_genes=x_genes,
            density=x_density,
            method=method,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            verbose=verbose,
        )
    t0 = time.perf_counter()
    big = synthetic_time_course(n_cells, n_pcs, seed=seed)
    rows.append(
        dict(
            phase="build AnnData",
            n_cells=n_cells,
            seconds=time.perf_counter() - t0,
            peak_rss_gb=_peak_gb(),
        )
    )
    sub = big[
        np.random.default_rng(seed).choice(n_cells, min(small, n_cells), replace=False)
    ].copy()
    for adata in (sub, big):
        n = adata.n_obs
        t0 = time.perf_counter()
        model = CellFlow(adata, "day", use_rep="X_pca", method=method, seed=seed)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.train(steps=steps, batch_size=batch_size, progress=False)
        train = time.perf_counter() - t0
        rows.append(
            dict(
                phase=f"train {method}",
                n_cells=n,
                seconds=train,
                setup_s=setup,
                ms_per_step=1e3 * train / steps,
                peak_rss_gb=_peak_gb(),
            )
        )
        if verbose:
            print(rows[-1], flush=True)
    t0 = time.perf_counter()
    X = big.obsm["X_pca"]
    V = model.velocity(X, big.obs["day"].to_numpy(dtype=float))
    rows.append(
        dict(
            phase="velocity, all cells",
            n_cells=len(V),
            seconds=time.perf_counter() - t0,
            peak_rss_gb=_peak_gb(),
        )
    )
    df = pd.DataFrame(rows)
    if verbose:
        print(
            f"\n{n_cells:,} cells × {n_pcs} PCs, {steps} steps of batch {batch_size} per time point"
        )
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return df
