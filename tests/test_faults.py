"""Bad input and faults: nothing is lost, nothing is silently wrong (one test per defect class).

Each test here failed on the code before the fix it holds: writes that were not atomic, model
folders that kept stale or foreign files, AnnData checks that ignored values and times, model
time that depended on the time unit, and errors that came from deep inside a dependency.
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from courses import course

import cellflow as cf
from cellflow import _io
from cellflow.cli import main as cli_main


# ---------------------------------------------------------------- 1. atomic writes
def test_a_killed_fit_leaves_the_users_h5ad_whole(tmp_path):
    """`cellflow fit X.h5ad --out X.h5ad --overwrite`, killed in the middle of its write."""
    path = tmp_path / "x.h5ad"
    course().write_h5ad(path)
    before = path.read_bytes()
    child = textwrap.dedent(f"""
        import os, h5py
        from cellflow.cli import main
        orig = h5py.Group.create_dataset
        def create_dataset(self, *a, **k):   # die right after the first dataset is written
            out = orig(self, *a, **k)
            self.file.flush()
            os._exit(9)
        h5py.Group.create_dataset = create_dataset
        main(["fit", {str(path)!r}, "--time-key", "day", "--out", {str(path)!r}, "--overwrite",
              "--steps", "2", "--batch-size", "16", "--quiet",
              "--model-dir", {str(tmp_path / "m")!r}])
    """)
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert path.read_bytes() == before  # the old file, byte for byte
    assert ad.read_h5ad(path).n_obs == 160


def test_atomic_writers_leave_the_old_file_on_an_error(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")

    class Boom(pd.DataFrame):
        def to_csv(self, path, **kw):
            open(path, "w").write("half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _io.write_csv(Boom({"a": [1]}), target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temporary file left


def test_an_interrupted_save_keeps_the_old_model(tmp_path, trained, monkeypatch):
    adata, model = trained
    model.save(tmp_path / "m")
    old = (tmp_path / "m" / "model.pt").read_bytes()
    real = torch.save

    def failing(obj, f, *a, **k):
        real(obj, f, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(KeyboardInterrupt):  # another model, killed while its weights are written
        cf.CellFlow(adata, "day", seed=1).save(tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    assert (tmp_path / "m" / "model.pt").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    cf.CellFlow.load(tmp_path / "m", adata)


# ---------------------------------------------------------------- 2. model folders
def test_save_refuses_foreign_files_and_leaves_no_stale_ones(tmp_path, trained):
    adata, model = trained
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="did not write.*notes.txt"):
            model.save(folder, overwrite=overwrite)
    assert (folder / "notes.txt").read_text() == "mine"

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")  # the user's own, not a model (#49): never replaced
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="did not write.*config.json"):
            model.save(other, overwrite=overwrite)
    assert (other / "config.json").read_text() == "{}"
    model.save(tmp_path / "ours")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "ours")

    sb = cf.CellFlow(adata, "day", method="sb", seed=0)
    sb.train(steps=5, batch_size=16, progress=False)
    sb.save(tmp_path / "s")
    assert (tmp_path / "s" / "score.pt").exists()
    model.save(tmp_path / "s", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["config.json", "model.pt"]
    assert cf.CellFlow.load(tmp_path / "s", adata).method == "ot"


# -------------------------------------------------- 3-5, 7: the AnnData is the one trained on
def test_a_sign_flipped_representation_is_refused(tmp_path, trained):
    adata, model = trained
    model.save(tmp_path / "m")
    flipped = adata.copy()
    flipped.obsm["X_pca"][:, 0] *= -1
    with pytest.raises(ValueError, match="values of obsm\\['X_pca'\\].*differ"):
        cf.CellFlow.load(tmp_path / "m", flipped)
    with pytest.raises(ValueError, match="values of obsm\\['X_pca'\\].*differ"):
        cf.tl.velocity(flipped, model)
    assert "velocity_pca" not in flipped.obsm


def test_an_anndata_with_the_same_default_names_is_refused(trained):
    adata, _ = trained
    a = course(names=False)
    model = cf.CellFlow(a, "day", seed=0)
    model.train(steps=5, batch_size=16, progress=False)
    other = course(names=False, seed=1, times=(0, 1, 2, 5))
    with pytest.raises(ValueError, match="not the one the model was trained on"):
        cf.tl.velocity(other, model)
    # the same cells with other times: refused too, never evaluated at the model's times
    shifted = a.copy()
    shifted.obs["day"] = shifted.obs["day"].to_numpy()[::-1]
    with pytest.raises(ValueError, match="cells' times"):
        cf.tl.velocity(shifted, model)


def test_load_compares_the_time_points(tmp_path, trained):
    adata, model = trained
    model.save(tmp_path / "m")
    merged = adata.copy()
    merged.obs["day"] = merged.obs["day"].replace(3.0, 2.0)
    with pytest.raises(
        ValueError, match="time points in obs\\['day'\\]: saved \\[0.0, 1.0, 2.0, 3.0\\]"
    ):
        cf.CellFlow.load(tmp_path / "m", merged)


def test_a_model_on_x_refuses_an_x_changed_in_place():
    rng = np.random.default_rng(0)
    t = np.repeat([0.0, 1.0, 2.0], 40)
    a = ad.AnnData(rng.poisson(2.0, size=(120, 8)).astype(np.float32), obs=pd.DataFrame({"day": t}))
    model = cf.CellFlow(a, "day", use_rep="X", seed=0)
    model.train(steps=5, batch_size=16, progress=False)
    model.cells_at(1.0)
    a.X -= a.X.mean(0)  # what sc.pp.scale(adata) does, in place
    with pytest.raises(ValueError, match="adata.X has changed"):
        model.cells_at(1.0)
    with pytest.raises(ValueError, match="adata.X|values of X"):
        cf.tl.velocity(a, model)


# ---------------------------------------------------------------- 6. time units
def test_results_do_not_depend_on_the_time_unit():
    days = course(times=(0, 1, 2, 3))
    minutes = days.copy()
    minutes.obs["day"] = minutes.obs["day"] * 1440.0
    out = {}
    for name, a in (("days", days), ("minutes", minutes)):
        m = cf.CellFlow(a, "day", time_scale="real", seed=0)
        m.train(steps=20, batch_size=32, progress=False)
        s = 1440.0 if name == "minutes" else 1.0
        out[name] = (m.push(m.cells_at(0.0), 0.0, 2 * s), m.velocity(m.cells_at(s), s))
    assert np.isfinite(out["minutes"][0]).all()
    np.testing.assert_array_equal(
        out["minutes"][0], out["days"][0]
    )  # the network sees the same clock
    np.testing.assert_allclose(
        out["minutes"][1] * 1440.0, out["days"][1], rtol=1e-12
    )  # per minute, per day


# ---------------------------------------------------------------- 8. smaller silent cases
def test_zero_steps_are_refused(trained, tmp_path):
    adata, _ = trained
    with pytest.raises(ValueError, match="steps must be"):
        cf.CellFlow(adata, "day").train(steps=0, progress=False)
    with pytest.raises(ValueError, match="steps must be"):
        cf.FlowModel(2).fit(torch.randn(50, 2), torch.randn(50, 2), steps=0, progress=False)
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    assert (
        cli_main(
            [
                "fit",
                str(path),
                "--time-key",
                "day",
                "--out",
                str(tmp_path / "o.h5ad"),
                "--steps",
                "0",
                "--quiet",
            ]
        )
        == 2
    )
    assert not (tmp_path / "o.h5ad").exists()


def test_interpolate_sample_zero_cells_gives_zero_cells(trained):
    adata, model = trained
    assert cf.tl.interpolate(adata, model, 1.5, mode="sample", n_cells=0).n_obs == 0
    assert cf.tl.interpolate(adata, model, 1.5, mode="sample", n_cells=7).n_obs == 7
    with pytest.raises(ValueError, match="n_cells"):
        cf.tl.interpolate(adata, model, 1.5, mode="sample", n_cells=-1)


def test_images_in_0_255_are_refused_with_the_rescaling():
    from cellflow.images import ImageFlow

    flow = ImageFlow((1, 8, 8), preset="digits")
    with pytest.raises(ValueError, match="\\[-1, 1\\].*127.5"):
        flow.train(torch.randint(0, 256, (16, 1, 8, 8)).float(), steps=1, progress=False)


def test_resume_needs_a_matching_checkpoint(tmp_path):
    src, tgt = torch.randn(64, 2), torch.randn(64, 2) + 3
    kw = dict(
        steps=10, batch_size=16, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=5
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cf.FlowModel(2, "ot", seed=0).fit(src, tgt, resume=True, **kw)
    cf.FlowModel(2, "ot", seed=0).fit(src, tgt, **kw)
    with pytest.raises(ValueError, match="seed: checkpoint 0, this run 1"):
        cf.FlowModel(2, "ot", seed=1).fit(src, tgt, resume=True, **{**kw, "steps": 20})
    with pytest.raises(ValueError, match="method: checkpoint 'ot', this run 'icfm'"):
        cf.FlowModel(2, "icfm", seed=0).fit(src, tgt, resume=True, **{**kw, "steps": 20})
    cf.FlowModel(2, "ot", seed=0).fit(src, tgt, resume=True, **{**kw, "steps": 20})


def test_missing_fate_labels_are_no_group(trained):
    adata, model = trained
    a = adata.copy()
    a.obs["branch"] = np.where(a.obsm["X_pca"][:, 1] > 0, "A", "B").astype(object)
    a.obs.loc[a.obs_names[::7], "branch"] = np.nan
    cf.tl.fates(a, model, "branch", t_from=1, t_to=3)
    F = a.obsm["fates_branch"]
    assert list(F.columns) == ["A", "B"] or list(F.columns) == ["B", "A"]
    at = a.obs["day"] == 1
    np.testing.assert_allclose(F.loc[at].sum(1), 1.0)


def test_evaluate_needs_a_method(trained):
    adata, _ = trained
    with pytest.raises(ValueError, match="methods is empty"):
        cf.evaluate_holdout(adata, "day", methods=[], seeds=[0], steps=5)


# ---------------------------------------------------------------- 9. no code from a data file
class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path):
    from cellflow.images import read_cifar10

    target = tmp_path / "pwned"
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Payload(target), b"labels": [0]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        read_cifar10(tmp_path)
    assert not target.exists()


# ---------------------------------------------------------------- 10-11. the command line
def test_fit_checks_every_output_before_training(tmp_path, trained, monkeypatch, capsys):
    adata, model = trained
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    model.save(tmp_path / "out_model")
    monkeypatch.setattr(
        cf.CellFlow, "train", lambda *a, **k: pytest.fail("trained before checking outputs")
    )
    assert (
        cli_main(
            ["fit", str(path), "--time-key", "day", "--out", str(tmp_path / "out.h5ad"), "--quiet"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "out_model" in err and "--overwrite" in err and "overwrite=True" not in err
    (tmp_path / "afile").write_text("x")
    assert (
        cli_main(
            [
                "fit",
                str(path),
                "--time-key",
                "day",
                "--out",
                str(tmp_path / "afile" / "o.h5ad"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "afile is a file" in capsys.readouterr().err


def test_cli_errors_name_the_path_not_the_errno(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert cli_main(["demo", "--out", str(tmp_path / "a_file"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a_file" in err and "error: 17" not in err


# ---------------------------------------------------------------- 12. backed AnnData
def test_interpolate_on_a_backed_anndata(tmp_path):
    rng = np.random.default_rng(0)
    t = np.repeat([0.0, 1.0, 2.0], 40)
    a = ad.AnnData(rng.poisson(2.0, size=(120, 8)).astype(np.float32), obs=pd.DataFrame({"day": t}))
    a.obsm["X_pca"] = rng.normal(size=(120, 3)) + t[:, None]
    a.varm["PCs"] = rng.normal(size=(8, 3))
    a.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    model = cf.CellFlow(backed, "day", seed=0)
    model.train(steps=5, batch_size=16, progress=False)
    pred = cf.tl.interpolate(backed, model, 1.5)
    in_memory = cf.tl.interpolate(a, model, 1.5)
    np.testing.assert_allclose(pred.X, in_memory.X, rtol=1e-5)


# ---------------------------------------------------------------- 13. tables
def test_tables_with_integer_names_nullable_dtypes_and_no_rows():
    from cellflow.tabular import TabularFlow

    rng = np.random.default_rng(0)
    tf = TabularFlow(pd.DataFrame(rng.normal(size=(50, 3))), seed=0)
    tf.train(steps=3, batch_size=16, progress=False)
    assert list(tf.sample(4).columns) == [0, 1, 2]
    df = pd.DataFrame(
        {
            "x": rng.normal(size=50),
            "n": pd.array(np.arange(50) % 5, dtype="Int64"),
            "f": pd.array(rng.normal(size=50), dtype="Float64"),
            "b": pd.array(np.arange(50) % 2 == 0, dtype="boolean"),
            "s": pd.array(["u", "v"] * 25, dtype="string"),
        }
    )
    tf = TabularFlow(df, seed=0)
    tf.train(steps=3, batch_size=16, progress=False)
    for n in (5, 0):
        out = tf.sample(n)
        assert len(out) == n and out.dtypes.to_dict() == df.dtypes.to_dict()
    with pytest.raises(TypeError, match="dates or durations"):
        TabularFlow(
            pd.DataFrame({"x": rng.normal(size=10), "d": pd.date_range("2020", periods=10)})
        )


# ---------------------------------------------------------------- 14. errors that name the argument
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_size=0), "batch_size must be"),
        (dict(batch_size=-4), "batch_size must be"),
        (dict(holdout="x"), "holdout='x' is not a measured time"),
        (dict(holdout=2.5), "holdout=2.5 is not a measured"),
    ],
)
def test_train_arguments_are_checked(trained, kwargs, match):
    adata, _ = trained
    with pytest.raises(ValueError, match=match):
        cf.CellFlow(adata, "day").train(steps=5, progress=False, **kwargs)


def test_representation_arguments(trained):
    adata, _ = trained
    with pytest.raises(ValueError, match="n_pcs must be a whole number"):
        cf.CellFlow(adata, "day", n_pcs=2.7)
    a = adata.copy()
    a.obsm["X_sparse"] = sp.csr_matrix(a.obsm["X_pca"])
    m = cf.CellFlow(a, "day", use_rep="X_sparse", n_pcs=2)
    np.testing.assert_allclose(
        m.cells_at(0.0), a.obsm["X_pca"][:40, :2], atol=1e-6
    )  # float32 store
    m = cf.CellFlow(adata, "day", seed=0)
    m.train(
        steps=5, batch_size=16, holdout="2", progress=False
    )  # a label of a time, as obs may hold it
    assert m.holdout == 2.0


def test_push_without_time_passing_returns_the_cells(trained):
    _, model = trained
    X = model.cells_at(1.0)[:5]
    np.testing.assert_array_equal(model.push(X, 1.0, 1.0), X)
    assert model.push(X, 1.0, 1.0, n_points=3).shape == (3, 5, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(held_out=[2.5]), "held_out=2.5 is not an intermediate measured time"),
        (dict(held_out=[0]), "held_out=0 is not an intermediate"),
        (dict(max_eval=0), "max_eval must be"),
    ],
)
def test_evaluate_arguments(trained, kwargs, match):
    adata, _ = trained
    with pytest.raises(ValueError, match=match):
        cf.evaluate_holdout(adata, "day", methods=["ot"], seeds=[0], steps=5, **kwargs)


def test_damaged_model_folders_say_which_file_is_wrong(tmp_path, trained):
    adata, model = trained
    model.save(tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json").read_text()
    pt = (tmp_path / "m" / "model.pt").read_bytes()
    (tmp_path / "m" / "config.json").write_text(cfg[: len(cfg) // 2])
    with pytest.raises(
        ValueError,
        match="does not hold a complete cellflow CellFlow: config.json is not valid JSON",
    ):
        cf.CellFlow.load(tmp_path / "m", adata)
    (tmp_path / "m" / "config.json").write_text(cfg)
    for damaged in (pt[: len(pt) // 2], b""):
        (tmp_path / "m" / "model.pt").write_bytes(damaged)
        with pytest.raises(
            ValueError, match="does not hold a complete cellflow CellFlow: model.pt"
        ):
            cf.CellFlow.load(tmp_path / "m", adata)
    (tmp_path / "m" / "model.pt").write_bytes(pt)
    edited = json.loads(cfg)
    edited["net"]["hidden"] = [8, 8]
    del edited["files"]  # as an older model folder, without the checksums
    (tmp_path / "m" / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="model.pt does not match"):
        cf.CellFlow.load(tmp_path / "m", adata)
    fm = cf.FlowModel(2)
    fm.save(tmp_path / "f")
    (tmp_path / "f" / "model.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="does not hold a complete cellflow FlowModel: model.pt"):
        cf.FlowModel.load(tmp_path / "f")


def test_a_sampler_that_returns_nan_is_named():
    def bad(n, g):  # a sampler (a tensor with NaN is refused before training)
        x = torch.randn(n, 2, generator=g)
        x[0, 1] = float("nan")
        return x

    for method in ("ot", "icfm"):
        with pytest.raises(ValueError, match="the target sampler returned NaN"):
            cf.FlowModel(2, method).fit(
                torch.randn(64, 2), bad, steps=2, batch_size=16, progress=False
            )


def test_names_are_refused_when_obs_names_repeat(trained):
    adata, _ = trained
    a = adata.copy()
    a.obs_names = ["c0"] * 2 + list(a.obs_names[2:])
    model = cf.CellFlow(a, "day", seed=0)
    model.train(steps=5, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="duplicated names"):
        cf.tl.pull(a, model, ["c0"], t_from=0, t_to=1)


def test_a_batch_larger_than_a_time_point_warns_once_and_names_it():
    """A biologist's 49-cell time point under the default batch of 512: a warning that names the
    time point, its cells and the batch that avoids repeats; none at or below that size, and a
    held-out time point does not count."""
    import warnings

    rng = np.random.default_rng(0)
    adata = ad.AnnData(
        obs=pd.DataFrame(
            {"day": np.repeat([0, 1, 2, 3], [90, 20, 49, 90])}, index=[f"c{i}" for i in range(249)]
        )
    )
    adata.obsm["X_pca"] = rng.normal(size=(249, 3))
    model = cf.CellFlow(adata, "day")
    with pytest.warns(
        UserWarning,
        match=r"batch_size=64 is larger than the 20 cells of time point 1: .* "
        r"batch_size=20 or less",
    ) as seen:
        model.train(steps=1, batch_size=64, progress=False)
    assert len(seen) == 1 and seen[0].filename == __file__  # points at the caller's line
    with pytest.warns(UserWarning, match="the 49 cells of time point 2"):
        model.train(steps=1, batch_size=64, holdout=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train(steps=1, batch_size=20, progress=False)
        model.train(steps=1, batch_size=49, holdout=1, progress=False)
