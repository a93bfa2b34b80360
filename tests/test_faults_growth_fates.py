"""Bad input and faults, round 2 (issue #49): growth, label-free fates, driver genes and the
command-line options that came with them. Each test failed on the code before its fix: nothing
the user owns is overwritten without ``overwrite=True``, nothing that names an input is written,
and no setting is silently ignored or silently wrong.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from courses import course

import cellflow as cf
from cellflow import _io
from cellflow.cli import main as cli_main


def with_prior(a, rate=0.2, seed=0):
    a.obs["growth_prior"] = rate + 0.1 * np.random.default_rng(seed).normal(size=a.n_obs)
    return a


@pytest.fixture(scope="module")
def scored_counts():
    """A small simulated course, log-normalised, with genes the shipped sets name."""
    import scanpy as sc

    a = cf.datasets.simulated_growth(n_cells_per_time=30, random_state=0)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a


# ---------------------------------------------------------------- data loss
def test_evaluate_refuses_an_output_that_names_its_input(tmp_path, capsys):
    path = tmp_path / "data.h5ad"
    course().write_h5ad(path)
    before = path.read_bytes()
    for out in (path, tmp_path / "." / "data.h5ad"):
        rc = cli_main(
            ["evaluate", str(path), "--time-key", "day", "--out", str(out), "--overwrite"]
            + ["--methods", "icfm", "--seeds", "0", "--steps", "2", "--quiet"]
        )
        assert rc == 2 and "names the input" in capsys.readouterr().err
    assert path.read_bytes() == before
    # the settings file beside the table may not name it either
    settings = tmp_path / "t.settings.json"
    with pytest.raises(ValueError, match="names the input"):
        cf.cli._jobs.evaluate_h5ad(settings, tmp_path / "t.csv", time_key="day", overwrite=True)


def test_score_growth_never_replaces_the_users_columns(scored_counts):
    a = scored_counts.copy()
    a.obs["proliferation_score"] = 7.0
    with pytest.raises(ValueError, match=r"obs\['proliferation_score'\].*overwrite=True"):
        cf.pp.score_growth(a, organism="human")
    assert (a.obs["proliferation_score"] == 7.0).all() and "growth_prior" not in a.obs
    cf.pp.score_growth(a, organism="human", overwrite=True)
    assert not (a.obs["proliferation_score"] == 7.0).all()


def test_preprocess_keeps_an_existing_counts_layer(tmp_path, capsys):
    a = course()
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=rng.poisson(2.0, size=(a.n_obs, 40)).astype(np.float32), obs=a.obs)
    a.layers["counts"] = np.full(a.shape, 5.0, dtype=np.float32)  # the user's own
    path = tmp_path / "raw.h5ad"
    a.write_h5ad(path)
    rc = cli_main(
        ["fit", str(path), "--time-key", "day", "--out", str(tmp_path / "o.h5ad")]
        + ["--preprocess", "--steps", "2", "--quiet"]
    )
    assert rc == 2 and "layers['counts']" in capsys.readouterr().err
    assert not (tmp_path / "o.h5ad").exists()


def test_a_save_killed_between_its_renames_is_put_back(tmp_path, trained, monkeypatch):
    a, m = trained
    path = tmp_path / "m"
    m.save(path)
    real = os.replace

    def die_after_the_first_rename(src, dst):
        real(src, dst)
        if os.fspath(src) == os.fspath(path):  # the old model is aside, the new one not yet in
            raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "replace", die_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        m.save(path, overwrite=True)
    monkeypatch.setattr(_io.os, "replace", real)
    # the exception path cleaned its own temporary folder; the old model sits aside
    assert not path.exists()
    loaded = cf.CellFlow.load(path, a)  # the load puts it back
    assert path.is_dir() and loaded.n_pcs == m.n_pcs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]


def test_a_killed_writers_leftovers_are_removed_and_the_rerun_needs_no_overwrite(tmp_path):
    path = tmp_path / "x.h5ad"
    course().write_h5ad(path)
    out, model = tmp_path / "o.h5ad", tmp_path / "o_model"
    child = textwrap.dedent(f"""
        import os, h5py
        from cellflow.cli import main
        orig = h5py.Group.create_dataset
        def create_dataset(self, *a, **k):   # die while OUT.h5ad is written (the model is saved)
            out = orig(self, *a, **k)
            if "{out.stem}.tmp-" in self.file.filename:
                self.file.flush()
                os._exit(9)
            return out
        h5py.Group.create_dataset = create_dataset
        main(["fit", {str(path)!r}, "--time-key", "day", "--out", {str(out)!r},
              "--steps", "2", "--batch-size", "16", "--quiet"])
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert left and model.is_dir() and not out.exists()
    # the same command again: no --overwrite needed, and the leftover is gone
    rc = cli_main(
        ["fit", str(path), "--time-key", "day", "--out", str(out)]
        + ["--steps", "2", "--batch-size", "16", "--quiet"]
    )
    assert rc == 0 and out.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    live = tmp_path / f".t.tmp-{_io._host()}-{os.getppid()}-abc.csv"  # our parent is alive
    dead = tmp_path / f".t.tmp-{_io._host()}-999999999-abc.csv"
    live.write_text("x")
    dead.write_text("x")
    _io.write_text(tmp_path / "t.csv", "a")
    assert live.exists() and not dead.exists()


