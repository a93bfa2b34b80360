r"""``cellflow bench scale --cells N``: an atlas-sized time course, from disk to fates.

A synthetic course is written to an ``.h5ad`` file a block of cells at a time
(:func:`write_atlas`), then read on demand (:func:`cellflow.read_lazy`): a model is built and
trained, every cell's velocity is written into the file and the fates of the earliest cells are
computed. Each stage reports its seconds and its own peak resident memory (Linux resets the
high-water mark between stages), next to the size of the representation on disk.

**The course** is built to look like an embryo atlas, not Gaussian noise: ``n_times`` time
points whose cell numbers grow in proportion to :math:`k + 1` (the embryo grows), four lineages
A–D (shares 0.4, 0.3, 0.2, 0.1) that split from one progenitor pool as a binary tree (A|B from
C|D a third of the way through the course, then A from B and C from D two thirds of the way),
and three cell-cycle-like states (G1, S, G2M) in every lineage and at every time, which form
clusters that have nothing to do with fate. A cell's position in 8 latent dimensions is its
progress (its time point plus a uniform jitter of ±0.5), its branch coordinates (growing
linearly after each split) and its state's offset; they are rotated at random into the first 8
of ``n_pcs`` dimensions, and every dimension gets noise whose standard deviation falls as
:math:`0.3/\sqrt{1 + j}` with the dimension :math:`j`, as a PCA spectrum does. ``obs`` holds
``day``, ``lineage`` (the fate each cell is on) and ``state``.

Before the first split a cell's position says nothing about its lineage, so the true fate
probabilities of every cell of the first time point are the lineage shares; the benchmark
reports how far the mean fate of those cells is from them.

Example
-------
``cellflow bench scale --cells 12000000 --n-times 10 --steps 2000 --keep atlas.h5ad``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .scale import measured

#: the lineages, their shares of the cells at every time, and the cell states
LINEAGES, SHARES, STATES = ("A", "B", "C", "D"), (0.4, 0.3, 0.2, 0.1), ("G1", "S", "G2M")

_BLOCK = 262_144  # cells written per block


def atlas_sizes(n_cells: int, n_times: int) -> np.ndarray:
    """Cells per time point, in proportion to k + 1 (k = 0 .. n_times - 1), summing to n_cells.

    >>> atlas_sizes(55, 10).tolist()
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    """
    w = np.arange(1, n_times + 1, dtype=float)
    sizes = np.floor(n_cells * w / w.sum()).astype(np.int64)
    sizes[-1] += n_cells - sizes.sum()
    return sizes


def _latent(day, rng, n_times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8 latent coordinates of cells at ``day`` (module docstring), their lineage and state
    codes."""
    n = len(day)
    lineage = rng.choice(len(LINEAGES), n, p=SHARES)
    state = rng.integers(0, len(STATES), n)
    s = day + rng.uniform(-0.5, 0.5, n)
    first, second = (n_times - 1) / 3.0, 2.0 * (n_times - 1) / 3.0
    Z = np.zeros((n, 8))
    Z[:, 0] = s
    side = np.where(lineage < 2, -1.0, 1.0)  # A, B | C, D
    Z[:, 1] = side * 1.5 * np.maximum(s - first, 0.0)
    within = np.where(lineage % 2 == 0, -1.0, 1.0)  # A | B, C | D
    axis = np.where(lineage < 2, 2, 3)
    Z[np.arange(n), axis] = within * 1.5 * np.maximum(s - second, 0.0)
    Z[np.arange(n), 4 + state] = 1.0  # the states' clusters
    return Z, lineage, state


