"""The command line: ``cellflow fit`` and ``cellflow evaluate`` end to end on a tiny file, help
texts, and bad input answered with a message and exit status 2."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellflow import CellFlow
from cellflow.cli import main


def cli(*parts) -> int:
    """``main`` on a command written as text: each string part is split at spaces, any other
    part (a path) is one argument."""
    return main([w for p in parts for w in (p.split() if isinstance(p, str) else [str(p)])])


def drifting_cells(n: int, seed: int) -> ad.AnnData:
    """Days 0-3, ``n`` cells each, spread 0.3, drifting +1 per day along the first of 3 axes."""
    rng = np.random.default_rng(seed)
    t = np.repeat([0, 1, 2, 3], n)
    X = rng.normal(scale=0.3, size=(len(t), 3))
    X[:, 0] += t
    a = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]))
    a.obsm["X_pca"] = X
    return a


@pytest.fixture()
def h5ad(tmp_path):
    a = drifting_cells(60, seed=0)
    a.obsm["X_umap"] = a.obsm["X_pca"][:, :2].copy()
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    return path


def test_fit_writes_velocities_and_model(h5ad, tmp_path):
    out = tmp_path / "out.h5ad"
    assert (
        cli(
            "fit", str(h5ad), "--time-key day --out", str(out), "--steps 30 --batch-size 32 --quiet"
        )
        == 0
    )
    b = ad.read_h5ad(out)
    assert b.obsm["velocity_pca"].shape == (240, 3) and b.obsm["velocity_umap"].shape == (240, 2)
    assert (tmp_path / "out_model" / "model.pt").exists()
    assert (
        cli("fit", str(h5ad), "--time-key day --out", str(out), "--steps 5 --quiet") == 2
    )  # exists
    per = tmp_path / "per.h5ad"
    assert (
        cli(
            "fit",
            str(h5ad),
            "--time-key day --out",
            str(per),
            "--steps 5 --batch-size 16 --per-interval --quiet",
        )
        == 0
    )
    assert ad.read_h5ad(per).uns["cellflow"]["per_interval"]
    model = CellFlow.load(tmp_path / "per_model", ad.read_h5ad(h5ad))
    assert model.per_interval and model.net.config["knots"] == [0.0, 1.0, 2.0, 3.0]


def test_fit_preprocess_starts_from_raw_counts(tmp_path, capsys):
    """``--preprocess`` runs scanpy's standard steps on the counts in X and records them; without
    it a file with no PCA gets a command-line answer; processed values are refused, never
    normalised twice; ``--no-gene-velocity`` leaves out the dense genes layer."""
    import cellflow as cf

    raw = tmp_path / "raw.h5ad"
    a = cf.datasets.simulated_differentiation(n_cells_per_time=40, random_state=0)
    counts = a.X.copy()
    a.write_h5ad(raw)
    out = tmp_path / "out.h5ad"
    base = ["fit", str(raw), "--time-key", "day", "--steps", "5", "--batch-size", "16", "--quiet"]
    assert cli(*base, "--out", str(out)) == 2
    assert "add --preprocess to compute it from the raw counts in X" in capsys.readouterr().err
    assert cli(*base, "--out", str(out), "--preprocess") == 0
    b = ad.read_h5ad(out)
    p = b.uns["cellflow"]["preprocess"]
    assert list(p["steps"]) == ["normalize_total", "log1p", "highly_variable_genes", "pca"]
    assert (
        b.obsm["X_pca"].shape[1] == p["n_comps"]
        and b.var["highly_variable"].sum() == p["n_top_genes"]
    )
    np.testing.assert_array_equal(np.asarray(b.layers["counts"]), np.asarray(counts))
    assert np.allclose(
        np.expm1(b.X).sum(1), np.median(np.asarray(counts).sum(1))
    )  # normalised, then log1p
    assert b.layers["velocity"].shape == b.shape
    assert b.uns["velocity_params"]["unit"] == (
        "X_pca units per interval between consecutive time points of obs['day']"
    )
    again = tmp_path / "again.h5ad"
    assert cli(*base[:1], str(out), *base[2:], "--out", str(again), "--preprocess") == 2
    assert "already holds obsm['X_pca']; drop --preprocess" in capsys.readouterr().err
    del b.obsm["X_pca"]
    b.write_h5ad(again)
    assert (
        cli(*base[:1], str(again), *base[2:], "--out", str(tmp_path / "x.h5ad"), "--preprocess")
        == 2
    )
    err = capsys.readouterr().err  # issue #52: the kind the file looks like, and the way on
    assert "X looks like log-normalised values; use --preprocess log" in err
    import scanpy as sc

    lg = ad.read_h5ad(raw)
    sc.pp.normalize_total(lg)
    sc.pp.log1p(lg)
    lg.write_h5ad(tmp_path / "lg.h5ad")
    logged = tmp_path / "logged.h5ad"
    assert (
        cli(
            *base[:1],
            str(tmp_path / "lg.h5ad"),
            *base[2:],
            "--out",
            str(logged),
            "--preprocess log",
        )
        == 0
    )
    assert list(ad.read_h5ad(logged).uns["cellflow"]["preprocess"]["steps"]) == [
        "highly_variable_genes",
        "pca",
    ]
    tpm = ad.read_h5ad(raw)
    tpm.X = np.asarray(tpm.X, dtype=np.float64) / np.asarray(tpm.X).sum(1, keepdims=True) * 1e6
    tpm.write_h5ad(tmp_path / "tpm.h5ad")
    tpm_out = tmp_path / "tpm_out.h5ad"
    assert (
        cli(*base[:1], str(tmp_path / "tpm.h5ad"), *base[2:], "--out", str(tpm_out), "--preprocess")
        == 2
    )
    assert "use --preprocess normalised" in capsys.readouterr().err
    args = ["--out", str(tpm_out), "--preprocess normalised"]
    assert cli(*base[:1], str(tmp_path / "tpm.h5ad"), *base[2:], *args) == 0
    t = ad.read_h5ad(tpm_out)
    np.testing.assert_allclose(t.layers["normalised"], tpm.X)
    np.testing.assert_allclose(t.X, np.log1p(tpm.X), rtol=1e-6)
    slim = tmp_path / "slim.h5ad"
    assert cli(*base, "--out", str(slim), "--preprocess --no-gene-velocity") == 0
    s = ad.read_h5ad(slim)
    assert "velocity" not in s.layers and s.obsm["velocity_pca"].shape == s.obsm["X_pca"].shape


def test_evaluate_writes_a_tidy_table(h5ad, tmp_path, capsys):
    out = tmp_path / "t.csv"
    rc = cli(
        "evaluate",
        str(h5ad),
        "--time-key day --out",
        str(out),
        "--methods ot icfm mfm --seeds 0 --n-pcs 2 --steps 20 --batch-size 32 --quiet",
    )
    assert rc == 0
    df = pd.read_csv(out)
    assert {"method", "held_out_time", "seed", "w1", "w2", "mmd", "seconds"} <= set(df.columns)
    assert set(df.held_out_time) == {1.0, 2.0}
    printed = capsys.readouterr().out
    assert "OT-CFM" in printed and set(df.method) >= {"OT-CFM", "I-CFM", "OT-MFM"}
    assert "held out 1  OT-CFM  seed 0: W1" in printed  # one line per model, even with --quiet
    out2 = tmp_path / "f.csv"
    assert (
        cli(
            "evaluate",
            str(h5ad),
            "--time-key day --out",
            str(out2),
            "--methods ot --seeds 0 --n-pcs 2 --steps 20 --batch-size 32 --held-out 1 --fractions "
            "0.25 0.5 --quiet",
        )
        == 0
    )
    f = pd.read_csv(out2).set_index("method")
    assert (
        f.loc["OT-CFM", "best_fraction"] in (0.25, 0.5)
        and "best fraction" in capsys.readouterr().out
    )


def test_evaluate_prints_its_plan_keeps_finished_rows_and_resumes(
    h5ad, tmp_path, monkeypatch, capsys
):
    """The plan (models, steps, an estimate) comes before any model trains; a run stopped after
    its second model leaves those rows in the CSV; --resume trains only what is missing and ends
    with the table an unbroken run writes; other settings are refused."""
    import cellflow.models.cells as cellflow_module

    args = [
        "evaluate",
        str(h5ad),
        "--time-key",
        "day",
        "--methods",
        "ot",
        "icfm",
        "--seeds",
        "0",
        "1",
        "--held-out",
        "1",
        "--n-pcs",
        "2",
        "--steps",
        "15",
        "--batch-size",
        "16",
        "--quiet",
    ]
    whole = tmp_path / "whole.csv"
    assert cli(*args, "--out", str(whole)) == 0
    printed = capsys.readouterr().out
    plan = printed.splitlines()[0]
    assert plan.startswith(
        "plan: 4 models of 15 steps each (2 OT-CFM, 2 I-CFM), held out: 1; about "
    )
    assert printed.count("seed ") == 4

    out = tmp_path / "t.csv"
    trained, real_train = [], cellflow_module.CellFlow.train

    def train_then_stop(self, *a, **kw):
        if kw.get("steps") == 15:  # the models themselves, not the plan's short timing runs
            if len(trained) == 2:
                raise KeyboardInterrupt
            trained.append(self.seed)
        return real_train(self, *a, **kw)

    monkeypatch.setattr(cellflow_module.CellFlow, "train", train_then_stop)
    assert cli(*args, "--out", str(out)) == 130  # Ctrl-C: 128 + SIGINT, and how to continue
    assert capsys.readouterr().err.rstrip().endswith("--resume")
    kept = pd.read_csv(out)
    assert list(kept.method) == [
        "previous time point",
        "McCann OT interpolation",
        "OT-CFM",
        "OT-CFM",
    ]
    assert (tmp_path / "t.settings.json").exists()
    monkeypatch.undo()
    capsys.readouterr()

    assert cli(*args, "--out", str(out)) == 2  # neither --overwrite nor --resume
    assert "--overwrite to replace it, or --resume to continue" in capsys.readouterr().err
    assert cli(*args, "--out", str(out), "--resume") == 0
    printed = capsys.readouterr().out
    assert printed.startswith("plan: 2 models (2 done earlier) of 15 steps each (2 I-CFM)")
    assert printed.count("seed ") == 2
    resumed = pd.read_csv(out)
    pd.testing.assert_frame_equal(
        resumed.drop(columns="seconds"), pd.read_csv(whole).drop(columns="seconds")
    )
    steps = args.index("--steps") + 1
    assert cli(*args[:steps], "30", *args[steps + 1 :], "--out", str(out), "--resume") == 2
    assert "other settings (steps: 15 then, 30 now)" in capsys.readouterr().err


def test_help_shows_every_default(capsys):
    """``--help`` ends each option with its default (argparse's ArgumentDefaultsHelpFormatter)."""
    with pytest.raises(SystemExit):
        cli("evaluate --help")
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: ot sb icfm)",
        "(default: 0 1 2 3 4)",
        "(default: 2000)",
        "(default: X_pca)",
        "(default: 512, or the smallest",
        "(default: 4000)",
    ):
        assert shown in text, shown


