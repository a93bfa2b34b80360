"""Per-interval fields: `IntervalMLP` against its definition, and `CellFlow(per_interval=True)`."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import cellflow as cf
from cellflow.flow.networks import MLP, IntervalMLP, build_network


def test_interval_mlp_is_each_intervals_network():
    torch.manual_seed(0)
    field = IntervalMLP(3, knots=[0.0, 1.0, 3.0], hidden=(8, 8))
    x = torch.randn(7, 3)
    t = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    right = [0, 0, 0, 1, 1, 1, 1]  # outside the knots: the first or the last interval
    left = [0, 0, 0, 0, 1, 1, 1]  # at the knot 1.0 the interval that ends there
    for side, which in (("right", right), ("left", left)):
        assert field.interval(t, side).tolist() == which
        out = field(t, x, side=side)
        for r, i in enumerate(which):
            torch.testing.assert_close(out[r], field.nets[i](t[r : r + 1], x[r : r + 1])[0])
    torch.testing.assert_close(field(1.0, x), field.nets[1](1.0, x))  # one time for the batch
    torch.testing.assert_close(field(1.0, x, side="left"), field.nets[0](1.0, x))
    mean = field(
        t, x, side="mean"
    )  # the two sides' average at the inner knot, either side elsewhere
    torch.testing.assert_close(
        mean[3], (field.nets[0](t[3:4], x[3:4])[0] + field.nets[1](t[3:4], x[3:4])[0]) / 2
    )
    keep = [0, 1, 2, 4, 5, 6]
    torch.testing.assert_close(mean[keep], field(t, x)[keep])
    torch.testing.assert_close(
        field(1.0, x, side="mean"), (field.nets[0](1.0, x) + field.nets[1](1.0, x)) / 2
    )
    torch.testing.assert_close(
        field(3.0, x, side="mean"), field.nets[1](3.0, x)
    )  # the last knot: one interval
    again = build_network(field.config)
    again.load_state_dict(field.state_dict())
    torch.testing.assert_close(again(t, x), field(t, x))
    assert isinstance(field.nets[0], MLP) and field.nets[0].config["hidden"] == [8, 8]
    out = field(t, x)
    out.sum().backward()  # every interval's network gets its gradient
    assert all(p.grad is not None for p in field.parameters())
    with pytest.raises(ValueError, match="knots must be at least two increasing times"):
        IntervalMLP(3, knots=[0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="side must be 'left', 'right' or 'mean'"):
        field(0.5, x, side="up")
    with pytest.raises(ValueError, match="t has 2 entries for a batch of 7"):
        field(torch.tensor([0.1, 0.2]), x)


def turning_course(n=200, seed=0, centres=((0.0, 0.0), (2.0, 0.0), (2.0, 2.0))):
    """Cells that move along the first axis from day 0 to day 1, then along the second."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres)
    t = np.repeat(np.arange(len(centres), dtype=float), n)
    a = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]))
    a.obsm["X_pca"] = centres[t.astype(int)] + rng.normal(scale=0.2, size=(len(t), 2))
    return a


def test_per_interval_flow_turns_at_a_measured_time_where_a_shared_one_blends():
    adata = turning_course()
    fits = {}
    for per in (False, True):
        m = cf.CellFlow(adata, "day", per_interval=per, seed=0)
        m.train(steps=400, batch_size=128, progress=False)
        fits[per] = m
    per, shared = fits[True], fits[False]
    assert isinstance(per.net, IntervalMLP) and per.net.config["knots"] == [0.0, 1.0, 2.0]
    X1 = per.cells_at(1.0)
    v = {t: per.velocity(X1, t).mean(0) for t in (0.99, 1.0, 1.01)}
    np.testing.assert_allclose(
        v[0.99], [2.0, 0.0], atol=0.15
    )  # arriving at day 1 along the first axis
    np.testing.assert_allclose(v[1.01], [0.0, 2.0], atol=0.15)  # leaving along the second
    np.testing.assert_allclose(
        v[1.0], (v[0.99] + v[1.01]) / 2, atol=0.05
    )  # at the knot: the mean of the two
    np.testing.assert_allclose(per.velocity(per.cells_at(0.0), 0.0).mean(0), [2.0, 0.0], atol=0.15)
    np.testing.assert_allclose(per.velocity(per.cells_at(2.0), 2.0).mean(0), [0.0, 2.0], atol=0.15)
    # the shared network is continuous in time: just before and after day 1 it blends the two
    # directions
    for t, true in ((0.99, [2.0, 0.0]), (1.01, [0.0, 2.0])):
        assert np.linalg.norm(shared.velocity(X1, t).mean(0) - true) > 0.7
    w1 = {
        p: cf.metrics.wasserstein(m.push(m.cells_at(0.0), 0.0, 1.0), m.cells_at(1.0), p=1)
        for p, m in fits.items()
    }
    assert w1[True] < 0.08 and w1[True] < 0.6 * w1[False]  # measured: 0.05 against 0.12-0.15
    back = per.push(per.cells_at(2.0), 2.0, 0.0)
    assert cf.metrics.wasserstein(back, per.cells_at(0.0), p=1) < 0.1


def test_per_interval_push_backwards_from_a_knot_uses_the_interval_that_ends_there():
    adata = turning_course(n=50)
    m = cf.CellFlow(adata, "day", per_interval=True, seed=0)
    m.train(steps=5, batch_size=32, progress=False)
    X = m.cells_at(1.0)
    z = torch.tensor(m.scaler.forward(X), dtype=torch.float32)
    for t_to, net in ((0.99, m.net.nets[0]), (1.01, m.net.nets[1])):
        with torch.no_grad():
            step = z + (t_to - 1.0) * net(torch.tensor(1.0), z)
        expected = step.numpy().astype(np.float64) * m.scaler.scale + m.scaler.mean
        np.testing.assert_allclose(m.push(X, 1.0, t_to, steps=1), expected, rtol=1e-5, atol=1e-6)


def test_per_interval_holdout_save_load_and_sb(tmp_path):
    adata = turning_course(
        n=60, centres=((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    )  # days 0-3
    m = cf.CellFlow(adata, "day", per_interval=True, method="sb", seed=2)
    assert m.net.config["knots"] == [0.0, 1.0, 2.0, 3.0] and isinstance(m.score_net, IntervalMLP)
    m.train(steps=20, batch_size=32, holdout=2.0, progress=False)
    assert m.net.config["knots"] == [0.0, 1.0, 3.0]  # the held-out day is not a knot
    assert m.score_net.config["knots"] == [0.0, 1.0, 3.0]
    assert "per_interval=True" in repr(m)
    m.save(tmp_path / "m")
    again = cf.CellFlow.load(tmp_path / "m", adata)
    assert (
        again.per_interval and again.holdout == 2.0 and again.net.config["knots"] == [0.0, 1.0, 3.0]
    )
    X = m.cells_at(1.0)[:10]
    np.testing.assert_array_equal(again.push(X, 1.0, 3.0), m.push(X, 1.0, 3.0))
    np.testing.assert_array_equal(
        again.push(X, 1.0, 3.0, sde=True, seed=4), m.push(X, 1.0, 3.0, sde=True, seed=4)
    )
    np.testing.assert_array_equal(again.velocity(X, 1.0), m.velocity(X, 1.0))
    df = cf.evaluate_holdout(
        adata,
        "day",
        methods=["ot"],
        seeds=[0],
        steps=5,
        batch_size=16,
        per_interval=True,
        held_out=[2.0],
        progress=False,
    )
    assert np.isfinite(df.w1).all() and "OT-CFM" in set(df.method)
