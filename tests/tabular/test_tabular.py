"""Tabular flow matching: the encoder's round trip for every column kind, the metrics against
their closed forms, and a tiny training run that measurably learns."""

import numpy as np
import pandas as pd
import pytest

from cellflow.datasets import load_table
from cellflow.tabular import (
    TabularEncoder,
    TabularFlow,
    column_distances,
    correlation_distance,
    ml_efficiency,
)


def _mixed(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(3.0, 2.0, n),
            "f32": rng.uniform(-1, 1, n).astype(np.float32),
            "count": rng.integers(0, 9, n),
            "small": rng.integers(-3, 3, n).astype(np.int16),
            "flag": rng.random(n) < 0.3,
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": pd.Categorical(
                rng.choice(["S", "M", "L"], n), categories=["S", "M", "L"], ordered=True
            ),
            "code": rng.choice([10, 20, 30], n),
        }
    )


def test_round_trip_every_kind():
    df = _mixed()
    enc = TabularEncoder(categorical=["code"]).fit(df)
    kinds = {c.name: c.kind for c in enc.columns}
    assert kinds == {
        "x": "continuous",
        "f32": "continuous",
        "count": "integer",
        "small": "integer",
        "flag": "categorical",
        "colour": "categorical",
        "size": "categorical",
        "code": "categorical",
    }
    z = enc.encode(df)
    assert z.dtype == np.float32 and z.shape == (60, 1 + 1 + 1 + 1 + 2 + 3 + 3 + 3)
    back = enc.decode(z)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-5)
    assert list(back["size"].cat.categories) == ["S", "M", "L"]  # the user's order is kept


def test_dequantised_integers_and_categories_decode_exactly():
    df = _mixed()
    enc = TabularEncoder(categorical=["code"]).fit(df)
    z = enc.encode(df, dequantize=True, rng=np.random.default_rng(1))
    assert not np.allclose(z, enc.encode(df))  # the noise is there
    pd.testing.assert_frame_equal(enc.decode(z), df, check_exact=False, rtol=1e-5)


def test_decode_of_arbitrary_values_is_valid():
    df = _mixed()
    enc = TabularEncoder().fit(df)
    out = enc.decode(np.random.default_rng(0).normal(0, 5, (200, enc.dim)))
    assert set(out["colour"]) <= {"red", "green", "blue"}
    assert out["count"].between(df["count"].min(), df["count"].max()).all()
    assert out["x"].between(df["x"].min(), df["x"].max()).all()
    assert (out.dtypes == df.dtypes).all()


def test_missing_values_error_names_columns_or_impute():
    df = _mixed()
    df.loc[3, "x"] = np.nan
    df.loc[5, "colour"] = None
    with pytest.raises(ValueError, match=r"'x': 1.*'colour': 1.*missing='impute'"):
        TabularEncoder().fit(df)
    enc = TabularEncoder(missing="impute").fit(df)
    z = enc.encode(df)
    assert np.isfinite(z).all()
    assert enc.decode(z).loc[5, "colour"] in {"red", "green", "blue"}


def test_unknown_category_and_wrong_width():
    df = _mixed()
    enc = TabularEncoder().fit(df)
    bad = df.copy()
    bad.loc[0, "colour"] = "purple"
    with pytest.raises(ValueError, match="purple"):
        enc.encode(bad)
    with pytest.raises(ValueError, match=r"shape \(n, 13\)"):
        enc.decode(np.zeros((3, 5)))


def test_column_distances_closed_forms():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"x": rng.normal(0, 2, 500), "c": ["a"] * 250 + ["b"] * 250})
    synth = pd.DataFrame({"x": real["x"] + 1.5, "c": ["a"] * 400 + ["b"] * 100})
    d = column_distances(real, synth).set_index("column")
    assert d.loc["x", "w1"] == pytest.approx(
        1.5 / real["x"].std(ddof=0)
    )  # a shift moves W1 by the shift
    assert d.loc["c", "tvd"] == pytest.approx(0.3)  # 0.5 * (|0.5 - 0.8| + |0.5 - 0.2|)
    assert correlation_distance(real, real) == pytest.approx(0.0, abs=1e-12)


def test_ml_efficiency_of_real_rows_is_one():
    df = load_table("iris")
    train, test = df.iloc[::2].reset_index(drop=True), df.iloc[1::2].reset_index(drop=True)
    me = ml_efficiency(train, train, test, "target")
    assert me["ratio"] == pytest.approx(1.0)
    assert me["logistic"]["real"] > 0.9


@pytest.mark.slow
def test_tiny_training_beats_untrained_and_labels_condition(tmp_path):
    df = load_table("iris")
    train, test = df.iloc[::2].reset_index(drop=True), df.iloc[1::2].reset_index(drop=True)
    # untrained, the field is ~0: samples are the standardised noise, labels unrelated to features
    untrained = TabularFlow(train, label="target", seed=0)
    before = ml_efficiency(untrained.sample(300, seed=1), train, test, "target")["ratio"]
    tf = TabularFlow(train, label="target", seed=0)
    tf.train(steps=600, progress=False)
    fake = tf.sample(300, seed=1)
    after = ml_efficiency(fake, train, test, "target")["ratio"]
    assert before < 0.7 and after > 0.85, (before, after)
    assert list(fake.columns) == list(df.columns) and (fake.dtypes == df.dtypes).all()
    # conditioning: petal length is about 1.5 cm for class 0 and 5.5 cm for class 2
    lo, hi = tf.sample(100, labels=0, seed=2), tf.sample(100, labels=2, seed=2)
    assert (lo["target"] == 0).all() and (hi["target"] == 2).all()
    assert hi["petal length (cm)"].mean() - lo["petal length (cm)"].mean() > 2.5
    # save / load: same samples from the same seed
    tf.save(tmp_path / "m")
    again = TabularFlow.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.sample(50, seed=3), tf.sample(50, seed=3))
    with pytest.raises(ValueError, match="among"):
        tf.sample(3, labels=[0, 1, 7])