def test_evaluate_takes_five_pcs_or_every_column_of_a_narrower_representation(
    h5ad, tmp_path, monkeypatch, capsys
):
    """Without --n-pcs, a 2-D layout is evaluated on its 2 columns instead of failing on the paper's
    5; an explicit --n-pcs beyond the representation still stops with the fix."""
    import cellflow.evaluate

    a = ad.read_h5ad(h5ad)
    a.obsm["X_wide"] = np.hstack([a.obsm["X_pca"]] * 3)
    a.write_h5ad(h5ad)
    seen = []

    class Recorded(cellflow.evaluate.CellFlow):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen[-1].add(self.n_pcs)

    monkeypatch.setattr(cellflow.evaluate, "CellFlow", Recorded)
    for rep in ("X_umap", "X_pca", "X_wide"):
        seen.append(set())
        assert (
            cli(
                "evaluate",
                str(h5ad),
                "--time-key day --out",
                str(tmp_path / f"{rep}.csv"),
                "--use-rep",
                rep,
                "--methods icfm --seeds 0 --steps 1 --batch-size 8 --held-out 1 --quiet",
            )
            == 0
        )
    assert seen == [{2}, {3}, {5}]  # all 2 and 3 columns, the paper's 5 of 9
    monkeypatch.undo()
    out = tmp_path / "umap.csv"
    assert (
        cli(
            "evaluate",
            str(h5ad),
            "--time-key day --out",
            str(out),
            "--use-rep X_umap --methods icfm --seeds 0 --steps 5 --batch-size 16 --held-out 1 "
            "--quiet",
        )
        == 0
    )
    assert set(pd.read_csv(out).method) == {
        "I-CFM",
        "previous time point",
        "McCann OT interpolation",
    }
    capsys.readouterr()
    assert (
        cli(
            "evaluate",
            str(h5ad),
            "--time-key day --out",
            str(tmp_path / "e.csv"),
            "--use-rep X_umap --n-pcs 5 --quiet",
        )
        == 2
    )
    assert "n_pcs=5 but adata.obsm['X_umap'] has 2 columns" in capsys.readouterr().err


