"""CellFlow on small simulated AnnData: API end to end, bad input, persistence, evaluation."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellflow as cf


def course(n=150, d=3, times=(0, 1, 2, 3), seed=0, speed=1.0):
    """Cells drifting along the first axis at `speed` per time unit, spread 0.3."""
    rng = np.random.default_rng(seed)
    t = np.repeat(times, n).astype(float)
    X = rng.normal(scale=0.3, size=(len(t), d))
    X[:, 0] += speed * t
    a = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]))
    a.obsm["X_pca"] = X
    return a


def test_train_push_and_holdout_interpolation():
    adata = course()
    model = cf.CellFlow(adata, "day", seed=0)
    model.train(steps=300, batch_size=128, holdout=2.0, progress=False)
    pred = model.push(model.cells_at(1.0), 1.0, 2.0)
    truth = model.cells_at(2.0)
    w1_flow = cf.metrics.wasserstein(pred, truth, p=1)
    w1_prev = cf.metrics.wasserstein(model.cells_at(1.0), truth, p=1)
    assert pred.shape == truth.shape
    assert w1_flow < 0.5 * w1_prev  # the held-out point is predicted, not copied
    traj = model.push(model.cells_at(0.0)[:10], 0.0, 3.0, n_points=7)
    assert traj.shape == (7, 10, 3)
    back = model.push(traj[-1], 3.0, 0.0)
    np.testing.assert_allclose(back, traj[0], atol=0.05)
    v = model.velocity(model.cells_at(1.0), 1.0)
    assert v.shape == (150, 3) and abs(v[:, 0].mean() - 1.0) < 0.2  # one unit per day


def test_real_time_scale_and_whitening_return_original_units():
    adata = course(times=(2, 3, 4, 7), speed=1.0)
    model = cf.CellFlow(adata, "day", whiten=True, time_scale="real", seed=0)
    # real time in mean intervals (5/3 days) from day 2
    assert model.model_time(3.0) == pytest.approx(0.6) and model.model_time(5.5) == pytest.approx(
        2.1
    )
    model.train(steps=300, batch_size=128, progress=False)
    pred = model.push(model.cells_at(4.0), 4.0, 7.0)
    assert abs(pred[:, 0].mean() - model.cells_at(7.0)[:, 0].mean()) < 0.5
    idx = cf.CellFlow(adata, "day")
    assert idx.model_time(7.0) == 3.0 and idx.model_time(5.5) == 2.5
    assert idx.measured_time(2.5) == 5.5 and model.measured_time(2.1) == pytest.approx(5.5)
    for t in (2.0, 3.3, 4.0, 6.1):
        assert idx.measured_time(idx.model_time(t)) == pytest.approx(t)
    with pytest.raises(ValueError, match="outside the trained range"):
        idx.measured_time(3.5)


def test_categorical_numeric_labels_are_accepted():
    adata = course()
    adata.obs["day"] = pd.Categorical(adata.obs["day"].map(lambda v: f"{v:g}"))
    assert cf.CellFlow(adata, "day").times.tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "mutate,kwargs,exc,match",
    [
        (lambda a: None, dict(time_key="time"), KeyError, "is not a column of adata.obs"),
        (lambda a: None, dict(use_rep="X_umap"), KeyError, "is not in adata.obsm"),
        (
            lambda a: setattr(a, "obs", a.obs.assign(day=1.0)),
            {},
            ValueError,
            "at least 2 are needed",
        ),
        (
            lambda a: setattr(
                a, "obs", a.obs.assign(day=np.where(a.obs["day"] > 1, "late", "early"))
            ),
            {},
            ValueError,
            "must hold numbers",
        ),
        (
            lambda a: setattr(a, "obs", a.obs.assign(day=a.obs["day"] > 1)),
            {},
            ValueError,
            "holds booleans",
        ),
        (
            lambda a: setattr(
                a, "obs", a.obs.assign(day=np.where(np.arange(a.n_obs) == 3, np.inf, a.obs["day"]))
            ),
            {},
            ValueError,
            "has 1 infinite values",
        ),
        (
            lambda a: a.obsm["X_pca"].__setitem__((5, 1), np.nan),
            {},
            ValueError,
            "NaN or inf in 1 cells",
        ),
        (lambda a: None, dict(n_pcs=10), ValueError, "n_pcs=10 but"),
        (lambda a: None, dict(min_cells=200), ValueError, "fewer than min_cells=200"),
        (lambda a: None, dict(method="fm"), ValueError, "supports method"),
        (
            lambda a: None,
            dict(method="xyz"),
            ValueError,
            "unknown method 'xyz': CellFlow supports method='ot', 'sb', 'icfm' or 'mfm'",
        ),
    ],
)
def test_bad_input_names_the_problem(mutate, kwargs, exc, match):
    adata = course()
    mutate(adata)
    args = dict(time_key="day") | kwargs
    with pytest.raises(exc, match=match):
        cf.CellFlow(adata, args.pop("time_key"), **args)


def test_bad_holdout_and_times():
    model = cf.CellFlow(course(), "day")
    with pytest.raises(ValueError, match="first and last time points cannot be held out"):
        model.train(steps=1, holdout=0.0, progress=False)
    with pytest.raises(ValueError, match="not a measured time"):
        model.train(steps=1, holdout=1.5, progress=False)
    with pytest.raises(ValueError, match="outside the measured range"):
        model.push(model.cells_at(0.0), 0.0, 9.0)
    with pytest.raises(ValueError, match="at least 3 are needed"):
        cf.evaluate_holdout(
            course(times=(0, 1)), "day", methods=["ot"], seeds=[0], steps=1, progress=False
        )


def test_user_anndata_is_not_modified():
    adata = course()
    before = adata.copy()
    model = cf.CellFlow(adata, "day")
    model.train(steps=5, batch_size=16, progress=False)
    assert adata.obs.equals(before.obs) and list(adata.obsm) == list(before.obsm)
    np.testing.assert_array_equal(adata.obsm["X_pca"], before.obsm["X_pca"])


def test_save_load_round_trip_and_wrong_anndata(tmp_path):
    adata = course()
    model = cf.CellFlow(adata, "day", whiten=True, seed=1)
    model.train(steps=20, batch_size=32, progress=False)
    model.save(tmp_path / "m")
    again = cf.CellFlow.load(tmp_path / "m", adata)
    X = adata.obsm["X_pca"][:20]
    np.testing.assert_array_equal(model.push(X, 0.0, 1.0), again.push(X, 0.0, 1.0))
    other = course(n=120)
    with pytest.raises(ValueError, match="not the one the model was trained on: number of cells"):
        cf.CellFlow.load(tmp_path / "m", other)
    renamed = adata.copy()
    renamed.obs_names = [f"x{i}" for i in range(adata.n_obs)]
    with pytest.raises(ValueError, match="cell names"):
        cf.CellFlow.load(tmp_path / "m", renamed)


def test_evaluate_holdout_table():
    df = cf.evaluate_holdout(
        course(n=80),
        "day",
        methods=["ot", "icfm"],
        seeds=[0, 1],
        steps=150,
        batch_size=64,
        progress=False,
    )
    assert list(df.columns) == ["method", "held_out_time", "seed", "w1", "w2", "mmd", "seconds"]
    assert sorted(df.held_out_time.unique()) == [1.0, 2.0]
    assert set(df.method) == {"OT-CFM", "I-CFM", "previous time point", "McCann OT interpolation"}
    s = cf.summarize_holdout(df)
    assert s.loc["OT-CFM", "n_seeds"] == 2
    assert s.loc["OT-CFM", "w1_mean"] < s.loc["previous time point", "w1_mean"]
    bare = cf.evaluate_holdout(
        course(n=80),
        "day",
        methods=["ot"],
        seeds=[0],
        steps=150,
        batch_size=64,
        baselines=False,
        progress=False,
    )
    assert set(bare.method) == {"OT-CFM"}  # the same flows, without the baselines
    np.testing.assert_allclose(
        bare.w1.to_numpy(), df[(df.method == "OT-CFM") & (df.seed == 0)].w1.to_numpy()
    )


def test_evaluate_holdout_best_fraction_finds_an_uneven_pace():
    # days 0, 1, 2 at positions 0, 1.6, 2 on the first axis: held-out day 1 lies at 80 % of the
    # merged interval, not at the protocol's midpoint
    adata = course(n=150, d=2, times=(0, 1, 2))
    day = adata.obs["day"].to_numpy()
    adata.obsm["X_pca"][:, 0] += np.where(day == 1, 0.6, 0.0)
    before = adata.obsm["X_pca"].copy()
    df = cf.evaluate_holdout(
        adata,
        "day",
        methods=["ot"],
        seeds=[0],
        steps=300,
        batch_size=128,
        fractions=[0.2, 0.5, 0.8],
        progress=False,
    )
    assert list(df.columns)[-2:] == ["best_fraction", "w1_best_fraction"]
    flow = df[df.method == "OT-CFM"].iloc[0]
    assert flow.best_fraction == 0.8
    assert flow.w1_best_fraction < 0.5 * flow.w1  # the path is right; the midpoint is not
    assert df[df.method == "previous time point"].best_fraction.isna().all()
    assert "w1_best_fraction_mean" in cf.summarize_holdout(df)
    np.testing.assert_array_equal(adata.obsm["X_pca"], before)
    with pytest.raises(ValueError, match=r"fractions must be values in \[0, 1\]"):
        cf.evaluate_holdout(
            adata, "day", methods=["ot"], seeds=[0], steps=1, fractions=[1.5], progress=False
        )


def test_sb_sde_push_reaches_the_marginals_and_spreads_single_cells(tmp_path):
    adata = course(n=300, d=2, times=(0, 1, 2))
    model = cf.CellFlow(adata, "day", method="sb", sigma=0.5, seed=0)
    model.train(steps=800, batch_size=128, progress=False)
    X0, X1 = model.cells_at(0.0), model.cells_at(1.0)
    fwd = model.push(X0, 0.0, 1.0, sde=True)
    back = model.push(model.cells_at(2.0), 2.0, 1.0, sde=True, seed=1)
    for pred in (fwd, back):  # the day-1 marginal: mean (1, 0), spread 0.3 per axis
        assert abs(pred[:, 0].mean() - 1.0) < 0.15 and abs(pred[:, 1].mean()) < 0.15
        assert 0.22 < pred.std(0).min() and pred.std(0).max() < 0.38  # no score: 0.41-0.45
        assert cf.metrics.wasserstein(pred, X1, p=1) < 0.5 * cf.metrics.wasserstein(X0, X1, p=1)
    one = np.repeat(X0[:1], 200, axis=0)
    assert model.push(one, 0.0, 1.0, sde=True).std(0).min() > 0.05  # stochastic: one cell spreads
    # the ODE is deterministic: equal cells end equal, up to float32 rounding (a CPU's vector
    # kernels may round the rows of one batch differently: 6e-8 seen)
    assert model.push(one, 0.0, 1.0).std(0).max() < 1e-5
    np.testing.assert_array_equal(
        model.push(one, 0.0, 1.0, sde=True, seed=3), model.push(one, 0.0, 1.0, sde=True, seed=3)
    )
    P, P_ode = (
        model.transition_matrix(0.0, 1.0, sde=True, n_samples=4),
        model.transition_matrix(0.0, 1.0),
    )
    assert P.shape == (300, 300) and np.allclose(np.asarray(P.sum(1)).ravel(), 1.0)
    assert (P > 0).sum() > 2 * (P_ode > 0).sum()  # each row averages 4 stochastic landings
    cf.tl.pull(
        adata,
        model,
        {"day": 1.0},
        t_from=0.0,
        t_to=1.0,
        sde=True,
        normalize=False,
        key_added="reach",
    )
    np.testing.assert_allclose(adata.obs["reach"][adata.obs.day == 0], 1.0)
    traj = model.push(X0[:5], 0.0, 2.0, sde=True, n_points=5)
    assert traj.shape == (5, 5, 2) and np.allclose(traj[0], X0[:5])
    model.save(tmp_path / "sb")
    loaded = cf.CellFlow.load(tmp_path / "sb", adata)
    np.testing.assert_allclose(
        loaded.push(one, 0.0, 1.0, sde=True), model.push(one, 0.0, 1.0, sde=True)
    )
    ot = cf.CellFlow(adata, "day", method="ot")
    with pytest.raises(ValueError, match="sde=True needs an SB model"):
        ot.push(X0, 0.0, 1.0, sde=True)


def test_default_sigma_follows_the_documented_rule():
    from cellflow.models._methods import default_sigma

    low, high = course(n=20, d=3), course(n=20, d=25)
    assert cf.CellFlow(low, "day").sigma == 0.1  # low-dimensional, unwhitened (a 2-D layout, say)
    assert cf.CellFlow(high, "day", whiten=True).sigma == 0.1  # whitened PCs: the paper's σ
    assert cf.CellFlow(high, "day").sigma == 1.0  # ≥ 20 unwhitened PCs: OT-CFM's wider path
    assert cf.CellFlow(high, "day", method="mfm").sigma == 1.0  # OT-MFM pairs like OT-CFM
    assert (
        cf.CellFlow(high, "day", method="mfm", whiten=True).sigma == 0.3
    )  # OT-MFM's measured whitened σ
    assert cf.CellFlow(low, "day", method="mfm").sigma == 0.1
    assert cf.CellFlow(high, "day", method="icfm").sigma == 0.1
    assert cf.CellFlow(high, "day", method="sb").sigma == 1.0
    assert cf.CellFlow(high, "day", sigma=0.3).sigma == 0.3
    assert default_sigma("ot", False, 19) == 0.1 and default_sigma("ot-cfm", False, 20) == 1.0


def test_ot_batch_size_couples_more_cells_than_it_trains_on(monkeypatch):
    adata = course(n=100)
    model = cf.CellFlow(adata, "day", method="ot", seed=0)
    seen = []
    orig = type(model.matcher).sample

    def spy(self, x0, x1, *args, n=None, **kwargs):
        s = orig(self, x0, x1, *args, n=n, **kwargs)
        seen.append((len(x0), len(x1), n, len(s.x_t)))
        return s

    monkeypatch.setattr(type(model.matcher), "sample", spy)
    model.train(steps=3, batch_size=32, ot_batch_size=96, prefetch=0, progress=False)
    assert seen and all(v == (96, 96, 32, 32) for v in seen)
    seen.clear()
    # minibatch plans as the paper has them: as many cells coupled as trained on
    model.train(steps=2, batch_size=32, prefetch=0, progress=False, ot_plan="minibatch")
    assert seen and all(v == (32, 32, None, 32) for v in seen)
    seen.clear()
    model.train(steps=2, batch_size=32, prefetch=0, progress=False)  # default: one whole plan
    assert not seen and model.ot_plan == "whole"
    with pytest.raises(ValueError, match="ot_batch_size=16 is smaller than batch_size=32"):
        model.train(steps=2, batch_size=32, ot_batch_size=16, progress=False)
