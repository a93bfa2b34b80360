"""``cellflow bench velocity``: how well the learned field agrees with a reference velocity.

A flow is fitted on every time point of an ``.h5ad``; its velocity at each cell's own time is
compared, cell by cell, with a reference velocity stored in ``obsm`` in the same coordinates
(for example RNA velocity projected onto the PCs, ``obsm["velocity_pca"]`` of the EB file, or
the true velocity of the simulated data). The score is the cosine similarity

.. math:: \\cos_i = \\frac{\\langle v_\\theta(t_i, x_i),\\, v^{ref}_i\\rangle}
          {\\|v_\\theta\\|\\,\\|v^{ref}_i\\|}

over the first ``n_pcs`` coordinates, reported as the median per time point and overall. The
same score for the population drift (mean of the next time point minus mean of this one, the
same vector for every cell of a time point) is printed beside it: a field that only learned
the drift of the means scores that much.

Example
-------
``cellflow bench velocity ../shared/datasets/eb.h5ad --time-key time_point --reference
velocity_pca``
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .._io import write_csv


def drift_velocity(X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The population drift per cell: ``mean(X[t_next]) - mean(X[t])`` (the last time point
    uses the interval before it)."""
    times = np.unique(t)
    means = np.stack([X[t == s].mean(0) for s in times])
    step = np.diff(means, axis=0)
    step = np.concatenate([step, step[-1:]])
    return step[np.searchsorted(times, t)]


def run(
    file: str,
    time_key: str,
    reference: str,
    *,
    use_rep: str = "X_pca",
    n_pcs: int | None = None,
    whiten: bool = True,
    methods=("ot", "icfm"),
    seeds=(0,),
    steps: int = 2000,
    batch_size: int = 512,
    out: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit each method and seed on all time points and score its velocity against
    ``obsm[reference]``. Returns a tidy table ``method, seed, time, median_cosine, n_cells``
    (``time="all"`` for all cells) and writes it to ``out`` if given. ``n_pcs=None``: the paper's
    5 leading columns of ``use_rep``, or all of a narrower representation."""
    import anndata as ad

    from ..course.read import get_representation, get_times, paper_n_pcs
    from ..metrics import velocity_cosine
    from ..models.cells import CellFlow

    adata = ad.read_h5ad(file)
    if reference not in adata.obsm:
        raise KeyError(f"obsm[{reference!r}] not found; available: {sorted(adata.obsm)}.")
    t, _ = get_times(adata, time_key)
    n_pcs = paper_n_pcs(adata, use_rep) if n_pcs is None else n_pcs
    X = get_representation(adata, use_rep, n_pcs)
    V_ref = np.asarray(adata.obsm[reference], dtype=np.float64)[:, : X.shape[1]]
    if V_ref.shape != X.shape:
        raise ValueError(
            f"obsm[{reference!r}] has shape {adata.obsm[reference].shape}; it needs at least "
            f"{X.shape[1]} columns in the coordinates of obsm[{use_rep!r}]."
        )

    def rows_for(label, seed, cos, seconds):
        rows = [
            dict(
                method=label,
                seed=seed,
                time="all",
                median_cosine=float(np.median(cos)),
                n_cells=len(cos),
                seconds=seconds,
            )
        ]
        for s in np.unique(t):
            rows.append(
                dict(
                    method=label,
                    seed=seed,
                    time=f"{s:g}",
                    median_cosine=float(np.median(cos[t == s])),
                    n_cells=int((t == s).sum()),
                    seconds=seconds,
                )
            )
        return rows

    rows = rows_for("population drift", 0, velocity_cosine(drift_velocity(X, t), V_ref), 0.0)
    for method in methods:
        for seed in seeds:
            start = time.perf_counter()
            model = CellFlow(
                adata,
                time_key,
                use_rep=use_rep,
                n_pcs=n_pcs,
                whiten=whiten,
                method=method,
                seed=seed,
            )
            model.train(steps=steps, batch_size=batch_size, progress=progress)
            V = model.velocity(X, t)
            secs = time.perf_counter() - start
            rows += rows_for(method, seed, velocity_cosine(V, V_ref), secs)
            print(
                f"{method} seed {seed}: median cosine "
                f"{rows[-len(np.unique(t)) - 1]['median_cosine']:.3f} "
                f"({secs:.0f} s)",
                flush=True,
            )
    df = pd.DataFrame(rows)
    table = df[df.time == "all"].groupby("method")["median_cosine"].agg(["mean", "std", "count"])
    print(
        f"median cosine to obsm[{reference!r}] over the first {X.shape[1]} coordinates of "
        f"{use_rep}:"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if out:
        write_csv(df, out, index=False)
        print(f"wrote {out}")
    return df