def test_metric_eps_reaches_ot_mfm_metrics(h5ad, tmp_path, monkeypatch):
    from cellflow.flow.geodesics import RBFMetric

    seen, fit = [], RBFMetric.fit.__func__
    monkeypatch.setattr(
        RBFMetric,
        "fit",
        classmethod(lambda cls, X, **kw: seen.append(kw["eps"]) or fit(cls, X, **kw)),
    )
    out = tmp_path / "out.h5ad"
    assert (
        cli(
            "fit",
            str(h5ad),
            "--time-key day --out",
            str(out),
            "--method mfm --metric-eps 0.1 --steps 10 --batch-size 32 --no-velocity --quiet",
        )
        == 0
    )
    assert seen == [0.1] * 3  # one metric per pair of consecutive days: 0-1, 1-2, 2-3
    seen.clear()
    assert (
        cli(
            "evaluate",
            str(h5ad),
            "--time-key day --out",
            str(tmp_path / "t.csv"),
            "--methods mfm --metric-eps 0.3 --time-scale real --seeds 0 --n-pcs 2 --steps 10 "
            "--batch-size 32 --quiet",
        )
        == 0
    )
    assert (
        seen == [0.3] * 8
    )  # the plan's two timing runs and days 1 and 2 held out in turn: two pairs per model


