"""Cells that divide and die (#41): the unbalanced coupling and the mass ODE against their closed
forms, growth priors from genes, the growth simulator, a small learned run, the tools that carry
mass, and bad input answered with what to do."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import cellflow as cf
from cellflow.cli import main
from cellflow.couplings import UnbalancedOT, sinkhorn_log, unbalanced_scaling
from cellflow.models._growth import interval_log_growth
from cellflow.pp import birth_rate, death_rate
from cellflow.pp._markers import HUMAN_APOPTOSIS, HUMAN_PROLIFERATION, MOUSE_PROLIFERATION

# ---------------------------------------------------------------- closed forms


def test_held_marginals_give_the_balanced_plan():
    """τ = (1, 1): the unbalanced iterations are Sinkhorn's, and the plan is the balanced one."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(40, 3, generator=g), torch.randn(50, 3, generator=g) + 1
    C = cf.couplings.squared_distances(x0, x1)
    a, b = (
        torch.full((40,), 1 / 40, dtype=torch.float64),
        torch.full((50,), 1 / 50, dtype=torch.float64),
    )
    P = unbalanced_scaling(a, b, C, 0.5, (1.0, 1.0), tol=1e-10, max_iter=100000)
    Q = sinkhorn_log(a, b, C, 0.5, tol=1e-10)
    assert torch.allclose(P, Q, atol=1e-9)


def test_the_scalar_unbalanced_problem_has_its_closed_form():
    r"""One source, one target, zero cost: minimising ε KL(P|ab) + ρa KL(P|a) + ρb KL(P|b) gives
    log P = (ε log ab + ρa log a + ρb log b) / (ε + ρa + ρb), with ρ = ε τ / (1 - τ)."""
    eps, ta, tb, a, b = 0.3, 0.6, 0.8, 2.0, 0.3  # a·b ≠ 1: the reference measure counts
    P = unbalanced_scaling(
        torch.tensor([a], dtype=torch.float64),
        torch.tensor([b], dtype=torch.float64),
        torch.zeros(1, 1),
        eps,
        (ta, tb),
        tol=1e-12,
    )
    ra, rb = eps * ta / (1 - ta), eps * tb / (1 - tb)
    want = np.exp((eps * np.log(a * b) + ra * np.log(a) + rb * np.log(b)) / (eps + ra + rb))
    assert float(P) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("log_domain", [False, True])
