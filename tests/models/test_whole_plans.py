"""CellFlow.train(ot_plan=...): one plan between whole time points, or one per minibatch."""

import pytest
import torch
from courses import course

import cellflow as cf
import cellflow.models._cell_training as cells_module
from cellflow.couplings import WholePlan


@pytest.mark.parametrize(
    "method, asked, used",
    [
        ("ot", "auto", "whole"),
        ("sb", "auto", "whole"),
        ("ot", "minibatch", "minibatch"),
        ("sb", "whole", "whole"),
        ("icfm", "auto", None),
        ("icfm", "whole", None),  # nothing to solve
    ],
)
def test_the_plan_used_is_recorded(method, asked, used):
    m = cf.CellFlow(course(), "day", method=method, seed=0)
    m.train(steps=2, progress=False, ot_plan=asked)
    assert m.ot_plan == used


@pytest.mark.filterwarnings("ignore:ot_batch_size")
def test_auto_keeps_minibatches_where_a_whole_plan_would_not_fit_or_is_not_defined(monkeypatch):
    a = course(n=40)
    m = cf.CellFlow(a, "day", method="ot", seed=0)
    monkeypatch.setattr(cells_module, "WHOLE_PLAN_ENTRIES", 40 * 40 - 1)
    m.train(steps=2, progress=False)
    assert m.ot_plan == "minibatch"
    monkeypatch.setattr(cells_module, "WHOLE_PLAN_ENTRIES", 40 * 40)
    m.train(steps=2, progress=False)
    assert m.ot_plan == "whole"
    m.train(steps=2, progress=False, ot_batch_size=60)  # asks for minibatches of 60 cells
    assert m.ot_plan == "minibatch"
    g = cf.CellFlow(a, "day", method="ot", growth="learned", seed=0)
    g.train(steps=2, progress=False)
    assert g.ot_plan == "minibatch"


@pytest.mark.filterwarnings("ignore:ot_batch_size")
def test_bad_ot_plan_requests_are_refused_before_training():
    m = cf.CellFlow(course(), "day", method="ot", seed=0)
    with pytest.raises(ValueError, match="ot_plan must be one of"):
        m.train(steps=2, progress=False, ot_plan="global")
    with pytest.raises(ValueError, match="ot_batch_size"):
        m.train(steps=2, progress=False, ot_plan="whole", ot_batch_size=60)
    g = cf.CellFlow(course(), "day", method="ot", growth="learned", seed=0)
    with pytest.raises(ValueError, match="growth-aware"):
        g.train(steps=2, progress=False, ot_plan="whole")


def test_whole_plans_are_solved_once_on_every_cell_and_training_is_reproducible(monkeypatch):
    solved = []
    init = WholePlan.__init__

    def spy(self, coupling, x0, x1, a=None, b=None):
        solved.append((len(x0), len(x1), a))
        init(self, coupling, x0, x1, a, b)

    monkeypatch.setattr(WholePlan, "__init__", spy)
    a = course(n=30, times=(0, 1, 2, 3))
    m = cf.CellFlow(a, "day", method="sb", seed=3)
    m.train(steps=40, progress=False)
    assert solved == [(30, 30, None)] * 3  # one plan per interval, not one per step
    again = cf.CellFlow(a, "day", method="sb", seed=3)
    again.train(steps=40, progress=False)
    for k, v in m.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[k], v)
    # a bootstrap replicate solves its plans on its resample: each cell weighted by its draws
    solved.clear()
    (rep,) = m.bootstrap(1, progress=False)
    for (n0, n1, w), (i, j) in zip(solved, [(0, 1), (1, 2), (2, 3)]):
        counts = torch.bincount(rep._resample[i], minlength=30).double() / 30
        assert torch.equal(w, counts) and bool((w == 0).any())


def test_a_whole_plan_flow_learns_the_transport():
    # two groups of cells that swap nothing and drift one unit per time point: pushing the first
    # time point to the second lands on it (W1 well below the previous time point's)
    import ot

    a = course(n=60, d=3, times=(0, 1, 2))
    X, t = a.obsm["X_pca"], a.obs["day"].to_numpy()
    for method in ("ot", "sb"):
        m = cf.CellFlow(a, "day", method=method, seed=0)
        m.train(steps=600, progress=False, ot_plan="whole")
        pushed = m.push(X[t == 0], 0, 1)
        w1 = ot.emd2([], [], ot.dist(pushed, X[t == 1], metric="euclidean"))
        before = ot.emd2([], [], ot.dist(X[t == 0], X[t == 1], metric="euclidean"))
        assert w1 < 0.5 * before, (method, w1, before)


@pytest.mark.filterwarnings("ignore:held out")
def test_the_benchmark_keeps_the_paper_s_minibatch_plans_unless_asked(monkeypatch, tmp_path):
    from cellflow.cli import main

    used = []
    train = cf.CellFlow.train

    def spy(self, *args, **kwargs):
        out = train(self, *args, **kwargs)
        used.append(self.ot_plan)
        return out

    monkeypatch.setattr(cf.CellFlow, "train", spy)
    a = course(n=30)
    cf.evaluate_holdout(a, "day", methods=["ot"], seeds=[0], steps=2, progress=False)
    assert set(used) == {"minibatch"}
    used.clear()
    cf.evaluate_holdout(
        a, "day", methods=["sb"], seeds=[0], steps=2, progress=False, ot_plan="auto"
    )
    assert set(used) == {"whole"}
    used.clear()
    monkeypatch.chdir(tmp_path)
    a.write_h5ad("c.h5ad")
    argv = ["fit", "c.h5ad", "--time-key", "day", "--out", "o.h5ad", "--steps", "2", "--quiet"]
    assert main(argv + ["--ot-plan", "minibatch", "--no-velocity"]) == 0
    assert used == ["minibatch"]
