"""cf.tl / cf.pl / cf.datasets on the simulated time course: the scanpy pipeline end to end,
closed forms (decoding, kNN assignment, velocity projection), AnnData hygiene, scVelo and
CellRank."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellflow as cf
from cellflow.models.landing import knn_assignment


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Simulated course after scanpy preprocessing, and an OT-CFM flow on its first 5 PCs."""
    sc = pytest.importorskip("scanpy")
    adata = cf.datasets.simulated_differentiation(n_cells_per_time=120, random_state=1)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=40)
    sc.pp.pca(adata, n_comps=10)
    sc.pp.neighbors(adata, n_pcs=10, n_neighbors=15)
    adata.obsm["X_umap"] = adata.obsm["X_pca"][
        :, :2
    ].copy()  # a stand-in embedding (no UMAP compile in tests)
    model = cf.CellFlow(adata, "day", n_pcs=5, seed=0)
    model.train(steps=1500, progress=False)
    return adata, model


def fresh(fitted):
    adata, model = fitted
    return adata.copy(), model


# ----------------------------------------------------------------------------- data sets
def test_arch_follows_its_closed_form(tmp_path):
    a = cf.datasets.arch_time_course(2000, noise=0.1, seed=3)
    t, s, X = a.obs["time"].to_numpy(), a.obs["arc_position"].to_numpy(), a.obsm["X_arch"]
    assert X.shape == (6000, 2) and np.bincount(t).tolist() == [2000, 2000, 2000]
    r, angle = np.hypot(X[:, 0], X[:, 1]), np.arctan2(X[:, 1], X[:, 0])
    np.testing.assert_allclose(
        angle, np.pi * (1 - s), atol=1e-12
    )  # on the upper half circle, at angle pi(1 - s)
    assert abs(r.mean() - 1) < 4 * 0.1 / np.sqrt(6000) and abs(r.std() - 0.1) < 0.005
    # the ends are half-normal with scale 1/(2 pi): mean sqrt(2/pi)/(2 pi) = 0.127
    sd = 1 / (2 * np.pi)
    se = sd * np.sqrt(1 - 2 / np.pi) / np.sqrt(2000)
    assert abs(s[t == 0].mean() - sd * np.sqrt(2 / np.pi)) < 4 * se
    assert abs((1 - s[t == 2]).mean() - sd * np.sqrt(2 / np.pi)) < 4 * se
    # the middle: midpoints of the sorted (exact OT) pairs of the two ends' positions
    np.testing.assert_allclose(np.sort(s[t == 1]), (np.sort(s[t == 0]) + np.sort(s[t == 2])) / 2)
    b = cf.datasets.arch_time_course(2000, noise=0.1, seed=3)
    assert np.array_equal(b.obsm["X_arch"], X)
    assert b.uns["arch"] == {"n_cells": 2000, "noise": 0.1, "n_dims": 2, "seed": 3}
    with pytest.raises(ValueError, match="n_cells must be at least 1"):
        cf.datasets.arch_time_course(0)
    with pytest.raises(ValueError, match="noise must be non-negative"):
        cf.datasets.arch_time_course(10, noise=-1)
    # in more dimensions: the same arch and N(0, noise^2) coordinates, turned by one orthogonal Q
    # per width
    c = cf.datasets.arch_time_course(2000, noise=0.1, n_dims=6, seed=3)
    Q = c.uns["arch"]["rotation"]
    np.testing.assert_allclose(Q @ Q.T, np.eye(6), atol=1e-12)
    np.testing.assert_array_equal(
        Q, cf.datasets.arch_time_course(5, n_dims=6, seed=9).uns["arch"]["rotation"]
    )
    Y = c.obsm["X_arch"] @ Q
    np.testing.assert_allclose(Y[:, :2], X, atol=1e-12)
    assert np.abs(Y[:, 2:].mean(0)).max() < 4 * 0.1 / np.sqrt(6000)
    assert np.abs(Y[:, 2:].std(0) - 0.1).max() < 0.005
    assert c.uns["arch"]["n_dims"] == 6 and "rotation" not in a.uns["arch"]
    c.write_h5ad(tmp_path / "arch.h5ad")  # uns stays h5ad-safe
    with pytest.raises(ValueError, match="n_dims must be an integer of at least 2"):
        cf.datasets.arch_time_course(10, n_dims=1)


def test_simulation_has_branches_times_and_consistent_true_velocity():
    a = cf.datasets.simulated_differentiation(n_cells_per_time=100, random_state=0)
    assert a.n_vars >= 20 and a.obs["day"].nunique() >= 5
    last = a.obs[a.obs["day"] == a.obs["day"].max()]["branch"].value_counts()
    assert last["A"] > 20 and last["B"] > 20  # the bifurcation splits the population
    np.testing.assert_array_equal(a.X, a.layers["counts"])
    # the true latent drift matches the finite difference of the latent day means
    z, d = a.obsm["X_latent"], a.obs["day"].to_numpy()
    step = z[d == 1, 0].mean() - z[d == 0, 0].mean()
    assert abs(step - a.uns["simulation"]["rate"]) < 0.1
    with pytest.raises(ValueError, match="at least 20"):
        cf.datasets.simulated_differentiation(n_genes=10)