# ---------------------------------------------------------------- silent wrong results
def test_a_prior_per_day_read_per_hour_is_refused():
    a = with_prior(course(times=(0, 24, 48, 72)), rate=1.0)  # a rate per day, times in hours
    with pytest.raises(ValueError, match="time_unit='hour'"):
        cf.CellFlow(a, "day", growth="prior", growth_key="growth_prior")
    a.obs["growth_prior"] /= 24  # per hour: fine
    cf.CellFlow(a, "day", growth="prior", growth_key="growth_prior")


def test_score_growth_writes_rates_in_the_time_unit_asked(scored_counts):
    day = cf.pp.score_growth(scored_counts, organism="human", copy=True)
    hour = cf.pp.score_growth(scored_counts, organism="human", time_unit="hour", copy=True)
    np.testing.assert_allclose(hour.obs["growth_prior"] * 24, day.obs["growth_prior"])
    assert hour.uns["growth_prior_params"]["time_unit"] == "hour"
    with pytest.raises(ValueError, match="time_unit must be one of"):
        cf.pp.score_growth(scored_counts, organism="human", time_unit="hours", copy=True)


@pytest.mark.parametrize("growth", [None, "prior"])
def test_tau_a_where_it_does_nothing_is_refused(growth):
    a = with_prior(course())
    key = "growth_prior" if growth else None
    with pytest.raises(ValueError, match="growth='learned' only"):
        cf.CellFlow(a, "day", growth=growth, growth_key=key, tau_a=0.5)
    m = cf.CellFlow(a, "day", growth="learned", growth_key="growth_prior", tau_a=0.5)
    assert m.tau_a == 0.5
    assert cf.CellFlow(a, "day", growth="learned").tau_a == cf._defaults.GROWTH_TAU


def test_tau_a_on_the_command_line_needs_learned_growth(tmp_path, capsys):
    path = tmp_path / "x.h5ad"
    with_prior(course()).write_h5ad(path)
    for extra in (["--tau-a", "0.5"], ["--growth", "prior", "--growth-key", "growth_prior"] * 1):
        args = ["fit", str(path), "--time-key", "day", "--out", str(tmp_path / "o.h5ad")]
        args += extra + (["--tau-a", "0.5"] if "--growth" in extra else []) + ["--quiet"]
        with pytest.raises(SystemExit, match="--tau-a relaxes the plan of --growth learned"):
            cli_main(args)


def test_a_prior_scaled_to_zero_is_reported():
    a = course()
    # a prior that runs against the data: the first coordinate grows in every cell alike
    a.obs["growth_prior"] = 0.6 * np.sign(a.obsm["X_pca"][:, 1])
    m = cf.CellFlow(a, "day", growth="learned", growth_key="growth_prior", seed=0)
    with pytest.warns(UserWarning, match="ignores your prior"):
        m.train(steps=2, batch_size=16, progress=False)
    assert m.prior_scale == 0.0 and "prior_scale=0" in repr(m)
    cf.tl.growth_rates(a, m)
    assert a.uns["growth_rate_params"]["prior_scale"] == 0.0


