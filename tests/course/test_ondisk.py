"""Issue #54: a time course read from its .h5ad on demand (``cf.read_lazy``): the same model as
from the loaded AnnData, results written into the file as anndata reads them, and a clear error
for what it cannot do."""

import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import cellflow as cf
from cellflow.course.ondisk import LazyAnnData


def _write(tmp_path, n=150, name="course.h5ad"):
    rng = np.random.default_rng(0)
    day = np.repeat(["0", "1", "2"], n)
    X = rng.normal(size=(3 * n, 4)) + np.repeat([0.0, 1.0, 2.0], n)[:, None]
    a = ad.AnnData(
        obs=pd.DataFrame(
            {"day": pd.Categorical(day), "side": np.where(X[:, 1] > 1, "R", "L")},
            index=[f"cell{i}" for i in range(3 * n)],
        )
    )
    a.obsm["X_pca"] = X.astype(np.float32)
    path = tmp_path / name
    a.write_h5ad(path)
    return a, path


def _same_weights(m1, m2) -> bool:
    s1, s2 = m1.net.state_dict(), m2.net.state_dict()
    return all(torch.equal(s1[k], s2[k]) for k in s1)


def test_a_lazy_file_trains_the_same_model_and_writes_what_anndata_reads(tmp_path):
    """The model trained from the file read on demand is the loaded AnnData's, bit for bit;
    velocities and fates written into the file (mode "r+") equal those written to the AnnData,
    and anndata reads them back with the cells' names."""
    a, path = _write(tmp_path)
    work = tmp_path / "work.h5ad"
    shutil.copy(path, work)
    m1 = cf.CellFlow(a, "day", seed=0)
    m1.train(steps=60, progress=False)
    with cf.read_lazy(work, mode="r+") as lazy:
        assert isinstance(lazy, LazyAnnData) and lazy.n_obs == a.n_obs
        m2 = cf.CellFlow(lazy, "day", seed=0)
        m2.train(steps=60, progress=False)
        assert _same_weights(m1, m2)
        cf.tl.velocity(a, m1)
        cf.tl.velocity(lazy, m2)
        cf.tl.fates(a, m1, "side", progress=False)
        cf.tl.fates(lazy, m2, "side", progress=False)
        with pytest.raises(ValueError, match="overwrite"):
            cf.tl.velocity(lazy, m2)
    back = ad.read_h5ad(work)
    assert list(back.obs_names) == list(a.obs_names)
    np.testing.assert_array_equal(back.obsm["velocity_pca"], a.obsm["velocity_pca"])
    pd.testing.assert_frame_equal(back.obsm["fates_side"], a.obsm["fates_side"])
    np.testing.assert_array_equal(back.obs["fates_side_entropy"], a.obs["fates_side_entropy"])
    assert back.uns["velocity_params"]["unit"] == a.uns["velocity_params"]["unit"]
    # the model checks the file it is given by content: another course is refused
    other = _write(tmp_path, n=151, name="other.h5ad")[1]
    with cf.read_lazy(other) as lazy, pytest.raises(ValueError, match="not the one"):
        cf.tl.velocity(lazy, m2)


def test_a_large_representation_is_drawn_from_the_file(tmp_path, monkeypatch):
    """Above STORE_COPY_BYTES the cells are not copied: each step reads its rows from the
    on-disk dataset, and the weights are those of the copied store."""
    import cellflow.course.timecourse as tc

    a, path = _write(tmp_path)
    m1 = cf.CellFlow(a, "day", seed=1)
    m1.train(steps=40, progress=False)
    monkeypatch.setattr(tc, "STORE_COPY_BYTES", 16)
    with cf.read_lazy(path) as lazy:
        m2 = cf.CellFlow(lazy, "day", seed=1)
        assert m2.course.store.on_demand
        m2.train(steps=40, progress=False)
        assert _same_weights(m1, m2)
        np.testing.assert_allclose(m2.cells_at("1"), a.obsm["X_pca"][150:300], rtol=1e-6)