def test_simulation_records_each_cells_true_fate_and_commitment():
    """Futures from a separate stream: cells and counts do not change; at the last day the fate is
    the cell's own branch; earlier, commitments agree with the fate probabilities on average."""
    a = cf.datasets.simulated_differentiation(n_cells_per_time=200, random_state=2)
    b = cf.datasets.simulated_differentiation(n_cells_per_time=200, random_state=2, n_futures=0)
    np.testing.assert_array_equal(a.X, b.X)
    assert "true_fate_A" not in b.obs and "commits_to" not in b.obs
    last = a.obs["day"] == a.obs["day"].max()
    np.testing.assert_array_equal(
        a.obs["true_fate_A"][last], (a.obsm["X_latent"][last.to_numpy(), 1] > 0).astype(float)
    )
    np.testing.assert_array_equal(a.obs["commits_to"][last], a.obs["branch"][last].astype(str))
    early = (a.obs["day"] <= 2).to_numpy()
    p, hit = a.obs["true_fate_A"][early].to_numpy(), (a.obs["commits_to"][early] == "A").to_numpy()
    assert 0.3 < p[a.obs["day"][early] == 0].mean() < 0.7  # undecided at the start
    for lo, hi in [(0.0, 0.2), (0.2, 0.8), (0.8, 1.01)]:  # the truth is calibrated, bin by bin
        sel = (p >= lo) & (p < hi)
        assert sel.sum() > 50 and abs(hit[sel].mean() - p[sel].mean()) < 0.1
    with pytest.raises(ValueError, match="n_futures"):
        cf.datasets.simulated_differentiation(n_cells_per_time=10, n_futures=-1)


def test_multifate_simulation_has_k_symmetric_fates_graded_commitment_and_true_probabilities():
    """Three fates by symmetry: undecided progenitors split about evenly; commitment grows day by
    day; at the last day each cell's truth is its own fate; earlier, drawn commitments agree
    with the true probabilities bin by bin."""
    a = cf.datasets.simulated_multifate(n_cells_per_time=200, n_futures=64, random_state=1)
    T, day = a.obsm["true_fates"].to_numpy(), a.obs["day"].to_numpy()
    assert list(a.obsm["true_fates"].columns) == ["F1", "F2", "F3"]
    np.testing.assert_allclose(T.sum(1), 1.0, atol=1e-12)
    assert np.abs(T[day == 0].mean(0) - 1 / 3).max() < 0.08  # the fates are symmetric
    undecided = [(T[day == d].max(1) < 0.8).mean() for d in sorted(set(day))]
    assert undecided[0] > 0.9 and undecided[-1] == 0.0
    assert all(x >= y - 0.02 for x, y in zip(undecided, undecided[1:]))  # graded commitment
    assert 0.2 < undecided[2] < 0.8
    last = day == day.max()
    own = a.obs["commits_to"].cat.codes.to_numpy()
    np.testing.assert_array_equal(T[last].argmax(1), own[last])
    assert set(a.obs["fate"][last]) <= {"F1", "F2", "F3", "progenitor"}
    assert (a.obs["fate"][last] != "progenitor").mean() > 0.9
    early = (day >= 1) & (day <= 3)
    for j in range(3):  # calibration of the truth against one drawn future, fate by fate
        p, hit = T[early, j], own[early] == j
        for lo, hi in [(0.0, 0.2), (0.2, 0.8), (0.8, 1.01)]:
            sel = (p >= lo) & (p < hi)
            assert sel.sum() > 30 and abs(hit[sel].mean() - p[sel].mean()) < 0.12, (j, lo)
    programmes = set(a.var["programme"])
    assert {"fate_F1", "fate_F2", "fate_F3", "cell_cycle", "stress"} <= programmes
    b = cf.datasets.simulated_multifate(n_cells_per_time=20, n_fates=4, n_genes=40, n_futures=4)
    assert b.obsm["true_fates"].shape == (120, 4)
    with pytest.raises(ValueError, match="n_fates"):
        cf.datasets.simulated_multifate(n_cells_per_time=10, n_fates=1)
    with pytest.raises(ValueError, match="n_genes"):
        cf.datasets.simulated_multifate(n_cells_per_time=10, n_genes=20)
    with pytest.raises(ValueError, match="n_futures"):
        cf.datasets.simulated_multifate(n_cells_per_time=10, n_futures=0)


def test_true_velocity_is_the_derivative_of_expected_log_expression():
    """Finite differences of y = log1p(1e4 softmax(b + W φ(z))) along the drift give
    layers['velocity_true']."""
    from cellflow.datasets._simulated import expected_log_expression

    a = cf.datasets.simulated_differentiation(n_cells_per_time=20, random_state=3)
    z, f = a.obsm["X_latent"].astype(np.float64), a.obsm["velocity_latent"].astype(np.float64)
    W, b = a.uns["simulation"]["loadings"], a.uns["simulation"]["base"]
    h = 1e-5
    fd = (expected_log_expression(z + h * f, W, b) - expected_log_expression(z - h * f, W, b)) / (
        2 * h
    )
    np.testing.assert_allclose(a.layers["velocity_true"], fd, rtol=1e-3, atol=1e-4)