def test_the_growth_prior_belongs_to_the_fingerprint(tmp_path):
    a = with_prior(course())
    m = cf.CellFlow(a, "day", growth="prior", growth_key="growth_prior", seed=0)
    m.train(steps=2, batch_size=16, progress=False)
    m.save(tmp_path / "m")
    b = a.copy()
    b.obs["growth_prior"] *= 2
    with pytest.raises(ValueError, match=r"growth prior obs\['growth_prior'\] differs"):
        cf.CellFlow.load(tmp_path / "m", b)
    with pytest.raises(ValueError, match=r"growth prior obs\['growth_prior'\] differs"):
        cf.tl.growth_rates(b, m)
    del b.obs["growth_prior"]
    with pytest.raises(ValueError, match="obs has no column 'growth_prior'"):
        cf.CellFlow.load(tmp_path / "m", b)
    cf.CellFlow.load(tmp_path / "m", a)  # the same data load


def test_resume_refuses_another_version_of_the_data(tmp_path):
    from cellflow.cli._jobs import evaluate_h5ad

    path, out = tmp_path / "x.h5ad", tmp_path / "t.csv"
    a = course()
    a.write_h5ad(path)
    kw = dict(time_key="day", methods=["icfm"], seeds=[0], steps=2, progress=False)
    evaluate_h5ad(path, out, **kw)
    a.obsm["X_pca"][:, 0] *= -1  # the PCA redone
    a.write_h5ad(path)
    with pytest.raises(ValueError, match="the data in the input file"):
        evaluate_h5ad(path, out, resume=True, **kw)


def test_resume_recomputes_a_row_cut_off_mid_write(tmp_path):
    from cellflow.cli._jobs import evaluate_h5ad

    path, out = tmp_path / "x.h5ad", tmp_path / "t.csv"
    course().write_h5ad(path)
    kw = dict(time_key="day", methods=["icfm"], seeds=[0], steps=2, progress=False)
    whole, _ = evaluate_h5ad(path, out, **kw)
    text = out.read_text().rstrip("\n").split("\n")
    cut = text[-1].split(",")[:4]  # the last row loses its w2, mmd and seconds
    out.write_text("\n".join(text[:-1] + [",".join(cut)]) + "\n")
    again, _ = evaluate_h5ad(path, out, resume=True, **kw)
    assert again[["w1", "w2", "mmd"]].notna().all().all() and len(again) == len(whole)


def test_group_names_with_a_slash_survive_an_h5ad_round_trip(tmp_path, trained):
    a, m = trained
    a = a.copy()
    last = a.obs["day"] == 3
    a.obs["kind"] = pd.Categorical(np.where(a.obsm["X_pca"][:, 1] > 0, "Ery/Mk", "Mono"))
    a.obs.loc[~last, "kind"] = np.nan
    cf.tl.fates(a, m, "kind", t_from=0, t_to=3)
    a.obs = a.obs.drop(columns="kind")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # obsm's column name: anndata's warning
        a.write_h5ad(tmp_path / "a.h5ad")
    p = ad.read_h5ad(tmp_path / "a.h5ad").uns["fates_kind_params"]
    assert list(p["groups"]) == ["Ery/Mk", "Mono"] and len(p["ancestor_share"]) == 2


def test_score_growth_warns_on_counts_and_on_few_genes(scored_counts):
    counts = cf.datasets.simulated_growth(n_cells_per_time=30, random_state=0)
    with pytest.warns(UserWarning, match="raw counts"):
        cf.pp.score_growth(counts, organism="human", copy=True)
    one = ["MKI67"] if "MKI67" in scored_counts.var_names else [scored_counts.var_names[0]]
    genes = one + ["NOT_A_GENE"] * 9
    with pytest.warns(UserWarning, match=r"only 1 of the 10 proliferation genes"):
        cf.pp.score_growth(scored_counts, proliferation_genes=genes, copy=True)


def test_score_growth_without_growth_is_refused_on_the_command_line(tmp_path):
    path = tmp_path / "x.h5ad"
    course().write_h5ad(path)
    with pytest.raises(SystemExit, match="--score-growth writes a growth prior"):
        cli_main(
            ["fit", str(path), "--time-key", "day", "--out", str(tmp_path / "o.h5ad")]
            + ["--score-growth", "human", "--quiet"]
        )


