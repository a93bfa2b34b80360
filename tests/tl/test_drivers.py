"""Driver genes (#42): correlations, p-values, intervals and q-values against scipy and hand
computations; the CellRank layout; bad input."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cellflow as cf
from cellflow.tl._drivers import benjamini_hochberg


def _adata(n=120, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    X = np.column_stack(
        [p + rng.normal(0, 0.2, n), -p + rng.normal(0, 0.5, n), rng.normal(size=n), np.exp(3 * p)]
    )
    a = ad.AnnData(X=X, var=pd.DataFrame(index=["up", "down", "noise", "monotone"]))
    F = pd.DataFrame({"A": p, "B": 1 - p}, index=a.obs_names)
    F.iloc[:10] = np.nan  # cells at another time
    a.obsm["fates"] = F
    return a, p


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlations_and_p_values_are_scipys(method):
    a, p = _adata()
    table = cf.tl.driver_genes(a, "fates", method=method)
    fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    for g in range(a.n_vars):
        want = fn(a.X[10:, g], p[10:])
        row = table[(table.fate == "A") & (table.gene == a.var_names[g])].iloc[0]
        assert row["corr"] == pytest.approx(want[0], abs=1e-10)
        assert row["pval"] == pytest.approx(want[1], rel=1e-6, abs=1e-300)
    # B = 1 - A: the same genes, the opposite sign
    assert np.allclose(a.var["A_corr"], -a.var["B_corr"])


def test_spearman_sees_a_monotone_gene_as_perfect():
    a, _ = _adata()
    cf.tl.driver_genes(a, "fates")
    assert a.var.loc["monotone", "A_corr"] == pytest.approx(1.0)


def test_fisher_interval_by_hand():
    a, p = _adata()
    table = cf.tl.driver_genes(a, "fates", method="pearson", confidence=0.9)
    row = table[(table.fate == "A") & (table.gene == "up")].iloc[0]
    n = 110
    z = np.arctanh(row["corr"])
    half = stats.norm.ppf(0.95) / np.sqrt(n - 3)
    assert row["ci_low"] == pytest.approx(np.tanh(z - half))
    assert row["ci_high"] == pytest.approx(np.tanh(z + half))
    assert row["ci_low"] < row["corr"] < row["ci_high"]


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 (m = 4): 0.04, 0.06, 0.0533, 0.20 → monotone from the top
    want = np.array([0.04, 0.0533333, 0.0533333, 0.20, np.nan])
    assert np.allclose(benjamini_hochberg(p), want, equal_nan=True)


def test_the_table_ranks_drivers_and_the_layout_is_cellranks():
    a, _ = _adata()
    table = cf.tl.driver_genes(a, "fates")
    top = table[table.fate == "A"].iloc[0]
    assert top.gene in ("up", "monotone") and top["rank"] == 1
    for s in ("corr", "pval", "qval", "ci_low", "ci_high"):
        assert f"A_{s}" in a.var and f"B_{s}" in a.var
    with pytest.raises(ValueError, match="overwrite=True"):
        cf.tl.driver_genes(a, "fates")
    b = a.copy()
    b.layers["other"] = b.X * 2
    cf.tl.driver_genes(b, "fates", layer="other", key_added="x")
    assert np.allclose(b.var["x_A_corr"], b.var["A_corr"])


def test_bad_fates_and_layers_are_refused():
    a, _ = _adata()
    with pytest.raises(KeyError, match="cf.tl.fates"):
        cf.tl.driver_genes(a, "nope")
    with pytest.raises(KeyError, match="layer='nope'"):
        cf.tl.driver_genes(a, "fates", layer="nope")
    b = a.copy()
    b.obsm["fates"] = a.obsm["fates"] * 1.5
    with pytest.raises(ValueError, match="do not sum to 1"):
        cf.tl.driver_genes(b, "fates")
    c = a.copy()
    F = a.obsm["fates"].copy()
    F.iloc[20, 0] = np.nan
    c.obsm["fates"] = F
    with pytest.raises(ValueError, match="holds NaN in 1 cells"):
        cf.tl.driver_genes(c, "fates")
    few = np.zeros(a.n_obs, dtype=bool)
    few[10:12] = True
    with pytest.raises(ValueError, match="at least 3"):
        cf.tl.driver_genes(a, "fates", cells=few)
    with pytest.raises(KeyError, match="not fates"):
        cf.tl.driver_genes(a, "fates", groups=["C"])


def test_the_plot_draws_each_fates_top_genes():
    import matplotlib

    matplotlib.use("Agg")
    a, _ = _adata()
    with pytest.raises(KeyError, match="driver_genes"):
        cf.pl.driver_genes(a, show=False)
    cf.tl.driver_genes(a, "fates")
    axes = cf.pl.driver_genes(a, n_genes=3, show=False)
    assert len(axes) == 2 and len(axes[0].patches) == 3