def test_loader_reads_data_dir_and_env_and_explains_absence(tmp_path, monkeypatch):
    a = cf.datasets.simulated_differentiation(n_cells_per_time=10)
    a.write_h5ad(tmp_path / "eb.h5ad")
    b = cf.datasets.load("eb", data_dir=tmp_path)
    assert b.shape == a.shape and b.uns["cellflow_dataset"]["time_key"] == "time_point"
    monkeypatch.setenv(cf.datasets.DATA_DIR_ENV, str(tmp_path))
    assert cf.datasets.available()["eb"] and not cf.datasets.available()["cite"]
    with pytest.raises(FileNotFoundError, match="CELLFLOW_DATA_DIR"):
        cf.datasets.load("cite")
    with pytest.raises(FileNotFoundError, match="downloading"):
        cf.datasets.load("cite", url=(tmp_path / "nope.h5ad").as_uri())
    with pytest.raises(KeyError, match="unknown data set"):
        cf.datasets.load("nope")


# ----------------------------------------------------------------------------- closed forms
def test_knn_assignment_matches_gaussian_weights():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(7, 3))
    P = knn_assignment(Y, X, k=5).toarray()
    for i in range(len(Y)):
        d = np.linalg.norm(X - Y[i], axis=1)
        nn = np.argsort(d)[:5]
        w = np.exp(-0.5 * (d[nn] / (d[nn][-1] / 2)) ** 2)
        expected = np.zeros(len(X))
        expected[nn] = w / w.sum()
        np.testing.assert_allclose(P[i], expected, atol=1e-12)


def test_velocity_embedding_on_a_line_points_along_the_flow():
    import anndata as ad

    from cellflow.tl._velocity import velocity_embedding

    x = np.linspace(0, 10, 60)
    a = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(60)]))
    a.obsm["X_pca"] = np.stack([x, np.zeros(60)], 1)
    a.obsm["X_umap"] = np.stack([2 * x, np.zeros(60)], 1)
    a.obsm["velocity_pca"] = np.tile([1.0, 0.0], (60, 1))
    a.uns["velocity_params"] = {"use_rep": "X_pca", "n_pcs": 2, "embeddings": []}
    velocity_embedding(a, basis="umap", n_neighbors=4)
    inner = a.obsm["velocity_umap"][5:-5]
    # interior cells: 2 neighbours ahead (cos +1), 2 behind (cos -1); the forward pair holds
    # p = e^{1/T} / (e^{1/T} + e^{-1/T}) of the weight, so the projection is p·(+1) + (1-p)·(-1) - 0
    # = tanh(1/T)
    T = 0.5
    velocity_embedding(a, basis="umap", n_neighbors=4, temperature=T, overwrite=True)
    inner = a.obsm["velocity_umap"][5:-5]
    np.testing.assert_allclose(inner[:, 0], np.tanh(1 / T), atol=1e-6)
    np.testing.assert_allclose(inner[:, 1], 0, atol=1e-9)
    assert list(a.uns["velocity_params"]["embeddings"]) == ["umap"]


def test_interpolate_decodes_with_pcs_and_mean(fitted):
    adata, model = fresh(fitted)
    pred = cf.tl.interpolate(adata, model, time=2.5, n_cells=50)
    assert (
        pred.n_obs == 50
        and (pred.obs["day"] == 2.5).all()
        and (pred.obs["cellflow_from_time"] == 2).all()
    )
    Z = pred.obsm["X_pca"]
    expected = Z @ adata.varm["PCs"][:, :5].T + np.asarray(adata.X.mean(0)).ravel()
    np.testing.assert_allclose(pred.X, expected, rtol=1e-5, atol=1e-5)
    assert list(pred.var_names) == list(adata.var_names)
    new = cf.tl.interpolate(adata, model, time=3, mode="sample", n_cells=80, seed=1)
    assert new.n_obs == 80
    # predicted cells at an observed day are close to that day's cells
    w_pred = cf.metrics.wasserstein(new.obsm["X_pca"], model.cells_at(3.0), p=1)
    w_prev = cf.metrics.wasserstein(model.cells_at(2.0), model.cells_at(3.0), p=1)
    assert w_pred < 0.6 * w_prev


def test_interpolated_cells_can_be_ingested(fitted):
    sc = pytest.importorskip("scanpy")
    adata, model = fresh(fitted)
    pred = cf.tl.interpolate(adata, model, time=4, n_cells=60)
    del adata.obsm["X_umap"]  # the fixture's stand-in is no real UMAP; map onto the PCA
    sc.tl.ingest(pred, adata, obs="branch", embedding_method="pca")
    assert pred.obs["branch"].isin(["A", "B"]).mean() > 0.8