def test_terminal_states_skip_a_held_out_time_point():
    a = course(times=(0, 1, 2, 3, 4))
    m = cf.CellFlow(a, "day", seed=0)
    m.train(steps=5, batch_size=16, holdout=3, progress=False)
    seen = []
    real = m.transition_matrix

    def spy(t_from, t_to, **kw):
        seen.append((float(t_from), float(t_to)))
        return real(t_from, t_to, **kw)

    m.transition_matrix = spy
    cf.tl.terminal_states(a, m, n_states=2, min_stability=0.01)
    assert 3.0 not in {t for pair in seen for t in pair}


def test_backward_fates_are_refused(trained):
    a, m = trained
    with pytest.raises(ValueError, match="t_from=3 is after t_to=0"):
        cf.tl.fates(a.copy(), m, "day", t_from=3, t_to=0)


def test_terminal_states_of_another_model_are_not_reused(trained):
    a, m = trained
    a = a.copy()
    cf.tl.terminal_states(a, m, n_states=2, min_stability=0.01)
    other = cf.CellFlow(a, "day", seed=1)
    other.train(steps=20, batch_size=32, progress=False)
    with pytest.raises(ValueError, match="found with another model"):
        cf.tl.fates(a, other)
    cf.tl.fates(a, m)  # the model that found them uses them


def test_driver_genes_refuse_a_single_certain_fate_and_keep_lineage_names():
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=rng.normal(size=(30, 5)))
    a.obsm["one"] = pd.DataFrame({"A": np.ones(30)}, index=a.obs_names)
    with pytest.raises(ValueError, match="single fate is certain"):
        cf.tl.driver_genes(a, "one")

    class Lineage(np.ndarray):  # CellRank's Lineage: an array that carries its names
        names = np.array(["Ery/Mk", "Mono"])

    p = rng.uniform(size=30)
    a.obsm["lin"] = np.c_[p, 1 - p].view(Lineage)
    table = cf.tl.driver_genes(a, "lin")
    assert set(table["fate"]) == {"Ery/Mk", "Mono"}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, m: m.bootstrap(2.7), "n_models must be a whole number"),
        (lambda a, m: cf.tl.terminal_states(a.copy(), m, n_states=2.7), "n_states must be a whole"),
    ],
)
def test_fractional_counts_are_refused_not_truncated(trained, call, match):
    with pytest.raises(ValueError, match=match):
        call(*trained)


# ---------------------------------------------------------------- crashes, unclear messages
def test_views_are_accepted_everywhere(tmp_path):
    a = course(times=(0, 1, 2, 3, 4))
    v = a[a.obs["day"] < 4]
    m = cf.CellFlow(v, "day", seed=0)
    m.train(steps=3, batch_size=16, progress=False)
    cf.tl.fates(v.copy(), m, "day", t_from=0, t_to=3)
    m.save(tmp_path / "m")
    cf.CellFlow.load(tmp_path / "m", v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata: a view written to becomes a copy
        cf.tl.velocity(v, m)


def test_a_growth_model_can_be_overwritten(tmp_path):
    a = with_prior(course())
    m = cf.CellFlow(a, "day", growth="prior", growth_key="growth_prior", seed=0)
    m.train(steps=2, batch_size=16, progress=False)
    m.save(tmp_path / "m")
    m.save(tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "growth.pt").exists()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda a, m: cf.CellFlow(a, "day", growth="learned", tau_a="0.5"),
            ValueError,
            "not the string",
        ),
        (lambda a, m: cf.tl.fates(a.copy(), m, n_samples=2.0), ValueError, "whole number"),
        (lambda a, m: cf.tl.fates(a.copy(), m, "day", k=0), ValueError, "k must be at least 1"),
        (lambda a, m: cf.pl.fates(np.zeros((3, 2))), TypeError, "must be an AnnData"),
        (lambda a, m: cf.datasets.simulated_growth(0), ValueError, "n_cells_per_time"),
    ],
)
def test_unclear_messages_name_the_argument(trained, call, error, match):
    with pytest.raises(error, match=match):
        call(*trained)


def test_tau_a_as_a_numpy_float_is_a_number():
    a = course()
    assert cf.CellFlow(a, "day", growth="learned", tau_a=np.float32(0.5)).tau_a == 0.5


def test_driver_genes_name_a_missing_gene_symbols_column():
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=rng.normal(size=(30, 5)))
    p = rng.uniform(size=30)
    a.obsm["f"] = pd.DataFrame({"A": p, "B": 1 - p}, index=a.obs_names)
    with pytest.raises(KeyError, match="gene_symbols='symbol' is not a column"):
        cf.tl.driver_genes(a, "f", gene_symbols="symbol")


