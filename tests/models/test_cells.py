"""Training on ``adata.X`` as it is (dense, sparse, on disk): rows are read per minibatch, X is
never densified whole, and results equal those of the same data held densely in ``obsm``."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import cellflow as cf
from cellflow.course import store as _cells
from cellflow.course.store import RowSource


def counts_course(n=120, genes=12, times=(0, 1, 2), seed=0):
    """Sparse counts whose first genes rise with time; obsm["dense"] holds the same matrix."""
    rng = np.random.default_rng(seed)
    t = np.repeat(times, n).astype(float)
    rate = np.full((len(t), genes), 0.3)
    rate[:, :3] += 1.5 * t[:, None]
    X = rng.poisson(rate).astype(np.float32)
    X[X < 1] = 0
    a = ad.AnnData(
        sp.csr_matrix(X),
        obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]),
    )
    a.obsm["dense"] = X.astype(np.float64)
    return a


class CountingMatrix:
    """Wraps a matrix and records the largest number of rows any single read returned."""

    def __init__(self, M):
        self.M, self.shape, self.max_rows = M, M.shape, 0

    def __getitem__(self, key):
        out = self.M[key]
        self.max_rows = max(self.max_rows, out.shape[0])
        return out


@pytest.fixture(params=["csr", "csc", "dense", "backed-sparse", "backed-dense"])
def x_form(request, tmp_path):
    a = counts_course()
    kind = request.param
    if kind == "csc":
        a.X = sp.csc_matrix(a.X)
    elif kind == "dense":
        a.X = a.X.toarray()
    elif kind.startswith("backed"):
        if kind == "backed-dense":
            a.X = a.X.toarray()
        a.write_h5ad(tmp_path / "x.h5ad")
        a = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
        assert a.isbacked
    return a


def test_row_source_reads_match_the_dense_matrix(x_form):
    dense = np.asarray(x_form.obsm["dense"])
    src = RowSource.from_adata(x_form, "X", None)
    idx = np.array(
        [7, 3, 3, 200, 0, 7]
    )  # unsorted, repeated: on-disk reads need sorted unique rows
    np.testing.assert_array_equal(src.rows(idx), dense[idx])
    mean, var = src.moments()
    np.testing.assert_allclose(mean, dense.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, dense.var(0), rtol=1e-9)
    got = np.concatenate([b for _, b in src.blocks(np.array([5, 6, 7, 100, 300]), block_rows=2)])
    np.testing.assert_array_equal(got, dense[[5, 6, 7, 100, 300]])
    assert RowSource.from_adata(x_form, "X", 4).rows(idx).shape == (6, 4)


def test_training_on_x_equals_training_on_the_same_dense_matrix(x_form):
    kw = dict(method="ot", whiten=True, seed=3)
    on_x = cf.CellFlow(x_form, "day", use_rep="X", **kw)
    on_obsm = cf.CellFlow(x_form, "day", use_rep="dense", **kw)
    np.testing.assert_allclose(on_x.scaler.scale, on_obsm.scaler.scale, rtol=1e-9)
    for plan in ("minibatch", "whole"):  # auto: minibatch on X read row by row, whole on obsm
        for m in (on_x, on_obsm):
            m.train(steps=30, batch_size=32, progress=False, ot_plan=plan)
        for p, q in zip(on_x.net.parameters(), on_obsm.net.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    on_x.train(steps=2, progress=False)
    assert on_x.ot_plan == "minibatch"
    np.testing.assert_allclose(on_x.cells_at(1.0), x_form.obsm["dense"][120:240], rtol=1e-6)


def test_x_is_never_read_whole(monkeypatch):
    a = counts_course(n=400)
    monkeypatch.setattr(_cells, "_BLOCK_BYTES", 8 * 12 * 50)  # moments in blocks of 50 rows
    model = cf.CellFlow(a, "day", use_rep="X", seed=0)
    counter = CountingMatrix(a.X)
    model.course.store.source._get = lambda: counter
    model.train(steps=20, batch_size=64, progress=False)
    assert 0 < counter.max_rows <= 64  # each read: the distinct rows of one minibatch
    src = RowSource(CountingMatrix(a.X))
    src.moments()
    assert src.M.max_rows == 50


def test_tl_functions_on_a_backed_sparse_x(tmp_path):
    a = counts_course()
    a.write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    model = cf.CellFlow(backed, "day", use_rep="X", n_pcs=6, seed=0)
    model.train(steps=200, batch_size=64, progress=False)
    assert model.n_pcs == 6
    # velocity: gene velocities in layers, from X read in blocks; genes past n_pcs are 0
    cf.tl.velocity(backed, model)  # in place: a backed AnnData keeps new layers in memory
    out = backed
    V = out.layers["velocity"]
    assert V.shape == a.shape and not np.any(V[:, 6:])
    np.testing.assert_allclose(
        V[:, :6], model.velocity(a.obsm["dense"][:, :6], model.cell_times()), rtol=1e-5, atol=1e-5
    )
    assert out.var["velocity_genes"].tolist() == [True] * 6 + [False] * 6
    assert V[:, :3].mean() > 0.5 and abs(V[:, 3:6].mean()) < 0.3  # the rising genes rise
    assert not any(k.startswith("velocity") for k in out.obsm)
    out.obsm["X_umap"] = a.obsm["dense"][:, :2]
    cf.tl.velocity_embedding(out, basis="umap", n_neighbors=10)
    assert out.obsm["velocity_umap"].shape == (a.n_obs, 2)
    cf.pl.trajectories(out, model, n_cells=20, n_points=5, basis="umap", show=False)
    cf.pl.trajectories(out, model, n_cells=20, n_points=5, show=False)
    out.to_memory().write_h5ad(tmp_path / "with_velocity.h5ad")
    # interpolation returns expression in X
    pred = cf.tl.interpolate(backed, model, time=1.5, n_cells=50)
    assert (
        pred.X.shape == (50, 6) and list(pred.var_names) == list(a.var_names[:6]) and not pred.obsm
    )
    # persistence against the backed file, and the mismatch message
    model.save(tmp_path / "m")
    loaded = cf.CellFlow.load(tmp_path / "m", backed)
    np.testing.assert_allclose(
        loaded.push(loaded.cells_at(0.0), 0, 2), model.push(model.cells_at(0.0), 0, 2), rtol=1e-5
    )
    with pytest.raises(ValueError, match="shape of X"):
        cf.CellFlow.load(tmp_path / "m", a[:, :10].copy())


def test_velocity_projection_reads_x_a_chunk_at_a_time(monkeypatch):
    from cellflow.tl import _velocity

    a = counts_course()
    dense = a.obsm["dense"]
    rng = np.random.default_rng(0)
    V, E = rng.normal(size=dense.shape), rng.normal(size=(a.n_obs, 2))
    # neighbours computed on the sparse X (never densified) are as near as those on the dense copy
    idx = _velocity._neighbor_indices(a, dense, 10)
    idx_x = _velocity._neighbor_indices(a, RowSource(a.X), 10)

    def dist(ix):
        return np.sort(np.linalg.norm(dense[ix] - dense[:, None, :], axis=2), axis=1)

    np.testing.assert_allclose(dist(idx_x), dist(idx), atol=1e-9)
    monkeypatch.setattr(
        _velocity, "_CHUNK_BYTES", 8 * 12 * 11 * 7
    )  # 7 cells (and their neighbours) per chunk
    src = RowSource(CountingMatrix(a.X))
    np.testing.assert_allclose(
        _velocity._project(src, V, E, idx, 0.1),
        _velocity._project(dense, V, E, idx, 0.1),
        rtol=1e-5,
        atol=1e-6,
    )
    assert 0 < src.M.max_rows <= 7 * 11


def test_x_errors_name_the_fix():
    a = counts_course()
    empty = ad.AnnData(obs=a.obs)
    with pytest.raises(ValueError, match="adata.X is empty"):
        cf.CellFlow(empty, "day", use_rep="X")
    with pytest.raises(ValueError, match="n_pcs=20 but adata.X has 12 columns"):
        cf.CellFlow(a, "day", use_rep="X", n_pcs=20)
    bad = a.copy()
    bad.X = bad.X.toarray()
    bad.X[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"adata.X has NaN or inf in 1 cells"):
        cf.CellFlow(bad, "day", use_rep="X")


def test_cli_fit_on_backed_x(tmp_path):
    from cellflow.cli import main

    a = counts_course()
    del a.obsm["dense"]
    a.write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.h5ad"
    assert (
        main(
            [
                "fit",
                str(tmp_path / "in.h5ad"),
                "--time-key",
                "day",
                "--use-rep",
                "X",
                "--backed",
                "--out",
                str(out),
                "--steps",
                "30",
                "--batch-size",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    res = ad.read_h5ad(out)
    assert res.layers["velocity"].shape == a.shape and res.uns["velocity_params"]["use_rep"] == "X"
    assert res.uns["cellflow"]["use_rep"] == "X"
    np.testing.assert_array_equal(
        res.X.toarray(), a.X.toarray()
    )  # the written file keeps X as it was
