"""The time course read once from an AnnData: its clock, its cells, the check that an AnnData is
the one it was read from, and its block of a saved model's config."""

import anndata as ad
import numpy as np
import pytest
import torch

import cellflow as cf
from cellflow.course import TimeCourse


def _adata(seed=0):
    rng = np.random.default_rng(seed)
    a = ad.AnnData(obs={"day": np.repeat([2, 3, 4, 7], 25)})
    a.obs_names = [f"c{i}" for i in range(100)]
    a.obsm["X_pca"] = rng.normal(size=(100, 3))
    return a


def test_the_clock_of_real_time_is_the_mean_interval():
    """Days 2, 3, 4, 7: the mean interval is 5/3 days, so day 7 sits at 3 and day 4 at 1.2."""
    c = TimeCourse(_adata(), "day", time_scale="real")
    np.testing.assert_allclose(c.taus(), [0.0, 0.6, 1.2, 3.0])
    assert c.unit() == pytest.approx(5 / 3)
    for s in (2.0, 3.5, 5.0, 7.0):
        assert c.measured_time(c.model_time(s)) == pytest.approx(s)
    assert TimeCourse(_adata(), "day").taus().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_held_out_time_point_joins_its_neighbours():
    c = TimeCourse(_adata(), "day")
    assert c.pairs() == [(0, 1), (1, 2), (2, 3)]
    assert c.pairs(4.0) == [(0, 1), (1, 3)]
    assert c.knots(4.0) == [0.0, 1.0, 3.0]


def test_cells_come_back_in_the_representations_units():
    a = _adata()
    c = TimeCourse(a, "day", whiten=True)
    np.testing.assert_allclose(c.cells_at("3"), a.obsm["X_pca"][25:50], atol=1e-6)
    with pytest.raises(ValueError, match=r"time=5 is not a measured time; choose from \[2.0"):
        c.cells_at(5)


def test_another_anndata_is_refused_with_what_differs():
    a = _adata()
    c = TimeCourse(a, "day")
    c.check(a.copy())  # the same data: no error
    b = a.copy()
    b.obsm["X_pca"][0, 0] += 1e-9
    with pytest.raises(ValueError, match="the values of obsm"):
        c.check(b)
    b = a.copy()
    b.obs["day"] = np.roll(b.obs["day"].to_numpy(), 1)
    with pytest.raises(ValueError, match="given to other cells"):
        c.check(b)
    with pytest.raises(KeyError, match="adata.obsm has no 'X_pca'"):
        c.check(ad.AnnData(obs=a.obs.copy()))


def test_a_model_reads_its_data_through_one_course_that_its_save_keeps(tmp_path):
    """The model's times, cells and clock are its course's; saved and loaded, the course's block
    of the config comes back the same."""
    a = _adata()
    m = cf.CellFlow(a, "day", time_scale="real", seed=0)
    assert m.times is m.course.times and m.n_pcs == m.course.n_pcs == 3
    assert m.model_time(4.0) == m.course.model_time(4.0)
    m.train(steps=5, batch_size=16, progress=False)
    m.save(tmp_path / "m")
    back = cf.CellFlow.load(tmp_path / "m", a)
    assert back.course.to_dict() == m.course.to_dict()
    with pytest.raises(AttributeError):
        m.times = np.array([0.0])  # read-only: the course is the one place times live


def test_the_representation_is_read_in_blocks_as_if_whole(monkeypatch):
    """Read a few rows at a time (blocks of 7 cells), the course holds the same standardised
    float32 cells, the same moments and the same fingerprint as read in one block; cells of
    interleaved time points land in their own time point, in obs order."""
    import cellflow.course.store as store

    rng = np.random.default_rng(3)
    a = ad.AnnData(obs={"day": rng.permutation(np.repeat([0, 1, 2], 30))})
    a.obs_names = [f"c{i}" for i in range(90)]
    a.obsm["X_pca"] = (rng.normal(size=(90, 4)) * [1, 3, 0.1, 2] + [500, 0, -2, 7]).astype(
        np.float32
    )
    whole = TimeCourse(a, "day", whiten=True)
    monkeypatch.setattr(store, "_BLOCK_BYTES", 8 * 4 * 7)
    blocks = TimeCourse(a, "day", whiten=True)
    X = a.obsm["X_pca"].astype(np.float64)
    np.testing.assert_allclose(blocks.scaler.mean, X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(blocks.scaler.scale, X.std(0), rtol=1e-10)
    assert blocks.fingerprint == whole.fingerprint
    for i, day in enumerate([0, 1, 2]):
        got = blocks.store.draw(i, torch.arange(30))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(
            got.numpy(), whole.store.draw(i, torch.arange(30)).numpy(), atol=1e-6
        )
        np.testing.assert_allclose(
            blocks.cells_at(day), X[a.obs["day"].to_numpy() == day], atol=1e-4
        )
    assert not blocks.store.on_demand  # an obsm representation is held in memory


def test_digests_read_in_pieces_are_those_of_the_whole():
    """The names and the representation are hashed a piece at a time: the digests are those of
    the whole joined names and of the whole float64 array, so folders saved before still load."""
    import hashlib

    import cellflow.course.store as store
    from cellflow.course.fingerprint import names_digest, representation_digest

    names = [f"cell{i}" for i in range(2345)]
    whole = hashlib.sha1("\n".join(names).encode()).hexdigest()
    assert names_digest(names, chunk=100) == names_digest(names) == whole
    a = _adata()
    a.obsm["X_pca"] = a.obsm["X_pca"].astype(np.float32)
    want = hashlib.sha1(a.obsm["X_pca"][:, :2].astype(np.float64).tobytes()).hexdigest()
    store._BLOCK_BYTES, before = 8 * 2 * 9, store._BLOCK_BYTES
    try:
        assert representation_digest(a, "X_pca", 2) == want
    finally:
        store._BLOCK_BYTES = before


def test_a_large_representation_is_drawn_from_the_anndata_with_the_same_result(monkeypatch):
    """Above STORE_COPY_BYTES the model draws from the AnnData's own array instead of a copy:
    the same seed trains the same weights, bit for bit, the cells read back are the measured
    ones, and an in-place change of the array is refused rather than read."""
    import cellflow.course.timecourse as tc

    a = _adata()
    a.obsm["X_pca"] = a.obsm["X_pca"].astype(np.float32)
    copied = cf.CellFlow(a, "day", seed=0)
    copied.train(steps=20, batch_size=16, progress=False)
    monkeypatch.setattr(tc, "STORE_COPY_BYTES", 0)
    drawn = cf.CellFlow(a, "day", seed=0)
    assert drawn.course.store.on_demand and not copied.course.store.on_demand
    drawn.train(steps=20, batch_size=16, progress=False)
    assert drawn.ot_plan == copied.ot_plan == "whole"  # whole plans still where they fit
    for p, q in zip(copied.net.state_dict().values(), drawn.net.state_dict().values()):
        assert torch.equal(p, q)
    # read from the array they are the values themselves; from the copy, through float32
    np.testing.assert_array_equal(drawn.cells_at(3), a.obsm["X_pca"][25:50])
    np.testing.assert_allclose(copied.cells_at(3), a.obsm["X_pca"][25:50], atol=1e-6)
    a.obsm["X_pca"][0, 0] += 1.0  # in place: the drawn model would read the new value
    with pytest.raises(ValueError, match=r"adata.obsm\['X_pca'\] has changed"):
        drawn.cells_at(2)
    copied.cells_at(2)  # a copy is not affected