def test_metric_land_and_its_gamma_reach_ot_mfm(h5ad, tmp_path, monkeypatch):
    from cellflow.flow.riemannian_metrics import LANDMetric

    seen, fit = [], LANDMetric.fit.__func__
    monkeypatch.setattr(
        LANDMetric,
        "fit",
        classmethod(
            lambda cls, X, **kw: seen.append((kw["gamma"], kw["eps"])) or fit(cls, X, **kw)
        ),
    )
    out = tmp_path / "out.h5ad"
    assert (
        cli(
            "fit",
            str(h5ad),
            "--time-key day --out",
            str(out),
            "--method mfm --metric land --metric-gamma 0.7 --metric-eps 0.2 --steps 10 "
            "--batch-size 32 --no-velocity --quiet",
        )
        == 0
    )
    assert seen == [(0.7, 0.2)] * 3
    with pytest.raises(SystemExit, match="add --metric land"):
        cli(
            "fit",
            str(h5ad),
            "--time-key day --out",
            str(out),
            "--method mfm --metric-gamma 0.7 --overwrite --steps 10 --quiet",
        )


def test_whiten_reads_the_same_on_every_command_and_gamma_takes_auto():
    """``--whiten`` and ``--no-whiten`` both parse on fit, evaluate and bench velocity (each keeps
    its default: fit off, the paper's protocol on); ``--metric-gamma`` is a number or ``auto``."""
    from cellflow.cli import build_parser

    parse = build_parser().parse_args
    common = ["IN.h5ad", "--time-key", "day", "--out", "o"]
    assert (
        parse(["fit", *common]).whiten is False
        and parse(["fit", *common, "--whiten"]).whiten is True
    )
    assert (
        parse(["evaluate", *common]).whiten is True
        and parse(["evaluate", *common, "--no-whiten"]).whiten is False
    )
    assert parse(["evaluate", *common, "--whiten"]).whiten is True
    assert (
        parse(
            ["bench", "velocity", "IN.h5ad", "--time-key", "day", "--reference", "v", "--no-whiten"]
        ).whiten
        is False
    )
    assert (
        parse(["evaluate", *common, "--metric", "land", "--metric-gamma", "auto"]).metric_gamma
        == "auto"
    )
    assert parse(["fit", *common, "--metric", "land", "--metric-gamma", "0.4"]).metric_gamma == 0.4
    with pytest.raises(SystemExit):
        parse(["fit", *common, "--metric", "land", "--metric-gamma", "wide"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--time-key", "nope"], "time_key 'nope' is not a column"),
        (["--time-key", "day", "--use-rep", "X_nope"], "use_rep 'X_nope' is not in adata.obsm"),
        (["--time-key", "day", "--n-pcs", "9"], "n_pcs=9"),
    ],
)
def test_bad_input_exits_2_with_the_fix(h5ad, tmp_path, capsys, args, message):
    rc = cli("fit", str(h5ad), "--out", str(tmp_path / "o.h5ad"), "--steps 5 --quiet", *args)
    assert rc == 2
    assert message in capsys.readouterr().err