# ----------------------------------------------------------------------------- velocity
def test_velocity_keys_shapes_and_accuracy(fitted, tmp_path):
    adata, model = fresh(fitted)
    before = adata.copy()
    cf.tl.velocity(adata, model)
    V = adata.obsm["velocity_pca"]
    assert V.shape == adata.obsm["X_pca"].shape and np.all(V[:, 5:] == 0)
    assert adata.layers["velocity"].shape == adata.shape
    np.testing.assert_allclose(
        adata.layers["velocity"], V[:, :5] @ adata.varm["PCs"][:, :5].T, rtol=1e-4, atol=1e-5
    )
    assert adata.var["velocity_genes"].sum() == 40  # the HVGs carry the PCA loadings
    # documented keys only
    assert set(adata.obsm) - set(before.obsm) == {"velocity_pca"}
    assert set(adata.layers) - set(before.layers) == {"velocity"}
    assert set(adata.uns) - set(before.uns) == {"velocity_params"}
    adata.write_h5ad(tmp_path / "v.h5ad")
    # learned vs true velocity in the same 5 PCs
    cos = cf.metrics.velocity_cosine(V[:, :5], cf.datasets.true_velocity_pca(adata)[:, :5])
    assert np.median(cos) > 0.8
    cf.tl.velocity_embedding(adata, basis="umap")
    assert adata.obsm["velocity_umap"].shape == (adata.n_obs, 2)
    adata.write_h5ad(tmp_path / "v2.h5ad")
    with pytest.raises(ValueError, match="already exist.*overwrite=True"):
        cf.tl.velocity(adata, model)
    with pytest.raises(
        ValueError, match="already exists?; pass overwrite=True to replace (it|them)"
    ):
        cf.tl.velocity_embedding(adata, basis="umap")
    cf.tl.velocity(adata, model, overwrite=True)


def test_copy_leaves_input_untouched(fitted):
    adata, model = fresh(fitted)
    out = cf.tl.velocity(adata, model, copy=True)
    assert "velocity_pca" in out.obsm and "velocity_pca" not in adata.obsm
    out2 = cf.tl.push(adata, model, {"day": 0}, t_from=0, t_to=1, copy=True)
    assert "push" in out2.obs and "push" not in adata.obs


def test_tools_refuse_another_anndata(fitted):
    adata, model = fresh(fitted)
    other = adata[:-5].copy()
    with pytest.raises(ValueError, match="not the one the model was trained on"):
        cf.tl.velocity(other, model)
    with pytest.raises(TypeError, match="cellflow.CellFlow"):
        cf.tl.velocity(adata, object())
    with pytest.raises(KeyError, match="run cf.tl.velocity"):
        cf.tl.velocity_embedding(adata)