def test_score_growth_on_a_backed_anndata_says_what_to_do(tmp_path, scored_counts):
    scored_counts.write_h5ad(tmp_path / "s.h5ad")
    b = ad.read_h5ad(tmp_path / "s.h5ad", backed="r")
    with pytest.raises(ValueError, match="to_memory"):
        cf.pp.score_growth(b, organism="human")


def test_an_empty_image_tensor_is_named():
    import torch

    from cellflow.images import ImageFlow

    flow = ImageFlow((1, 8, 8), n_classes=2, network={"channels": 8}, seed=0)
    with pytest.raises(ValueError, match="images is empty"):
        flow.train(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), steps=1)


def test_a_refused_image_file_is_one_line_on_the_command_line(tmp_path, capsys):
    import torch

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "images.pt"
    torch.save({"images": Evil()}, evil)
    rc = cli_main(["train", "images", "--dataset", str(evil), "--out", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert rc == 2 and "ran" not in out.out
    assert out.err.startswith("cellflow: error:") and "Traceback" not in out.err


def test_a_hand_edited_config_warns(tmp_path, trained):
    a, m = trained
    m.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["sigma"] = 0.5
    cfg_path.write_text(json.dumps(cfg, indent=2))
    with pytest.warns(UserWarning, match="edited after the model was saved"):
        loaded = cf.CellFlow.load(tmp_path / "m", a)
    assert loaded.sigma == 0.5


def test_time_points_almost_together_warn_in_real_time():
    a = course(times=(0, 1e-6, 1, 2))
    with pytest.warns(UserWarning, match="Merge them if they are one sample"):
        cf.CellFlow(a, "day", time_scale="real")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cf.CellFlow(a, "day")  # one model unit per interval: nothing to warn about


def test_written_files_follow_the_users_umask(tmp_path, trained):
    """Issue #52: files the command line wrote were 0600 (a temporary file's mode)."""
    a, m = trained
    before = os.umask(0o022)
    try:
        _io.write_text(tmp_path / "t.csv", "a")
        m.save(tmp_path / "m")
    finally:
        os.umask(before)
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m" / "config.json").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- gene symbols (issue #52)
def _by_ids(a):
    """``a`` with var_names replaced by made-up Ensembl-like IDs, the symbols in var['symbol']."""
    a = a.copy()
    a.var["symbol"] = a.var_names.astype(str)
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    return a


def test_score_growth_reads_symbols_from_the_command_line(tmp_path, scored_counts):
    a = _by_ids(scored_counts)
    a.obsm["X_pca"] = np.asarray(a.X[:, :5].toarray() if hasattr(a.X, "toarray") else a.X[:, :5])
    path = tmp_path / "ids.h5ad"
    a.write_h5ad(path)
    base = ["fit", str(path), "--time-key", "day", "--steps", "2", "--batch-size", "16"]
    base += ["--growth", "prior", "--score-growth", "human", "--quiet", "--no-velocity"]
    with pytest.raises(ValueError, match="--gene-symbols"):
        cf.cli._jobs.fit_h5ad(
            path,
            tmp_path / "x.h5ad",
            time_key="day",
            steps=2,
            score_growth="human",
            growth="prior",
            growth_key="growth_prior",
            progress=False,
            velocity=False,
        )
    assert cli_main(base + ["--out", str(tmp_path / "o.h5ad"), "--gene-symbols", "symbol"]) == 0
    assert "growth_prior" in ad.read_h5ad(tmp_path / "o.h5ad").obs


def test_gene_trends_and_the_driver_plot_take_gene_symbols(scored_counts):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    a = _by_ids(scored_counts)
    sc.pp.pca(a, n_comps=5)
    m = cf.CellFlow(a, "day", seed=0)
    m.train(steps=2, batch_size=16, progress=False)
    some = list(a.var["symbol"][:3])
    cf.tl.gene_trends(a, m, some, t_from=0, t_to=1, gene_symbols="symbol", n_cells=20)
    assert list(a.uns["gene_trends"]["genes"]) == some
    with pytest.raises(KeyError, match=r"genes not in adata.var\['symbol'\]"):
        cf.tl.gene_trends(a, m, ["NOPE"], t_from=0, t_to=1, gene_symbols="symbol", overwrite=True)
    p = np.random.default_rng(0).uniform(size=a.n_obs)
    a.obsm["f"] = pd.DataFrame({"A": p, "B": 1 - p}, index=a.obs_names)
    cf.tl.driver_genes(a, "f", gene_symbols="symbol")
    (ax, _) = cf.pl.driver_genes(a, n_genes=3, gene_symbols="symbol", show=False)
    shown = {t.get_text().rstrip(" *") for t in ax.get_yticklabels()}
    assert shown <= set(a.var["symbol"]) and not any(s.startswith("ENSG") for s in shown)


def test_ctrl_c_in_evaluate_says_how_to_continue(tmp_path, capsys, monkeypatch):
    """Issue #52: Ctrl-C printed a 14-frame traceback that did not mention --resume."""
    import cellflow.evaluate as ev

    path, out = tmp_path / "x.h5ad", tmp_path / "t.csv"
    course().write_h5ad(path)
    real, calls = ev.CellFlow.train, []

    def train(self, *a, **k):  # the second model is interrupted (not the time estimate's)
        import inspect

        if not any(f.function == "_estimate_seconds" for f in inspect.stack()):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(ev.CellFlow, "train", train)
    args = ["evaluate", str(path), "--time-key", "day", "--out", str(out), "--quiet"]
    args += ["--methods", "icfm", "--seeds", "0", "1", "--steps", "2"]
    assert cli_main(args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().endswith("--resume")
    done = pd.read_csv(out)
    assert (done["seed"] == 0).any() and not (done["seed"] == 1).any()
    monkeypatch.setattr(ev.CellFlow, "train", real)
    assert cli_main(args + ["--resume"]) == 0
    assert set(pd.read_csv(out)["seed"]) == {0, 1}


def test_evaluate_warns_when_a_flow_is_no_better_than_the_previous_time_point():
    """Issue #52: a default model on a real course was no better than the nearest time point
    (W1 38.43 vs 38.56) without a word."""
    a = course(times=(0, 1, 2, 3))
    a.obsm["X_pca"][:, 0] -= np.repeat(np.arange(4), 40)  # no motion: every day the same cloud
    with pytest.warns(UserWarning, match="no better than the previous time point"):
        cf.evaluate_holdout(a, "day", methods=["icfm"], seeds=[0], steps=20, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        b = course(times=(0, 1, 2, 3))
        b.obsm["X_pca"][:, 0] *= 4  # a clear drift the flow follows
        cf.evaluate_holdout(b, "day", methods=["ot"], seeds=[0], steps=300, progress=False)


@pytest.mark.parametrize("method", ["mfm", "OT-MFM", "metric"])
def test_growth_is_refused_for_ot_mfm_by_any_of_its_names(method):
    # issue #53: the guard compared the raw string with "mfm", so "OT-MFM" trained with growth
    a = course()
    a.obs["g"] = 0.1
    with pytest.raises(ValueError, match="growth is not available for OT-MFM"):
        cf.CellFlow(a, "day", method=method, growth="prior", growth_key="g")
    with pytest.raises(ValueError, match="growth is not available for OT-MFM"):
        cf.evaluate_holdout(
            a, "day", methods=["ot", method], growth="prior", growth_key="g", steps=2
        )


def test_the_old_name_tau_still_works_with_a_warning(tmp_path):
    """``tau`` (before 0.1.1) is ``tau_a`` now: the argument and the attribute warn and mean the
    same; a folder saved with ``"tau"`` in its config loads with that relaxation; both at once are
    refused."""
    import json

    a = with_prior(course())
    with pytest.warns(FutureWarning, match="tau is now tau_a"):
        m = cf.CellFlow(a, "day", growth="learned", growth_key="growth_prior", tau=0.6)
    assert m.tau_a == 0.6
    with pytest.warns(FutureWarning, match="CellFlow.tau is now CellFlow.tau_a"):
        assert m.tau == 0.6
    with pytest.raises(ValueError, match="give tau_a only"):
        cf.CellFlow(a, "day", growth="learned", tau=0.6, tau_a=0.7)
    m.train(steps=2, batch_size=16, progress=False)
    m.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["tau"] = cfg.pop("tau_a")  # as a folder saved before the rename holds it
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    assert cf.CellFlow.load(tmp_path / "m", a).tau_a == 0.6