def test_what_a_lazy_file_cannot_do_is_refused_by_name(tmp_path):
    a, path = _write(tmp_path)
    with cf.read_lazy(path) as lazy:
        m = cf.CellFlow(lazy, "day", seed=0)
        m.train(steps=5, progress=False)
        with pytest.raises(ValueError, match="mode='r\\+'"):
            cf.tl.velocity(lazy, m)
        with pytest.raises(TypeError, match="copy=False"):
            cf.tl.velocity(lazy, m, copy=True)
        with pytest.raises(KeyError, match="'days' is not a column"):
            cf.CellFlow(lazy, "days")
        with pytest.raises(ValueError, match="adata.X is empty"):
            cf.CellFlow(lazy, "day", use_rep="X")
    with pytest.raises(FileNotFoundError):
        cf.read_lazy(tmp_path / "missing.h5ad")
    (tmp_path / "notes.h5ad").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5"):
        cf.read_lazy(tmp_path / "notes.h5ad")
    with pytest.raises(ValueError, match="mode must be"):
        cf.read_lazy(path, mode="w")


def test_names_are_read_in_chunks(tmp_path, monkeypatch):
    import cellflow.course.ondisk as od
    from cellflow.course.fingerprint import names_digest

    a, path = _write(tmp_path)
    monkeypatch.setattr(od, "_NAME_CHUNK", 7)
    with cf.read_lazy(path) as lazy:
        names = lazy.obs_names
        assert list(names) == list(a.obs_names) and len(names) == a.n_obs
        assert names[3] == "cell3" and list(names[[5, 2, 5]]) == ["cell5", "cell2", "cell5"]
        assert names_digest(names, chunk=11) == names_digest(a.obs_names)


def test_a_chunked_representation_drawn_from_disk_is_warned_about(tmp_path, monkeypatch):
    """Each drawn row of a chunked (compressed) dataset costs a whole chunk: said, with the fix."""
    import h5py

    import cellflow.course.timecourse as tc

    a, path = _write(tmp_path)
    with h5py.File(path, "r+") as f:
        X = f["obsm/X_pca"][:]
        attrs = dict(f["obsm/X_pca"].attrs)
        del f["obsm/X_pca"]
        ds = f["obsm"].create_dataset("X_pca", data=X, chunks=(128, 4), compression="gzip")
        ds.attrs.update(attrs)
    monkeypatch.setattr(tc, "STORE_COPY_BYTES", 16)
    with cf.read_lazy(path) as lazy, pytest.warns(UserWarning, match="chunks of 128 rows"):
        cf.CellFlow(lazy, "day")


@pytest.mark.filterwarnings("ignore:no macrostate", "ignore:no initial state")
def test_every_tool_writes_into_the_file_what_it_writes_into_the_anndata(tmp_path):
    """push, pull, interpolate, couplings, the label-free terminal states and fates give the same
    answers on the file read on demand as on the loaded AnnData, and anndata reads them back."""
    a, path = _write(tmp_path)
    m1 = cf.CellFlow(a, "day", seed=2)
    m1.train(steps=60, progress=False)
    with cf.read_lazy(path, mode="r+") as lazy:
        m2 = cf.CellFlow(lazy, "day", seed=2)
        m2.train(steps=60, progress=False)
        for adata, m in ((a, m1), (lazy, m2)):
            cf.tl.push(adata, m, {"side": "R"}, t_from="0", t_to="2")
            cf.tl.pull(adata, m, {"side": "R"}, t_from="0", t_to="2")
            cf.tl.fates(adata, m, progress=False)
        P1, P2 = cf.tl.couplings(a, m1), cf.tl.couplings(lazy, m2)
        assert P1.keys() == P2.keys()
        for key in P1:
            assert abs(P1[key].X - P2[key].X).max() < 1e-12
        np.testing.assert_array_equal(
            cf.tl.interpolate(lazy, m2, time=1.5).X, cf.tl.interpolate(a, m1, time=1.5).X
        )
    back = ad.read_h5ad(path)
    for key in ("push", "pull", "terminal_states", "initial_states", "fate_entropy"):
        pd.testing.assert_series_equal(back.obs[key], a.obs[key], check_categorical=False)
    pd.testing.assert_frame_equal(back.obsm["fate"], a.obsm["fate"])


def test_a_model_saved_from_the_file_loads_against_it_and_against_the_anndata(tmp_path):
    a, path = _write(tmp_path)
    with cf.read_lazy(path) as lazy:
        m = cf.CellFlow(lazy, "day", seed=0)
        m.train(steps=20, progress=False)
        m.save(tmp_path / "model")
        again = cf.CellFlow.load(tmp_path / "model", lazy)
        assert _same_weights(m, again)
    assert _same_weights(m, cf.CellFlow.load(tmp_path / "model", a))
    b = a.copy()
    b.obsm["X_pca"][0, 0] += 1.0
    with pytest.raises(ValueError, match="not the one"):
        cf.CellFlow.load(tmp_path / "model", b)