def test_missing_file_and_help(tmp_path, capsys):
    assert (
        cli("evaluate", str(tmp_path / "none.h5ad"), "--time-key d --out", str(tmp_path / "x.csv"))
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    for cmd in ("demo", "fit", "evaluate"):
        with pytest.raises(SystemExit) as e:
            cli(cmd, "--help")
        assert e.value.code == 0


def test_demo_runs_end_to_end_and_writes_every_output(tmp_path, capsys):
    """The README's first command, at few training steps: every file it promises appears, the
    results .h5ad reads back with the velocity keys, and a second run refuses to overwrite."""
    import anndata as ad
    import pandas as pd

    out = tmp_path / "demo"
    assert cli("demo --out", str(out), "--steps 40 --quiet") == 0
    said = capsys.readouterr().out  # --quiet silences progress, not the results (issue #52)
    assert "held-out day 3" in said and "wrote to" in said and "1/6" not in said
    for name in ("results.h5ad", "evaluation.csv", "summary.csv", "velocity.csv"):
        assert (out / name).exists(), name
    assert len(list(out.glob("*.png"))) == 6
    res = ad.read_h5ad(out / "results.h5ad")
    assert {"velocity_pca", "velocity_umap"} <= set(res.obsm)
    table = pd.read_csv(out / "evaluation.csv")
    assert {"method", "held_out_time", "seed", "w1", "w2", "mmd", "seconds"} <= set(table.columns)
    assert cli("demo --out", str(out), "--steps 40 --quiet") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_bench_velocity_scores_against_a_reference(tmp_path, capsys):
    # cells drift by +1 along the first axis per day: the reference velocity is (1, 0, 0)
    a = drifting_cells(150, seed=1)
    t, X = a.obs["day"].to_numpy(), a.obsm["X_pca"]
    a.obsm["v_ref"] = np.tile([1.0, 0.0, 0.0], (len(t), 1))
    path, out = tmp_path / "v.h5ad", tmp_path / "v.csv"
    a.write_h5ad(path)
    rc = cli(
        "bench velocity",
        str(path),
        "--time-key day --reference v_ref --n-pcs 3 --no-whiten --methods ot mfm --steps 400 "
        "--batch-size 128 --out",
        str(out),
        "--quiet",
    )
    assert rc == 0
    df = pd.read_csv(out).set_index(["method", "time"])
    drift = (
        (X[t == 1].mean(0) - X[t == 0].mean(0))
        @ [1, 0, 0]
        / np.linalg.norm(X[t == 1].mean(0) - X[t == 0].mean(0))
    )
    assert df.loc[("population drift", "0"), "median_cosine"] == pytest.approx(drift)
    assert (
        df.loc[("ot", "all"), "median_cosine"] > 0.9
        and df.loc[("mfm", "all"), "median_cosine"] > 0.9
    )
    assert cli("bench velocity", str(path), "--time-key day --reference nope --quiet") == 2
    assert "obsm['nope'] not found" in capsys.readouterr().err


def test_bench_velocity_takes_every_column_of_a_2d_layout(tmp_path):
    """Without --n-pcs, a 2-D layout and its 2-D reference velocity are scored on both columns
    (the paper's 5 would stop on them)."""
    a = drifting_cells(60, seed=2)
    a.obsm["X_umap"] = a.obsm["X_pca"][:, :2].copy()
    a.obsm["v_umap"] = np.tile([1.0, 0.0], (a.n_obs, 1))
    path, out = tmp_path / "u.h5ad", tmp_path / "u.csv"
    a.write_h5ad(path)
    assert (
        cli(
            "bench velocity",
            str(path),
            "--time-key day --reference v_umap --use-rep X_umap --methods icfm --steps 5 "
            "--batch-size 16 --out",
            str(out),
            "--quiet",
        )
        == 0
    )
    assert set(pd.read_csv(out).method) == {"population drift", "icfm"}


def test_bench_arch_scores_both_metrics_against_ot_cfm(tmp_path, monkeypatch, capsys):
    from cellflow.flow.riemannian_metrics import LANDMetric, RBFMetric

    seen = []
    for cls in (RBFMetric, LANDMetric):
        fit = cls.fit.__func__
        monkeypatch.setattr(
            cls,
            "fit",
            classmethod(
                lambda c, X, _fit=fit, **kw: (
                    seen.append((c.__name__, kw["eps"])) or _fit(c, X, **kw)
                )
            ),
        )
    out = tmp_path / "arch"
    rc = cli(
        "bench arch --n-cells 200 --seeds 0 1 --steps 60 --batch-size 64 --metric-eps 0.05 --out",
        str(out),
        "--quiet",
    )
    assert rc == 0
    assert (
        seen == [("RBFMetric", 0.05)] * 2 + [("LANDMetric", 0.05)] * 2
    )  # one pair (0, 2) per model
    assert (
        "Arch, time 1 held out, 200 cells" in capsys.readouterr().out
    )  # the summary, even when --quiet
    df = pd.read_csv(out / "arch.csv")
    assert set(df["method"]) == {
        "previous time point",
        "McCann OT interpolation",
        "OT-CFM",
        "OT-MFM",
        "floor: a fresh sample of time 1",
    }
    assert (
        df.loc[df["method"].str.startswith("floor"), "w1"] < 0.3
    ).all()  # 200 fresh cells of time 1
    assert sorted(df.loc[df["method"] == "OT-MFM", "metric"].unique()) == ["land", "rbf"]
    assert len(df[df["method"] == "OT-MFM"]) == 4 and len(df[df["method"] == "OT-CFM"]) == 2
    # the straight line between the ends runs about a radius (in whitened units, more) under the
    # held-out top
    assert (df.loc[df["method"].isin(["McCann OT interpolation", "OT-CFM"]), "w1"] > 1.2).all()
    summary = pd.read_csv(out / "arch_summary.csv").set_index(["method", "metric"])
    mfm = df[df["method"] == "OT-MFM"].groupby("metric")["w1"].median()
    ot = df.loc[df["method"] == "OT-CFM", "w1"].median()
    assert float(summary.loc[("OT-MFM", "rbf"), "vs_ot_cfm"]) == pytest.approx(
        mfm["rbf"] / ot, abs=1e-3
    )


def test_bench_arch_in_more_unwhitened_dimensions_scores_in_the_data_s_units(tmp_path, capsys):
    from cellflow.datasets import arch_time_course
    from cellflow.evaluate import _scores

    out = tmp_path / "arch"
    assert (
        cli(
            "bench arch --n-cells 150 --seeds 0 --steps 30 --batch-size 64 --metrics rbf --n-dims "
            "3 --no-whiten --out",
            str(out),
            "--quiet",
        )
        == 0
    )
    assert "in 3 dimensions" in capsys.readouterr().out
    df = pd.read_csv(out / "arch.csv").set_index("method")
    held, fresh = (
        a.obsm["X_arch"][a.obs["time"].to_numpy() == 1]
        for a in (arch_time_course(150, n_dims=3, seed=0), arch_time_course(150, n_dims=3, seed=1))
    )
    assert held.shape == (150, 3)
    assert df.loc["floor: a fresh sample of time 1", "w1"] == pytest.approx(
        _scores(fresh, held, 4000, 0)["w1"]
    )
    # unwhitened, the straight line runs about 0.9 (of a unit radius) under the held-out top
    assert 0.6 < df.loc["McCann OT interpolation", "w1"] < 1.2


def test_fit_on_a_2d_embedding_with_the_same_basis(h5ad, tmp_path):
    # use_rep X_umap and basis umap: the velocity is already velocity_umap; no projection, no clash
    out = tmp_path / "u.h5ad"
    assert (
        cli(
            "fit",
            str(h5ad),
            "--time-key day --use-rep X_umap --basis umap --out",
            str(out),
            "--steps 20 --batch-size 32 --quiet",
        )
        == 0
    )
    assert ad.read_h5ad(out).obsm["velocity_umap"].shape == (240, 2)


def test_bench_speed_quick_writes_json(tmp_path, capsys):
    import json

    out = tmp_path / "speed.json"
    rc = cli("bench speed --quick --sections exact_ot sinkhorn push --repeats 1 --out", str(out))
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) == {"config", "exact_ot", "sinkhorn", "push"}
    ours = [r for r in res["exact_ot"] if r["solver"].startswith("cellflow ExactOT")]
    assert len(ours) == 2 and all(
        abs(r["cost_over_optimum"]) < 1e-9 for r in ours
    )  # exact: the uncapped optimum
    for r in res["sinkhorn"]:
        if r["solver"].startswith("cellflow"):
            assert r["finite"] and r["marginal_error"] <= 1e-6
    assert all(r["cells_per_s"] > 0 for r in res["push"])
    assert "== sinkhorn" in capsys.readouterr().out