@pytest.mark.parametrize("rho", [(0.4, 2.0), (1.0, 1.0), (0.3, 0.8)])
def test_the_unbalanced_plan_is_pots(monkeypatch, rho, log_domain):
    """The plan of min <P,C> + ε KL(P|ab^T) + ρa KL(P1|a) + ρb KL(P^T1|b) equals POT's
    ``sinkhorn_unbalanced`` (the same objective), for weights that are neither uniform nor of
    total 1, and costs far from 0 (the minimum the iterations shift by must not change it)."""
    import ot

    import cellflow.couplings._unbalanced as U

    if log_domain:
        monkeypatch.setattr(U, "_MAX_RANGE", 0.0)
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(40, 2, generator=g), torch.randn(30, 2, generator=g) + 1.0
    C = cf.couplings.squared_distances(x0, x1).double() + 2.0
    a = torch.rand(40, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(30, generator=g, dtype=torch.float64) + 0.2
    a, b = a / a.sum() / 0.7, b / b.sum()
    eps = 0.5
    tau = tuple(r / (r + eps) for r in rho)
    P = unbalanced_scaling(a, b, C, eps, tau, tol=1e-13, max_iter=200000)
    Q = ot.unbalanced.sinkhorn_unbalanced(
        a.numpy(),
        b.numpy(),
        C.numpy(),
        eps,
        rho,
        numItermax=200000,
        stopThr=1e-15,
        method="sinkhorn_stabilized",
    )
    assert float(C.min()) > 2.0
    assert np.abs(P.numpy() - Q).max() < 1e-8 * Q.max()


def test_cells_of_zero_weight_get_no_mass():
    """KL(P|ab^T) allows no mass where a_i = 0: that row of the plan is 0, the rest is the plan
    of the other cells."""
    g = torch.Generator().manual_seed(2)
    C = cf.couplings.squared_distances(
        torch.randn(6, 2, generator=g), torch.randn(5, 2, generator=g)
    )
    a = torch.tensor([0.2, 0.0, 0.3, 0.1, 0.2, 0.2], dtype=torch.float64)
    b = torch.full((5,), 0.2, dtype=torch.float64)
    P = unbalanced_scaling(a, b, C, 0.5, (0.8, 1.0), tol=1e-12)
    keep = [0, 2, 3, 4, 5]
    Q = unbalanced_scaling(a[keep], b, C[keep], 0.5, (0.8, 1.0), tol=1e-12)
    assert torch.isfinite(P).all() and float(P[1].abs().max()) == 0.0
    assert torch.allclose(P[keep], Q, atol=1e-14)


def test_the_log_domain_iterations_give_the_same_plan(monkeypatch):
    """Where exp(-C/ε) could underflow the iterations run on log u, log v: the same plan."""
    import cellflow.couplings._unbalanced as U

    g = torch.Generator().manual_seed(1)
    C = cf.couplings.squared_distances(
        torch.randn(30, 3, generator=g), torch.randn(40, 3, generator=g)
    )
    a, b = (
        torch.full((30,), 1 / 30, dtype=torch.float64),
        torch.full((40,), 1 / 40, dtype=torch.float64),
    )
    P = unbalanced_scaling(a, b, C, 0.5, (0.7, 0.9), tol=1e-12, max_iter=100000)
    monkeypatch.setattr(U, "_MAX_RANGE", 0.0)
    Q = unbalanced_scaling(a, b, C, 0.5, (0.7, 0.9), tol=1e-12, max_iter=100000)
    assert torch.allclose(P, Q, rtol=1e-9, atol=1e-15)


def test_a_relaxed_source_keeps_the_target_and_moves_mass_towards_it():
    """τ_b = 1 holds the target exactly; a source cell far from every target loses mass."""
    x0 = torch.tensor([[0.0], [0.1], [5.0]])
    x1 = torch.tensor([[0.0], [0.05]])
    P = UnbalancedOT(0.1, (0.5, 1.0), tol=1e-10).plan(x0, x1)
    assert torch.allclose(P.sum(0), torch.full((2,), 0.5, dtype=P.dtype), atol=1e-8)
    rows = P.sum(1)
    assert rows[2] < 1e-3 < rows[0]


def test_a_uniform_prior_gives_every_cell_the_same_growth():
    """Learned growth from a uniform prior rate c: the plan keeps the prior's weights (the target
    is uniform and of the same total), so every cell's log change over Δs is c Δs."""
    rng = np.random.default_rng(0)
    a = ad.AnnData(
        obs=pd.DataFrame({"day": np.repeat([0, 2], 30)}, index=[f"c{i}" for i in range(60)])
    )
    a.obsm["X_pca"] = rng.normal(size=(60, 2))
    a.obs["g"] = 0.4
    m = cf.CellFlow(a, "day", growth="learned", growth_key="g")
    r = interval_log_growth(
        m.course.store, 0, 1, m._prior[0], 2.0, learned=True, tau_a=1.0, eps=0.05, seed=0
    )
    assert np.allclose(r.numpy(), 0.8, atol=1e-5)


def test_the_prior_scale_is_the_one_that_explains_the_next_time_point():
    """A later time point that is the earlier one reweighted by exp(0.6 r) (its cells drawn in
    proportion to that, unmoved): the calibration finds the scale 0.6 of the prior r."""
    from cellflow.models._growth import calibrate_prior

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    r = 2.0 * x[:, 0]  # the prior: cells to the right grow
    w = np.exp(0.6 * r)
    later = x[rng.choice(400, 400, p=w / w.sum())]
    a = ad.AnnData(
        obs=pd.DataFrame({"day": np.repeat([0, 1], 400)}, index=[f"c{i}" for i in range(800)])
    )
    a.obsm["X_pca"] = np.concatenate([x, later])
    a.obs["prior"] = np.concatenate([r, r])
    m = cf.CellFlow(a, "day", growth="learned", growth_key="prior")
    c = calibrate_prior(m.course.store, [(0, 1)], m._prior, [1.0], seed=0)
    assert c == pytest.approx(0.6, abs=0.1)


def _constant_growth_model(g: float, time_scale="index"):
    rng = np.random.default_rng(0)
    a = ad.AnnData(
        obs=pd.DataFrame({"day": np.repeat([0, 1, 3], 20)}, index=[f"c{i}" for i in range(60)])
    )
    a.obsm["X_pca"] = rng.normal(size=(60, 2))
    m = cf.CellFlow(a, "day", growth="learned", time_scale=time_scale)
    with torch.no_grad():
        for p in m.growth_net.parameters():
            p.zero_()
        m.growth_net.net[-1].bias.fill_(g)
    return a, m


def test_the_mass_of_a_constant_growth_rate_is_exponential():
    """dm/dτ = g m with constant g: m = exp(g Δτ), forwards and backwards, at every point."""
    a, m = _constant_growth_model(0.7)
    X = a.obsm["X_pca"][:5]
    _, mass = m.push(X, 0, 3, return_mass=True)  # days 0 → 3: two intervals of model time
    assert np.allclose(mass, np.exp(0.7 * 2), rtol=1e-5)
    _, back = m.push(X, 3, 1, return_mass=True)
    assert np.allclose(back, np.exp(-0.7), rtol=1e-5)
    _, path = m.push(X, 0, 1, n_points=3, return_mass=True)
    assert path.shape == (3, 5)
    assert np.allclose(path[:, 0], np.exp(0.7 * np.array([0, 0.5, 1])), rtol=1e-5)


def test_growth_rates_are_per_unit_of_measured_time():
    """Model time runs one unit per interval ('index'): days 1 → 3 is one unit over two days, so
    a rate of 0.7 per unit of model time is 0.35 per day there, 0.7 per day on days 0 → 1, and
    the mean of the two at day 1."""
    a, m = _constant_growth_model(0.7)
    X = a.obsm["X_pca"][:3]
    assert np.allclose(m.growth_rate(X, 0.5), 0.7, rtol=1e-5)
    assert np.allclose(m.growth_rate(X, 2.0), 0.35, rtol=1e-5)
    assert np.allclose(m.growth_rate(X, 1.0), 0.525, rtol=1e-5)


def test_birth_and_death_curves_are_the_published_logistics():
    p = np.array([-10.0, 0.25, 10.0])
    assert np.allclose(birth_rate(p), [0.3, 1.0, 1.7], atol=1e-6)
    assert np.allclose(death_rate(np.array([-10.0, 0.1, 10.0])), [0.3, 1.0, 1.7], atol=1e-6)
    # the slope at the centre is (max - min) / width: 4/width scaled by the logistic's 1/4
    h = 1e-6
    assert (birth_rate(0.25 + h) - birth_rate(0.25 - h)) / (2 * h) == pytest.approx(1.4 / 0.5)


# ---------------------------------------------------------------- priors from genes


def _marker_adata(high: float = 2.0) -> ad.AnnData:
    """200 cells: the first half express the proliferation markers highly, the second half the
    apoptosis markers; 100 other genes as background."""
    rng = np.random.default_rng(0)
    genes = (
        list(HUMAN_PROLIFERATION[:20]) + list(HUMAN_APOPTOSIS[:20]) + [f"g{i}" for i in range(100)]
    )
    X = rng.gamma(2.0, 0.5, size=(200, len(genes)))
    X[:100, :20] += high
    X[100:, 20:40] += high
    return ad.AnnData(X=np.log1p(X), var=pd.DataFrame(index=genes))


def test_score_growth_finds_the_markers_and_applies_the_curves():
    a = _marker_adata()
    cf.pp.score_growth(a, organism="human")
    o = a.obs
    assert o["proliferation_score"][:100].mean() > o["proliferation_score"][100:].mean() + 1
    assert o["apoptosis_score"][100:].mean() > o["apoptosis_score"][:100].mean() + 1
    assert o["growth_prior"][:100].min() > o["growth_prior"][100:].max()
    want = birth_rate(o["proliferation_score"]) - death_rate(o["apoptosis_score"])
    assert np.allclose(o["growth_prior"], want)
    params = a.uns["growth_prior_params"]
    assert len(params["proliferation_genes"]) == 20 and params["organism"] == "human"


def test_score_growth_reads_ensembl_ids_with_no_symbol_column():
    """Issue #52: a file indexed by (versioned) Ensembl IDs, with no symbol column, gets the
    same prior as one indexed by symbols, through the shipped table of the markers' IDs."""
    from cellflow.pp._marker_ids import ENSEMBL_IDS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 of 97 markers: a small panel
        by_symbol = cf.pp.score_growth(_marker_adata(), organism="human", copy=True)
        a = _marker_adata()
        ids = ENSEMBL_IDS["human"]
        a.var_names = [
            f"{ids[g][0]}.7" if g in ids else f"ENSG{i:011d}" for i, g in enumerate(a.var_names)
        ]
        by_id = cf.pp.score_growth(a, organism="human", copy=True)
    np.testing.assert_allclose(by_id.obs["growth_prior"], by_symbol.obs["growth_prior"], rtol=1e-12)
    p = by_id.uns["growth_prior_params"]
    assert p["gene_ids"] == "ensembl" and p["matched"]["proliferation"] == "20 of 97"
    assert p["proliferation_genes"] == list(HUMAN_PROLIFERATION[:20])  # reported as symbols
    mouse = a.copy()
    mouse.var_names = [n.replace("ENSG", "ENSMUSG") for n in a.var_names]
    with pytest.raises(ValueError, match="look like mouse IDs"):
        cf.pp.score_growth(mouse, organism="human")


def test_a_low_share_of_markers_in_a_whole_transcriptome_warns():
    """Issue #52: 18 of 97 proliferation genes matched through a hand-made map without a word."""
    rng = np.random.default_rng(0)
    genes = list(HUMAN_PROLIFERATION[:18]) + list(HUMAN_APOPTOSIS) + [f"g{i}" for i in range(2000)]
    a = ad.AnnData(
        X=np.log1p(rng.gamma(2.0, 0.5, size=(50, len(genes)))), var=pd.DataFrame(index=genes)
    )
    with pytest.warns(UserWarning, match=r"only 20 of the 97 proliferation genes"):  # 2 in both
        cf.pp.score_growth(a, organism="human")


def test_score_growth_reads_symbols_from_a_var_column():
    a = _marker_adata()
    a.var["symbol"] = a.var_names
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    with pytest.raises(ValueError, match="name the var column of symbols with gene_symbols"):
        cf.pp.score_growth(a, organism="human")
    b = cf.pp.score_growth(a, organism="human", gene_symbols="symbol", copy=True)
    assert "growth_prior" in b.obs and "growth_prior" not in a.obs


def test_score_growth_names_what_matched_and_how_to_fix_it():
    a = _marker_adata()
    with pytest.raises(ValueError, match="organism must be one of"):
        cf.pp.score_growth(a, organism="zebrafish")
    with pytest.raises(ValueError, match=r"0 of the 2 proliferation genes"):
        cf.pp.score_growth(a, proliferation_genes=["NOPE1", "NOPE2"])
    mouse = a.copy()
    mouse.var_names = [g.capitalize() if g.isupper() else g for g in a.var_names]
    with pytest.raises(ValueError, match="organism='mouse'"):
        cf.pp.score_growth(mouse, organism="human")
    assert MOUSE_PROLIFERATION[0][0].isupper() and not MOUSE_PROLIFERATION[0].isupper()
    with pytest.raises(KeyError, match="layer='nope'"):
        cf.pp.score_growth(a, layer="nope")


# ---------------------------------------------------------------- the simulator


@pytest.fixture(scope="module")
def growth_course():
    import scanpy as sc

    a = cf.datasets.simulated_growth(n_cells_per_time=100, n_futures=8, random_state=1)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    cf.pp.score_growth(a, organism="human")
    sc.pp.pca(a, n_comps=10, random_state=0)
    return a


def test_the_simulator_samples_a_growing_branch_more_each_day(growth_course):
    o = growth_course.obs
    share_A = o[o.day >= 3].groupby("day")["branch"].apply(lambda b: (b == "A").mean())
    assert share_A.is_monotonic_increasing and share_A.iloc[-1] > 0.75
    day0 = o[o.day == 0]
    # ancestors split about evenly; their descendants are mostly A
    assert abs(day0["true_fate_A"].mean() - 0.5) < 0.1
    assert day0["true_fate_A_descendants"].mean() > 0.75
    rates = o.groupby("branch", observed=True)["true_growth_rate"].mean()
    assert rates["A"] > 0.5 and rates["B"] < -0.1 and abs(rates["progenitor"]) < 0.1
    size = growth_course.uns["simulation"]["population_size"]
    assert size[0] == 1.0 and size[-1] > 2


def test_gene_priors_on_the_simulator_rank_the_true_growth(growth_course):
    from scipy.stats import spearmanr

    o = growth_course.obs
    assert spearmanr(o["growth_prior"], o["true_growth_rate"])[0] > 0.7


def test_a_small_learned_run_recovers_the_sign_of_growth_per_branch(growth_course):
    a = growth_course.copy()
    m = cf.CellFlow(a, "day", growth="learned", seed=0)
    m.train(steps=400, progress=False)
    cf.tl.growth_rates(a, m)
    mean = a.obs.groupby("branch", observed=True)["growth_rate"].mean()
    assert mean["A"] > 0 > mean["B"], mean


def test_growth_corrects_the_ancestor_fates_that_proliferation_biases(growth_course):
    """Balanced OT sends almost every day-0 cell to the expanding branch A; with the gene prior
    the share of day-0 cells whose future is A moves towards the truth (about a half), while the
    descendant share stays with the later population."""
    a = growth_course.copy()
    shares = {}
    for growth in (None, "prior"):
        m = cf.CellFlow(a, "day", growth=growth, growth_key=growth and "growth_prior", seed=0)
        m.train(steps=400, progress=False)
        cf.tl.fates(a, m, "branch", t_from=0, t_to=5, overwrite=True)
        p = a.uns["fates_branch_params"]
        a_ = list(p["groups"]).index("A")
        shares[growth] = (p["ancestor_share"][a_], p["descendant_share"][a_])
    truth = a.obs.loc[a.obs.day == 0, "true_fate_A"].mean()
    assert shares[None][0] == pytest.approx(shares[None][1])  # no growth: one descendant each
    assert abs(shares["prior"][0] - truth) < abs(shares[None][0] - truth) - 0.2
    assert shares["prior"][1] > shares["prior"][0] + 0.2


# ---------------------------------------------------------------- tools and persistence


@pytest.fixture(scope="module")
def trained(growth_course):
    a = growth_course.copy()
    m = cf.CellFlow(a, "day", growth="learned", growth_key="growth_prior", seed=0)
    m.train(steps=60, progress=False)
    return a, m


def test_tools_carry_mass_and_say_what_they_wrote(trained, tmp_path):
    a, m = trained
    a = a.copy()
    cf.tl.fates(a, m, "branch", t_from=0, t_to=5)
    assert np.isnan(a.uns["fates_branch_params"]["eps"])  # "auto": the sharp landing with growth
    assert np.isfinite(a.obs.loc[a.obs.day == 0, "fates_branch_mass"]).all()
    assert a.obs.loc[a.obs.day != 0, "fates_branch_mass"].isna().all()
    cf.tl.growth_rates(a, m)
    assert a.uns["growth_rate_params"]["growth"] == "learned"
    cf.tl.push(a, m, {"day": 0}, t_from=0, t_to=5)
    assert a.obs.loc[a.obs.day == 5, "push"].sum() == pytest.approx(1.0)
    cf.tl.pull(a, m, {"branch": "A"}, t_from=0, t_to=5, normalize=True)
    assert a.obs.loc[a.obs.day == 0, "pull"].sum() == pytest.approx(1.0)
    pred = cf.tl.interpolate(a, m, 2.5, decode=False)
    assert pred.n_obs == 100 and pred.uns["cellflow_prediction"]["resampled_by_mass"]
    a.obsm["X_umap"] = a.obsm["X_pca"][:, :2]
    axes = cf.pl.growth(a, groupby="branch", show=False)
    assert len(axes) == 2
    a.write_h5ad(tmp_path / "a.h5ad")  # every result is h5ad-safe
    m.save(tmp_path / "model")
    back = cf.CellFlow.load(tmp_path / "model", a)
    X = a.obsm["X_pca"][:4]
    assert back.growth == "learned" and np.allclose(back.growth_rate(X, 1), m.growth_rate(X, 1))


def test_sb_cfm_grows_too(growth_course):
    """SB-CFM with growth: its own entropic pairs on mass-weighted sources, a score for the SDE,
    and mass along the ODE."""
    a = growth_course
    m = cf.CellFlow(a, "day", method="sb", whiten=True, growth="learned", seed=0)
    m.train(steps=30, progress=False)
    X = m.cells_at(1)[:20]
    Y, mass = m.push(X, 1, 3, return_mass=True)
    assert Y.shape == X.shape and (mass > 0).all()
    assert m.push(X, 1, 3, sde=True).shape == X.shape
    with pytest.raises(ValueError, match="sde=False"):
        m.push(X, 1, 3, sde=True, return_mass=True)


def test_predictions_are_drawn_in_proportion_to_mass(trained):
    """The cells a growth-aware model predicts are its pushed cells drawn by their masses: the
    share drawn from each pushed cell follows its share of the mass."""
    a, m = trained
    Y, mass = m.push(m.cells_at(2), 2, 3, return_mass=True)
    draws = m.predict(3, n_cells=20000, seed=0)
    _, idx = np.unique(draws, axis=0, return_inverse=True)
    counts = np.bincount(idx.ravel())
    want = np.sort(mass / mass.sum())
    assert np.allclose(np.sort(counts / counts.sum()), want[-len(counts) :], atol=2e-3)


def test_the_weighted_w1_weighs_the_predicted_cells():
    from cellflow.metrics import wasserstein

    x, y = np.array([[0.0], [4.0]]), np.array([[1.0], [1.0], [5.0]])
    assert wasserstein(x, y, p=1, x_weights=[1, 1]) == pytest.approx(wasserstein(x, y, p=1))
    # all the mass at 0: each target 1 or 5 away
    assert wasserstein(x, y, p=1, x_weights=[1, 0]) == pytest.approx((1 + 1 + 5) / 3)
    with pytest.raises(ValueError, match="x_weights"):
        wasserstein(x, y, p=1, x_weights=[1, np.nan])


def test_evaluate_and_fit_take_growth_on_the_command_line(growth_course, tmp_path):
    a = growth_course.copy()
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    args = f"fit {path} --out {out} --time-key day --growth learned --growth-key growth_prior "
    assert main((args + "--steps 20 --quiet --basis pca").split()) == 0
    b = ad.read_h5ad(out)
    assert np.isfinite(b.obs["growth_rate"]).all() and b.uns["cellflow"]["growth"] == "learned"
    table = tmp_path / "t.csv"
    args = f"evaluate {path} --out {table} --time-key day --growth prior --growth-key growth_prior "
    assert main((args + "--methods ot --seeds 0 --steps 20 --held-out 2 --quiet").split()) == 0
    df = pd.read_csv(table)
    assert list(df.method) == [
        "previous time point",
        "McCann OT interpolation",
        "OT-CFM + prior growth",
    ]
    assert (df.w1_mass > 0).all()
    assert (df.w1_mass[:2] == df.w1[:2]).all()


# ---------------------------------------------------------------- bad input


def test_bad_growth_settings_are_refused_with_the_fix(growth_course):
    a = growth_course
    with pytest.raises(KeyError, match="score_growth"):
        cf.CellFlow(a, "day", growth="prior", growth_key="nope")
    with pytest.raises(ValueError, match="needs growth_key"):
        cf.CellFlow(a, "day", growth="prior")
    with pytest.raises(ValueError, match="growth=None"):
        cf.CellFlow(a, "day", growth_key="growth_prior")
    with pytest.raises(ValueError, match="growth must be"):
        cf.CellFlow(a, "day", growth="sometimes")
    with pytest.raises(ValueError, match="one number"):
        cf.CellFlow(a, "day", growth="learned", tau_a=(0.9, 1.0))
    with pytest.raises(ValueError, match="min, max, centre, width"):
        cf.pp.score_growth(_marker_adata(), birth=(0.3, 1.7))
    for tau in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"tau_a must be in \(0, 1\]"):
            cf.CellFlow(a, "day", growth="learned", tau_a=tau)
    b = a.copy()
    b.obs["bad"] = b.obs["growth_prior"]
    b.obs.iloc[3, b.obs.columns.get_loc("bad")] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        cf.CellFlow(b, "day", growth="prior", growth_key="bad")
    b.obs["bad"] = "fast"
    with pytest.raises(ValueError, match="must hold numbers"):
        cf.CellFlow(b, "day", growth="prior", growth_key="bad")
    with pytest.raises(ValueError, match="OT-MFM"):
        cf.CellFlow(a, "day", growth="learned", method="mfm")


def test_mass_is_refused_where_there_is_none(growth_course):
    a = growth_course
    m = cf.CellFlow(a, "day")
    X = a.obsm["X_pca"][:2]
    with pytest.raises(ValueError, match="return_mass=True needs a growth-aware model"):
        m.push(X, 0, 1, return_mass=True)
    with pytest.raises(ValueError, match="no growth"):
        m.growth_rate(X, 0)
    with pytest.raises(ValueError, match="no growth"):
        cf.tl.growth_rates(a, m)