def write_atlas(
    path: str | Path, n_cells: int, n_pcs: int = 50, n_times: int = 10, seed: int = 0
) -> Path:
    """Write the synthetic atlas (module docstring) to ``path`` as an ``.h5ad`` that anndata
    reads, a block of cells at a time (memory stays near one block; the file is written to a
    temporary name and moved into place whole)."""
    import h5py

    from .._io import atomic_path
    from ..course.ondisk import _io

    if n_pcs < 8:
        raise ValueError(f"n_pcs must be at least 8 (the latent dimensions), got {n_pcs}.")
    write_elem = _io()[1]
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    noise = 0.3 / np.sqrt(1.0 + np.arange(n_pcs))
    sizes = atlas_sizes(n_cells, n_times)
    day = np.repeat(np.arange(n_times), sizes)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        obs = f.create_group("obs")
        names = obs.create_dataset("_index", (n_cells,), dtype=h5py.string_dtype())
        # contiguous, as anndata writes a dense array: a drawn row is one small read (a chunked
        # dataset reads a whole chunk per row)
        X = f.create_group("obsm").create_dataset("X_pca", (n_cells, n_pcs), dtype=np.float32)
        lineage = np.empty(n_cells, dtype=np.int8)
        state = np.empty(n_cells, dtype=np.int8)
        for s in range(0, n_cells, _BLOCK):
            e = min(s + _BLOCK, n_cells)
            Z, lineage[s:e], state[s:e] = _latent(day[s:e], rng, n_times)
            block = rng.standard_normal((e - s, n_pcs)) * noise
            block[:, :8] += Z @ rotation
            X[s:e] = block.astype(np.float32)
            names[s:e] = np.array([f"cell{i}" for i in range(s, e)], dtype=object)
        for group in ("obs/_index", "obsm/X_pca"):
            f[group].attrs["encoding-type"] = "string-array" if "index" in group else "array"
            f[group].attrs["encoding-version"] = "0.2.0"
        write_elem(obs, "day", day)
        write_elem(obs, "lineage", pd.Categorical.from_codes(lineage, LINEAGES))
        write_elem(obs, "state", pd.Categorical.from_codes(state, STATES))
        obs.attrs.update(
            {
                "_index": "_index",
                "column-order": np.array(["day", "lineage", "state"], dtype=object),
                "encoding-type": "dataframe",
                "encoding-version": "0.2.0",
            }
        )
        f["obsm"].attrs["encoding-type"], f["obsm"].attrs["encoding-version"] = "dict", "0.1.0"
        write_elem(f, "var", pd.DataFrame(index=pd.Index([], dtype=str)))
        for key in ("uns", "layers", "obsp", "varm", "varp"):
            write_elem(f, key, {})
    return path


def _stage(rows: list, name: str, n: int, fn):
    """Run one stage (:func:`cellflow.bench.scale.measured`), add its row, print it; return
    what it returned."""
    out, seconds, peak, base = measured(fn)
    rows.append(
        dict(stage=name, cells=n, seconds=seconds, peak_gb=peak, above_start_gb=peak - base)
    )
    print(
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True
    )
    return out


def run(
    *,
    cells: int,
    n_pcs: int = 50,
    n_times: int = 10,
    method: str = "ot",
    steps: int = 2000,
    batch_size: int = 256,
    seed: int = 0,
    keep: str | None = None,
    fates: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Write the synthetic atlas of ``cells`` cells (or reuse the one at ``keep``), then, from
    the file: build a model, train ``steps`` steps, write every cell's velocity, and compute the
    fates of the cells of the first time point (each stage's seconds and peak memory)."""
    import tempfile

    import cellflow as cf

    rows = []
    tmpdir = None if keep else tempfile.TemporaryDirectory()
    path = Path(keep) if keep else Path(tmpdir.name) / "atlas.h5ad"
    if not path.is_file():
        _stage(
            rows, "write the course", cells, lambda: write_atlas(path, cells, n_pcs, n_times, seed)
        )
    on_disk = path.stat().st_size / 1e9
    try:
        with cf.read_lazy(path, mode="r+") as adata:
            rep_gb = np.prod(adata.obsm["X_pca"].shape) * 4 / 1e9

            def stage(name, fn):
                return _stage(rows, name, adata.n_obs, fn)

            model = stage(
                "build the model",
                lambda: cf.CellFlow(adata, "day", n_pcs=n_pcs, method=method, seed=seed),
            )
            stage(
                f"train {steps} steps",
                lambda: model.train(steps=steps, batch_size=batch_size, progress=progress),
            )
            rows[-1]["ms_per_step"] = 1e3 * rows[-1]["seconds"] / steps
            stage(
                "velocities of every cell",
                lambda: cf.tl.velocity(adata, model, overwrite=True),
            )
            if fates:
                first = float(model.course.times[0])
                n_first = model.course.sizes()[0]
                stage(
                    "fates of the first time point",
                    lambda: cf.tl.fates(
                        adata,
                        model,
                        "lineage",
                        t_from=first,
                        progress=progress,
                        overwrite=True,
                    ),
                )
                rows[-1]["cells"] = n_first
                share = np.asarray(adata.uns["fates_lineage_params"]["ancestor_share"])
                groups = [str(g) for g in adata.uns["fates_lineage_params"]["groups"]]
                truth = np.array([SHARES[LINEAGES.index(g)] for g in groups])
                rows[-1]["fate_error"] = float(np.abs(share - truth).sum() / 2)
                rows[-1]["note"] = "mean fate " + ", ".join(
                    f"{g} {s:.3f} (truth {t:.1f})" for g, s, t in zip(groups, share, truth)
                )
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    df = pd.DataFrame(rows)
    print(
        f"\n{cells:,} cells × {n_pcs} PCs over {n_times} time points; the representation is "
        f"{rep_gb:.2f} GB (float32), the file {on_disk:.2f} GB"
    )
    print(
        df.drop(columns=["note"], errors="ignore").to_string(
            index=False, float_format=lambda v: f"{v:.4g}"
        )
    )
    if "note" in df:
        print(df["note"].dropna().iloc[-1])
    return df