def test_bench_throughput_times_every_method_and_the_ratio(capsys):
    from cellflow.bench.throughput import run

    df = run(steps=10, repeats=2, verbose=True, ot_groups=(1,))
    ours = df[df.library == "cellflow"]
    assert sorted(ours.method) == ["I-CFM", "OT-CFM", "SB-CFM"]
    assert df[df.library == "cellflow, group 1"].method.tolist() == [
        "OT-CFM"
    ]  # one step per worker task
    assert (df.steps_per_s > 0).all() and (df.runs == 2).all()
    assert "our OT-CFM / our I-CFM, per round" in capsys.readouterr().out


def test_fit_on_disk_writes_what_the_in_memory_fit_writes(h5ad, tmp_path, capsys):
    """Issue #54: `fit --on-disk` trains the model the loaded file trains (same weights, so the
    same velocities), says its expected memory and time first, writes OUT as the input plus the
    velocities, leaves the input as it was, and refuses what it cannot do."""
    import hashlib

    before = hashlib.sha1(h5ad.read_bytes()).hexdigest()
    common = "--time-key day --steps 30 --batch-size 32 --no-gene-velocity --basis none"
    assert cli("fit", h5ad, "--out", tmp_path / "mem.h5ad", common, "--quiet") == 0
    assert cli("fit", h5ad, "--out", tmp_path / "disk.h5ad", common, "--on-disk") == 0
    err = capsys.readouterr().err
    assert "expected peak memory about" in err and "expected time on this machine" in err
    mem, disk = ad.read_h5ad(tmp_path / "mem.h5ad"), ad.read_h5ad(tmp_path / "disk.h5ad")
    np.testing.assert_array_equal(disk.obsm["velocity_pca"], mem.obsm["velocity_pca"])
    np.testing.assert_array_equal(disk.obsm["X_umap"], mem.obsm["X_umap"])
    assert list(disk.obs_names) == list(mem.obs_names) and disk.uns["cellflow"]["on_disk"]
    assert hashlib.sha1(h5ad.read_bytes()).hexdigest() == before
    model = CellFlow.load(tmp_path / "disk_model", ad.read_h5ad(h5ad))
    assert model.course.n_pcs == 3
    # its own output, fitted again: the velocities there are only replaced on request
    again = tmp_path / "again.h5ad"
    assert cli("fit", tmp_path / "disk.h5ad", "--out", again, common, "--on-disk --quiet") == 2
    assert "velocity_pca" in capsys.readouterr().err
    for extra in ("--use-rep X", "--backed", "--preprocess"):
        assert cli("fit", h5ad, "--out", again, common, "--on-disk --quiet", extra) == 2
        assert "--on-disk reads a representation in obsm" in capsys.readouterr().err
    assert not again.exists()