# ----------------------------------------------------------------------------- fates and couplings
def test_push_pull_and_couplings(fitted, tmp_path):
    adata, model = fresh(fitted)
    cf.tl.push(adata, model, {"day": 2, "branch": "A"}, t_from=2, t_to=5)
    at5 = (adata.obs["day"] == 5).to_numpy()
    assert adata.obs["push"][at5].sum() == pytest.approx(1.0)
    assert adata.obs["push"][~at5].isna().all()
    a_to_a = adata.obs.loc[at5 & (adata.obs["branch"] == "A"), "push"].sum()
    cf.tl.push(adata, model, {"day": 2, "branch": "B"}, t_from=2, t_to=5, key_added="push_B")
    b_to_a = adata.obs.loc[at5 & (adata.obs["branch"] == "A"), "push_B"].sum()
    # day-2 branch labels are a noisy proxy of commitment, but the two groups must part ways
    assert a_to_a > 0.5 and a_to_a > b_to_a + 0.3
    cf.tl.pull(adata, model, {"branch": "A"}, t_from=2, t_to=5)  # default: per-cell probabilities
    p = adata.obs["pull"]
    cf.tl.pull(
        adata, model, {"branch": "A"}, t_from=2, t_to=5, normalize=True, key_added="pull_dist"
    )
    at = adata.obs["day"] == 2
    assert adata.obs.loc[at, "pull_dist"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(adata.obs.loc[at, "pull_dist"], p[at] / p[at].sum())
    at2 = (adata.obs["day"] == 2).to_numpy()
    assert p[at2].between(0, 1).all() and p[~at2].isna().all()
    assert (
        p[at2 & (adata.obs["branch"] == "A")].mean()
        > p[at2 & (adata.obs["branch"] == "B")].mean() + 0.5
    )
    # fate probabilities over both branches: rows sum to 1, agree with pull, and separate the
    # branches
    cf.tl.fates(adata, model, "branch", t_from=2, t_to=5)
    F = adata.obsm["fates_branch"]
    assert sorted(F.columns) == sorted(adata.obs.loc[at5, "branch"].astype(str).unique())
    np.testing.assert_allclose(F[at2].sum(1), 1.0)
    assert F[~at2].isna().all().all()
    np.testing.assert_allclose(
        F.loc[at2, "A"], p[at2], atol=1e-9
    )  # pull(normalize=False) is one column
    assert F.loc[at2 & (adata.obs["branch"] == "A"), "A"].mean() > 0.75
    cf.tl.fates(adata, model, "branch", t_from=2, t_to=5, groups=["B"], key_added="fate_B")
    assert list(adata.obsm["fate_B"].columns) == ["B", "other"]
    with pytest.raises(ValueError, match="already"):
        cf.tl.fates(adata, model, "branch", t_from=2, t_to=5)
    with pytest.raises(ValueError, match="have no cell at t_to"):
        cf.tl.fates(adata, model, "branch", t_from=2, t_to=5, groups=["Z"], key_added="z")
    adata.write_h5ad(tmp_path / "f.h5ad")
    assert ad.read_h5ad(tmp_path / "f.h5ad").obsm["fates_branch"].shape == F.shape
    with pytest.raises(ValueError, match="not a measured time"):
        cf.tl.push(adata, model, {"day": 2}, t_from=2.5, t_to=5, key_added="x")
    with pytest.raises(ValueError, match="no source cell"):
        cf.tl.push(adata, model, {"day": 3}, t_from=2, t_to=5, key_added="x")
    cps = cf.tl.couplings(adata, model)
    assert list(cps) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    c = cps[(2, 3)]
    assert c.shape == ((adata.obs["day"] == 2).sum(), (adata.obs["day"] == 3).sum())
    np.testing.assert_allclose(np.asarray(c.X.sum(1)).ravel(), 1.0)
    assert list(c.obs_names) == list(adata.obs_names[adata.obs["day"] == 2])


def test_gene_trends_closed_form_and_against_the_measured_means(fitted, tmp_path):
    """Trends equal the fate-weighted mean of the decoded paths (recomputed here), start at the
    decoded mean of the starting cells, and follow the measured day means and branch differences."""
    from cellflow.models.landing import knn_assignment

    adata, model = fresh(fitted)
    hv = list(adata.var_names[adata.var["highly_variable"]])
    before = set(adata.uns)
    cf.tl.gene_trends(
        adata, model, hv, t_from=3, t_to=5, groupby="branch", groups=["A", "B"], n_points=11
    )
    assert set(adata.uns) - before == {"gene_trends"} and set(before) <= set(adata.uns)
    r = adata.uns["gene_trends"]
    assert r["mean"].shape == r["std"].shape == (2, 11, len(hv)) and list(r["groups"]) == ["A", "B"]
    assert r["time"][0] == 3 and r["time"][-1] == 5 and list(r["observed_time"]) == [3, 4, 5]
    # closed form: decode x = mu + z W^T, weight each path by its landing mass on each branch
    idx = adata.var_names.get_indexer(hv)
    W, mu = adata.varm["PCs"][idx, :5], np.asarray(adata.X[:, idx].mean(0)).ravel()
    X0 = model.cells_at(3)
    paths = model.push(X0, 3, 5, n_points=11)
    expr = paths @ W.T + mu
    P = knn_assignment(
        model.scaler.forward(paths[-1]), model.scaler.forward(model.cells_at(5)), k=30
    )
    labels = adata.obs["branch"].astype(str).to_numpy()[model.cell_times() == 5]
    for j, g in enumerate(["A", "B"]):
        w = np.asarray(P[:, labels == g].sum(1)).ravel()
        m = np.einsum("c,tcg->tg", w, expr) / w.sum()
        sd = np.sqrt(np.einsum("c,tcg->tg", w, (expr - m[:, None]) ** 2) / w.sum())
        np.testing.assert_allclose(r["mean"][j], m, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(r["std"][j], sd, rtol=1e-9, atol=1e-9)
        assert r["weight"][j] == pytest.approx(w.sum())
    assert r["weight"].sum() == pytest.approx(len(X0))  # every path's mass lands on A or B at day 5
    # learned: the A-B difference at day 5 follows the measured branches' difference
    d, br = adata.obs["day"].to_numpy(), adata.obs["branch"].to_numpy()
    branch_mean = {
        g: np.asarray(adata.X[(d == 5) & (br == g)][:, idx].mean(0)).ravel() for g in "AB"
    }
    diff_obs, diff_pred = branch_mean["A"] - branch_mean["B"], r["mean"][0, -1] - r["mean"][1, -1]
    assert np.corrcoef(diff_obs, diff_pred)[0, 1] > 0.95
    assert 0.6 < diff_pred @ diff_obs / (diff_obs @ diff_obs) < 1.4
    # one trend over all paths: at the start the decoded mean of the day-2 cells; the change to
    # day 3 follows the measured day means'
    cf.tl.gene_trends(adata, model, hv, t_from=2, t_to=3, key_added="all")
    a = adata.uns["all"]
    np.testing.assert_allclose(a["mean"][0, 0], (model.cells_at(2) @ W.T + mu).mean(0), atol=1e-6)
    om = a["observed_mean"]
    dobs, dpred = om[-1] - om[0], a["mean"][0, -1] - a["mean"][0, 0]
    assert np.corrcoef(dobs, dpred)[0, 1] > 0.9 and 0.6 < dpred @ dobs / (dobs @ dobs) < 1.4
    # decoding from a layer: a copy of X gives the same trends; a missing layer is named
    adata.layers["log"] = adata.X.copy()
    cf.tl.gene_trends(adata, model, hv, t_from=2, t_to=3, layer="log", key_added="from_layer")
    np.testing.assert_allclose(adata.uns["from_layer"]["mean"], a["mean"])
    np.testing.assert_allclose(adata.uns["from_layer"]["observed_mean"], a["observed_mean"])
    with pytest.raises(KeyError, match="no 'nope'"):
        cf.tl.gene_trends(adata, model, hv[:2], t_from=3, t_to=5, layer="nope", key_added="x")
    adata.write_h5ad(tmp_path / "trends.h5ad")
    back = ad.read_h5ad(tmp_path / "trends.h5ad").uns["gene_trends"]
    np.testing.assert_allclose(back["mean"], r["mean"])
    # bad input
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        cf.tl.gene_trends(adata, model, hv[:2], t_from=3, t_to=5)
    with pytest.raises(KeyError, match="not in adata.var_names"):
        cf.tl.gene_trends(adata, model, ["nope"], t_from=3, t_to=5, key_added="x")
    flat = [g for g in adata.var_names if g not in hv][:1]
    with pytest.raises(ValueError, match="no loading on the PCs"):
        cf.tl.gene_trends(adata, model, flat, t_from=3, t_to=5, key_added="x")
    with pytest.raises(ValueError, match="not a measured time"):
        cf.tl.gene_trends(adata, model, hv[:2], t_from=3.5, t_to=5, key_added="x")
    with pytest.raises(ValueError, match="groups \\['C'\\] have no cell"):
        cf.tl.gene_trends(
            adata, model, hv[:2], t_from=3, t_to=5, groupby="branch", groups=["C"], key_added="x"
        )
    on_umap = cf.CellFlow(adata, "day", use_rep="X_umap")
    with pytest.raises(ValueError, match="needs a model on 'X_pca'"):
        cf.tl.gene_trends(adata, on_umap, hv[:2], t_from=3, t_to=5, key_added="x")
    assert "x" not in adata.uns


def test_gene_trends_plot_draws_and_leaves_the_anndata_as_it_was(fitted, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adata, model = fresh(fitted)
    with pytest.raises(KeyError, match="cf.tl.gene_trends"):
        cf.pl.gene_trends(adata)
    hv = list(adata.var_names[adata.var["highly_variable"]])[:5]
    cf.tl.gene_trends(adata, model, hv, t_from=2, t_to=5, groupby="branch", groups=["A", "B"])
    before = {
        k: np.array(v, copy=True) for k, v in adata.uns["gene_trends"].items() if k != "params"
    }
    axes = cf.pl.gene_trends(adata, save=str(tmp_path / "t.png"))
    assert (
        axes.size == 8 and sum(ax.get_visible() for ax in axes.flat) == 5
    )  # 5 genes on a 2 x 4 grid
    assert len(axes.flat[0].lines) == 2 and (tmp_path / "t.png").exists()
    cf.pl.gene_trends(adata, hv[1], groups="A", band=False, observed=False)
    for k, v in before.items():
        np.testing.assert_array_equal(adata.uns["gene_trends"][k], v)
    with pytest.raises(KeyError, match="genes \\['nope'\\] are not in"):
        cf.pl.gene_trends(adata, ["nope"])
    # readable names from a var column, as scanpy's gene_symbols=: titles, and genes named either
    # way
    adata.var["symbol"] = [f"Sym{i}" for i in range(adata.n_vars)]
    sym = dict(zip(adata.var_names, adata.var["symbol"]))
    axes = cf.pl.gene_trends(adata, [sym[hv[0]], hv[1]], gene_symbols="symbol")
    assert [ax.get_title() for ax in axes.flat[:2]] == [sym[hv[0]], sym[hv[1]]]
    with pytest.raises(KeyError, match="gene_symbols='nope' is not a column of adata.var"):
        cf.pl.gene_trends(adata, gene_symbols="nope")


def test_plots_draw(fitted, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adata, model = fresh(fitted)
    pred = cf.tl.interpolate(adata, model, time=3, n_cells=40)
    assert (
        cf.pl.trajectories(adata, model, n_cells=20, n_points=5, save=str(tmp_path / "t.png"))
        is not None
    )
    cf.pl.trajectories(adata, model, n_cells=20, n_points=5, basis="umap")
    cf.pl.prediction(adata, model, pred, time=3, basis="umap")
    df = pd.DataFrame(
        {
            "method": ["a", "a", "b", "b"],
            "held_out_time": [1, 1, 1, 1],
            "seed": [0, 1, 0, 1],
            "w1": [1.0, 1.2, 0.8, 0.9],
        }
    )
    cf.pl.evaluation(df, save=str(tmp_path / "e.png"))
    assert (tmp_path / "t.png").exists() and (tmp_path / "e.png").exists()


def test_the_evaluation_figure_keeps_its_bars_with_one_held_out_time():
    """The demo's table (one held-out time, four methods) once drew a legend beside axes squeezed
    to nothing; the bars must keep at least 2.5 inches and every method its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ["OT-CFM", "I-CFM", "McCann OT interpolation", "previous time point"]
    df = pd.DataFrame(
        {"method": methods, "held_out_time": 3.0, "seed": 0, "w1": [0.6, 0.7, 0.9, 1.3]}
    )
    ax = cf.pl.evaluation(df)
    fig = ax.figure
    fig.canvas.draw()
    assert ax.get_position().width * fig.get_figwidth() >= 2.5
    assert len(ax.patches) == 4 and min(p.get_width() for p in ax.patches) > 0
    plt.close(fig)


def test_velocity_grid_closed_forms():
    """A constant field is returned as it is, a linear field v = A e is its value at the grid
    point (away from the edges), empty space between two clouds is left out, and cells with NaN
    are ignored."""
    from cellflow.pl import velocity_grid

    rng = np.random.default_rng(0)
    E = rng.uniform(-1, 1, size=(20000, 2))
    const = velocity_grid(E, np.tile([2.0, -1.0], (len(E), 1)), grid_size=21)
    assert const.inside.mean() > 0.9 and const.U.shape == (len(const.y), len(const.x))
    np.testing.assert_allclose(const.U[const.inside], 2.0)
    np.testing.assert_allclose(const.V[const.inside], -1.0)
    A = np.array([[0.5, -1.0], [1.0, 0.25]])
    lin = velocity_grid(E, E @ A.T, grid_size=21)
    gx, gy = np.meshgrid(lin.x, lin.y)
    core = (np.abs(gx) < 0.7) & (np.abs(gy) < 0.7)
    expect = np.stack([gx, gy], -1) @ A.T
    assert np.abs(lin.U[core] - expect[core][:, 0]).max() < 0.02
    assert np.abs(lin.V[core] - expect[core][:, 1]).max() < 0.02
    two = np.concatenate(
        [rng.normal(size=(500, 2)) * 0.1 - [3, 0], rng.normal(size=(500, 2)) * 0.1 + [3, 0]]
    )
    two[0] = np.nan
    g = velocity_grid(two, np.ones_like(two), grid_size=40)
    j = np.argmin(np.abs(g.x)), np.argmin(np.abs(g.y))
    assert not g.inside[j[1], j[0]] and np.isnan(g.U[j[1], j[0]])
    near = np.argmin(np.abs(g.x + 3)), j[1]
    assert g.inside[near[1], near[0]] and g.U[near[1], near[0]] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same cells"):
        velocity_grid(E, E[:10])


def test_velocity_plot_draws_and_leaves_the_anndata_as_it_was(fitted, tmp_path):
    import matplotlib
    import matplotlib.quiver

    matplotlib.use("Agg")
    adata, model = fresh(fitted)
    with pytest.raises(KeyError, match="cf.tl.velocity_embedding"):
        cf.pl.velocity(adata, "umap")
    cf.tl.velocity(adata, model)
    cf.tl.velocity_embedding(adata, basis="umap")
    adata.obs["day_cat"] = adata.obs["day"].astype(str).astype("category")
    before = adata.copy()
    assert cf.pl.velocity(adata, "umap", color="day", save=str(tmp_path / "v.png")) is not None
    ax = cf.pl.velocity(adata, "umap", kind="grid", color="day_cat")
    q = next(c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver))
    g = cf.pl.velocity_grid(adata.obsm["X_umap"], adata.obsm["velocity_umap"])
    arrow = np.hypot(q.U, q.V) / q.scale  # data units (scale_units="xy")
    assert np.percentile(arrow, 95) == pytest.approx(
        min(g.x[1] - g.x[0], g.y[1] - g.y[0]), rel=1e-6
    )
    cf.pl.velocity(adata, "umap")
    assert (tmp_path / "v.png").exists()
    assert set(adata.obsm) == set(before.obsm) and set(adata.uns) == set(before.uns)
    assert set(adata.obs) == set(before.obs) and set(adata.layers) == set(before.layers)
    np.testing.assert_array_equal(adata.obsm["velocity_umap"], before.obsm["velocity_umap"])
    with pytest.raises(ValueError, match="kind"):
        cf.pl.velocity(adata, "umap", kind="arrows")
    with pytest.raises(KeyError, match="no column 'nope'"):
        cf.pl.velocity(adata, "umap", color="nope")


# ------------------------------------------------------------ scVelo and CellRank themselves
def test_scvelo_plots_without_recomputing(fitted):
    scv = pytest.importorskip(
        "scvelo", reason="scvelo is in the test extra: pip install -e '.[test]'"
    )
    import matplotlib

    matplotlib.use("Agg")
    adata, model = fresh(fitted)
    cf.tl.velocity(adata, model)
    cf.tl.velocity_embedding(adata, basis="umap")
    before = adata.obsm["velocity_umap"].copy()
    from scvelo.plotting.utils import velocity_embedding_changed

    assert not velocity_embedding_changed(adata, basis="umap", vkey="velocity")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scv.pl.velocity_embedding_stream(adata, basis="umap", show=False)
    np.testing.assert_array_equal(adata.obsm["velocity_umap"], before)


def test_scvelo_plots_a_2d_representation_velocity_as_it_is(fitted):
    """A flow fitted on a 2-D layout (LARRY's X_spring): scVelo's stream plot uses
    obsm["velocity_spring"] directly instead of recomputing it from gene velocities (which do
    not exist here, so recomputing raised KeyError 'velocity')."""
    scv = pytest.importorskip(
        "scvelo", reason="scvelo is in the test extra: pip install -e '.[test]'"
    )
    import matplotlib

    matplotlib.use("Agg")
    adata, _ = fresh(fitted)
    adata.obsm["X_spring"] = np.asarray(adata.obsm["X_umap"], dtype=np.float64) * 100.0
    model = cf.CellFlow(adata, "day", use_rep="X_spring", seed=0)
    model.train(steps=20, progress=False)
    cf.tl.velocity(adata, model)
    assert "velocity" not in adata.layers
    from scvelo.plotting.utils import velocity_embedding_changed

    assert not velocity_embedding_changed(adata, basis="spring", vkey="velocity")
    before = adata.obsm["velocity_spring"].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scv.pl.velocity_embedding_stream(adata, basis="spring", show=False)
    np.testing.assert_array_equal(adata.obsm["velocity_spring"], before)


def test_cellrank_kernels_accept_the_exports(fitted):
    cr = pytest.importorskip(
        "cellrank", reason="cellrank is in the test extra: pip install -e '.[test]'"
    )
    adata, model = fresh(fitted)
    cf.tl.velocity(adata, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vk = cr.kernels.VelocityKernel(adata, attr="obsm", xkey="X_pca", vkey="velocity_pca")
        vk.compute_transition_matrix(show_progress_bar=False)
        assert vk.transition_matrix.shape == (adata.n_obs, adata.n_obs)
        # the README's recipe, as written (issue #52): couplings writes obs["day_category"]
        rk = cr.kernels.RealTimeKernel(
            adata, time_key="day_category", couplings=cf.tl.couplings(adata, model)
        )
        assert adata.obs["day"].dtype.kind in "iuf"  # the time column is left as it is
        rk.compute_transition_matrix(self_transitions="all", conn_weight=0.2, threshold="auto")
    np.testing.assert_allclose(np.asarray(rk.transition_matrix.sum(1)).ravel(), 1.0, atol=1e-6)


def test_sanitize_makes_cellrank_fates_writable(tmp_path):
    """CellRank's Lineage in obsm makes write_h5ad fail; after cf.tl.sanitize the file is written,
    the values are those CellRank gave, and the Lineage can be rebuilt from uns."""
    cr = pytest.importorskip(
        "cellrank", reason="cellrank is in the scverse extra: pip install -e '.[scverse]'"
    )
    import anndata as ad

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=20)
    adata = ad.AnnData(np.zeros((20, 2)))
    adata.obsm["lineages_fwd"] = cr.Lineage(probs, names=["Neu", "Mono", "Ery"])
    with pytest.raises(TypeError):
        adata.copy().write_h5ad(tmp_path / "before.h5ad")
    cf.tl.sanitize(adata)
    adata.write_h5ad(tmp_path / "after.h5ad")
    back = ad.read_h5ad(tmp_path / "after.h5ad")
    np.testing.assert_array_equal(back.obsm["lineages_fwd"], probs)
    again = cr.Lineage(back.obsm["lineages_fwd"], names=back.uns["lineages_fwd_names"])
    assert list(again.names) == ["Neu", "Mono", "Ery"]


def test_the_scverse_extra_pins_a_set_that_is_installed_here():
    """The [scverse] extra names scVelo, CellRank and the NumPy they work with; where it is
    installed (CI's test environment), the versions found satisfy it."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    extra = [Requirement(r) for r in requires("cellflow-cfm") or []]
    extra = [r for r in extra if r.marker is not None and r.marker.evaluate({"extra": "scverse"})]
    assert {r.name for r in extra} >= {"scvelo", "cellrank", "numpy"}
    pytest.importorskip(
        "cellrank", reason="the scverse extra is not installed: pip install -e '.[scverse]'"
    )
    for r in extra:
        assert r.specifier.contains(version(r.name), prereleases=True), (r, version(r.name))


def test_shared_eb_file_loads_when_present():
    import os
    from pathlib import Path

    default = Path(__file__).resolve().parents[3] / "shared" / "datasets"
    root = Path(os.environ.get("CELLFLOW_DATA_DIR", default))
    if not (root / "eb.h5ad").exists():
        pytest.skip(
            f"{root / 'eb.h5ad'} is absent (the shared benchmark data sit beside the checkout, "
            "or set CELLFLOW_DATA_DIR)"
        )
    a = cf.datasets.load("eb", data_dir=root)
    info = a.uns["cellflow_dataset"]
    model = cf.CellFlow(a, info["time_key"], use_rep=info["use_rep"], n_pcs=5, whiten=True)
    assert len(model.times) == 5 and "velocity_pca" in a.obsm


def test_neighbor_indices_from_distances_are_each_rows_nearest():
    import scipy.sparse as sp

    from cellflow.tl._velocity import _neighbor_indices

    rng = np.random.default_rng(0)
    n, rows, cols = 150, [], []
    for i in range(n):  # rows hold 4 to 8 neighbours, in no particular order
        c = rng.choice(np.delete(np.arange(n), i), rng.integers(4, 9), replace=False)
        rows += [i] * len(c)
        cols += list(c)
    D = sp.csr_matrix((rng.random(len(rows)) + 0.01, (rows, cols)), shape=(n, n))
    a = ad.AnnData(np.zeros((n, 1)))
    a.obsp["distances"] = D
    idx = _neighbor_indices(a, None, None)
    assert idx.shape == (n, 4)
    for i in range(n):
        row = slice(D.indptr[i], D.indptr[i + 1])
        assert (idx[i] == D.indices[row][np.argsort(D.data[row])[:4]]).all()