def test_bench_scale_writes_an_atlas_and_runs_every_stage_from_disk(tmp_path):
    """`bench scale --cells N`: the atlas on disk is what anndata reads (lineages in the shares
    of the design at every time, cells growing as k + 1), and every stage reports its time and
    memory; the fates of the first time point sum to 1."""
    from cellflow.bench.atlas import SHARES, atlas_sizes

    keep, out = tmp_path / "atlas.h5ad", tmp_path / "scale.csv"
    rc = cli(
        "bench scale --cells 6000 --n-times 4 --steps 30 --batch-size 64 --quiet --keep",
        keep,
        "--out",
        out,
    )
    assert rc == 0
    df = pd.read_csv(out)
    assert df["stage"].tolist() == [
        "write the course",
        "build the model",
        "train 30 steps",
        "velocities of every cell",
        "fates of the first time point",
    ]
    assert (df["peak_gb"] > 0).all() and (df["seconds"] > 0).all()
    a = ad.read_h5ad(keep)
    counts = a.obs.groupby("day", observed=True).size().to_numpy()
    assert counts.tolist() == atlas_sizes(6000, 4).tolist() == [600, 1200, 1800, 2400]
    shares = a.obs["lineage"].value_counts(normalize=True).sort_index().to_numpy()
    assert np.abs(shares - np.array(SHARES)).max() < 0.03
    assert a.obsm["velocity_pca"].shape == (6000, 50)
    first = (a.obs["day"] == 0).to_numpy()
    np.testing.assert_allclose(a.obsm["fates_lineage"].loc[first].sum(1), 1.0, atol=1e-6)


def test_bench_scale_small_run(tmp_path):
    out = tmp_path / "scale.csv"
    rc = cli(
        "bench scale --n-cells 3000 --n-pcs 4 --small 500 --method icfm --steps 5 --batch-size 64 "
        "--x-cells 2000 --x-genes 50 --out",
        str(out),
    )
    assert rc == 0
    df = pd.read_csv(out)
    assert df["phase"].tolist() == [
        "build sparse X",
        "train icfm on sparse X in memory",
        "train icfm on backed X on disk",
        "build AnnData",
        "train icfm",
        "train icfm",
        "velocity, all cells",
    ]
    assert df["n_cells"].tolist() == [2000, 2000, 2000, 3000, 500, 3000, 3000]
    assert (df["peak_rss_gb"] > 0).all()


def test_train_tabular_writes_model_samples_metrics_and_resumes(tmp_path, capsys):
    import json

    out = tmp_path / "tab"
    assert (
        cli(
            "train tabular iris --label target --out",
            str(out),
            "--steps 40 --checkpoint-every 20 --quiet",
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert {"w1_mean", "correlation_distance", "ml_efficiency", "columns"} <= set(m)
    samples = pd.read_csv(out / "samples.csv")
    assert list(samples.columns)[-1] == "target" and len(samples) == 120
    assert (out / "checkpoints" / "checkpoint.pt").exists()
    assert cli("train tabular iris --label target --out", str(out), "--steps 40 --quiet") == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        cli("train tabular iris --label target --out", str(out), "--steps 60 --quiet --resume") == 0
    )
    assert json.loads((out / "metrics.json").read_text())["steps"] == 60
    assert cli("train tabular nope.csv --out", str(tmp_path / "x")) == 2
    assert "neither an embedded table" in capsys.readouterr().err


def test_train_images_digits_and_random_cifar_shaped(tmp_path, capsys, monkeypatch):
    import json

    import cellflow.images as images

    # the scorer's 40 epochs are half this test's time; its accuracy is tested in test_images.py
    fast = images.train_digits_classifier
    monkeypatch.setattr(
        images, "train_digits_classifier", lambda x, y, seed=0: fast(x, y, epochs=4, seed=seed)
    )
    out = tmp_path / "img"
    assert (
        cli(
            "train images --dataset digits --out",
            str(out),
            "--steps 4 --channels 8 --batch-size 16 --nfe 2 --no-dopri5 --grid-steps 3 --quiet",
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert [r["solver"] for r in m["digits"]] == ["real test digits", "euler"]
    assert m["digits"][1]["nfe"] == 2 and (out / "samples.png").stat().st_size > 0
    out2 = tmp_path / "rnd"
    assert (
        cli(
            "train images --random-data 16 --preset cifar10 --channels 8 --out",
            str(out2),
            "--steps 2 --batch-size 4 --quiet",
        )
        == 0
    )
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert (
        m2["dataset"] == "random CIFAR-shaped"
        and m2["steps_per_second"] > 0
        and m2["peak_rss_gb"] > 0
    )
    assert cli("train images --dataset cifar10 --out", str(tmp_path / "c")) == 2
    assert "data_dir" in capsys.readouterr().err
    assert cli("train images --out", str(tmp_path / "g"), "--grid-steps 0") == 2
    assert "grid_steps must be at least 1" in capsys.readouterr().err


def test_bench_tabular_without_peer(tmp_path, capsys):
    import json

    out = tmp_path / "t.json"
    assert (
        cli("bench tabular --tables iris --methods icfm --steps 30 --no-peer --out", str(out)) == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["generator"] for r in rows] == ["real (test rows)", "cellflow-icfm"]
    assert "cellflow-icfm" in capsys.readouterr().out


def test_the_command_line_starts_without_torch():
    """Issue #52: `cellflow --help` took 4 s, importing everything. The parser and the package
    itself load no torch, POT or scanpy (they come with the command that needs them)."""
    import subprocess
    import sys

    code = (
        "import sys, cellflow, cellflow.cli; cellflow.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'ot', 'scanpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_python_started_beside_a_folder_named_cellflow_imports_the_package(tmp_path):
    """Issue #52: Python run from the folder that holds the clone (itself named ``cellflow``)
    found the clone as a namespace package before the installed one. The editable install now
    puts the project root on sys.path (``package-dir`` in pyproject.toml), where Python's own
    finder meets the real package after the namespace candidate."""
    import subprocess
    import sys
    from pathlib import Path

    import cellflow

    (tmp_path / "cellflow").symlink_to(Path(cellflow.__file__).parent.parent, True)
    code = "import cellflow; print(cellflow.CellFlow.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert out.stdout.strip() == "CellFlow", out.stdout + out.stderr
