"""Training loop: reproducibility, workers, checkpoints, EMA, early stopping, persistence."""

import json

import pytest
import torch

import cellflow as cf
from cellflow.datasets import toy_sample

SRC = lambda n, g: toy_sample("8gaussians", n, generator=g)  # noqa: E731
TGT = lambda n, g: toy_sample("moons", n, generator=g)  # noqa: E731


def test_toy_samplers_follow_their_definitions():
    # the compact samplers against the definitions in cellflow.datasets._toy, from the same draws
    import math

    n = 101
    g = torch.Generator().manual_seed(5)
    idx, z = torch.randint(8, (n,), generator=g), torch.randn(n, 2, generator=g)
    ang = idx.double() * math.pi / 4
    want = 5 * torch.stack([ang.cos(), ang.sin()], 1) + math.sqrt(math.sqrt(0.1)) * z.double()
    torch.testing.assert_close(
        toy_sample("8gaussians", n, generator=torch.Generator().manual_seed(5)).double(),
        want,
        rtol=0,
        atol=1e-5,
    )
    g = torch.Generator().manual_seed(6)
    a_out = torch.rand(n // 2, generator=g).double() * math.pi
    a_in = torch.rand(n - n // 2, generator=g).double() * math.pi
    perm, shift = torch.randperm(n, generator=g), torch.rand(n, 1, generator=g).double()
    pts = torch.cat(
        [
            torch.stack([a_out.cos(), a_out.sin()], 1),
            torch.stack([1 - a_in.cos(), 0.5 - a_in.sin()], 1),
        ]
    )
    want = (pts[perm] + 0.2 * shift) * 3 - 1
    torch.testing.assert_close(
        toy_sample("moons", n, generator=torch.Generator().manual_seed(6)).double(),
        want,
        rtol=0,
        atol=1e-5,
    )


def weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.net.parameters()])


@pytest.mark.parametrize("method", ["icfm", "ot", "sb"])
def test_same_seed_same_weights_and_workers_change_nothing(method):
    runs = []
    for prefetch, workers in [(0, 1), (0, 1), (4, 2)]:
        m = cf.FlowModel(2, method, seed=3)
        m.fit(SRC, TGT, steps=30, batch_size=64, prefetch=prefetch, workers=workers, progress=False)
        runs.append(weights(m))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = cf.FlowModel(2, method, seed=4)
    other.fit(SRC, TGT, steps=30, batch_size=64, progress=False)
    assert not torch.equal(runs[0], weights(other))


def test_exact_ot_batches_split_into_a_gil_free_solve_and_the_same_batch(monkeypatch):
    # prepare(g) draws in the training thread; the worker's job is the compiled solve alone
    # (numpy in, numpy out); finish(job()) is make_batch(g) bit for bit
    import numpy as np

    import cellflow.train.trainer as training

    def batch_fn(method, dim=2, **kw):
        m = cf.FlowModel(dim, method, seed=0, **kw)
        src = SRC if dim == 2 else (lambda n, g: torch.randn(n, dim, generator=g))
        return m, m._make_batch_fn(src, TGT if dim == 2 else src, 64, None, None, False, False)

    m, mb = batch_fn("ot")
    job, finish = mb.prepare(training.step_generator(0, 5))
    cols = job()
    assert isinstance(cols, np.ndarray) and sorted(cols.tolist()) == list(range(64))
    split, inline = finish(cols)[0], mb(training.step_generator(0, 5))[0]
    for k in ("t", "x_t", "u_t", "eps", "i0", "i1"):
        assert torch.equal(getattr(split, k), getattr(inline, k)), k
    # no split where the solve is not the auction on points: SB, I-CFM, > POINTS_MAX_DIM features
    from cellflow.couplings.assignment import POINTS_MAX_DIM

    assert not hasattr(batch_fn("sb")[1], "prepare") and not hasattr(batch_fn("icfm")[1], "prepare")
    assert not hasattr(batch_fn("ot", dim=POINTS_MAX_DIM + 1)[1], "prepare")
    # where the coupling declines at run time, the worker runs the whole coupling, with the same
    # draws
    monkeypatch.setattr(m.matcher, "defer_sample", lambda *a, **k: None)
    job, finish = mb.prepare(training.step_generator(0, 5))
    fallback = finish(job())[0]
    assert torch.equal(fallback.x_t, inline.x_t) and torch.equal(fallback.i1, inline.i1)


def test_grouped_worker_tasks_hand_out_every_step_s_batch_in_order():
    # the solves of `group` consecutive steps go to a worker as one task (the jobs' together);
    # every step still gets make_batch(its generator), whatever the group, depth, workers, start
    import cellflow.train.trainer as training

    tasks = []

    class Job:
        def __init__(self, value):
            self.value = value

        def __call__(self):
            return self.value

        @staticmethod
        def together(jobs):
            tasks.append(len(jobs))
            return [j.value for j in jobs]

    def draw(g):
        return torch.randn(3, generator=g)

    def make_batch(g):
        return draw(g) * 2

    def prepare(g):
        x = draw(g)
        return Job(x), (lambda v: v * 2)

    make_batch.prepare = prepare
    for first, last, depth, group, workers in [
        (0, 37, 4, 16, 2),
        (5, 23, 8, 4, 1),
        (0, 3, 2, 16, 2),
        (2, 9, 1, 1, 2),
    ]:
        tasks.clear()
        pool = training._BatchPool(make_batch, 7, first, last, depth, workers, group=group)
        try:
            got = [pool.get() for _ in range(first, last)]
        finally:
            pool.close()
        for step, batch in zip(range(first, last), got):
            assert torch.equal(batch, make_batch(training.step_generator(7, step)))
        n = last - first
        expected = [group] * (n // group) + ([n % group] if n % group else [])
        assert tasks == ([m for m in expected if m > 1]), (first, last, group, tasks)


@pytest.mark.parametrize("method, ahead", [("icfm", 0), ("sb", 0), ("ot", 4)])
def test_batches_are_drawn_ahead_by_default_only_for_exact_ot(method, ahead, monkeypatch):
    import cellflow.train.trainer as training

    depths = []
    real = training._BatchPool

    class Spy(real):
        def __init__(self, *args, **kwargs):
            depths.append(args[4])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "_BatchPool", Spy)
    cf.FlowModel(2, method, seed=0).fit(SRC, TGT, steps=3, batch_size=16, progress=False)
    assert depths == ([ahead] if ahead else [])
    assert training.default_prefetch(cf.FlowModel(2, method).matcher.coupling) == ahead


def test_training_reduces_the_loss_and_moves_mass():
    m = cf.FlowModel(2, "ot", seed=0)
    x0 = SRC(1000, torch.Generator().manual_seed(9))
    y = TGT(1000, torch.Generator().manual_seed(10))
    before = cf.metrics.wasserstein(m.transport(x0), y)
    hist = m.fit(SRC, TGT, steps=400, batch_size=128, progress=False)
    assert sum(hist.loss[-50:]) / 50 < 0.5 * sum(hist.loss[:5]) / 5
    assert cf.metrics.wasserstein(m.transport(x0), y) < 0.5 * before


def test_save_load_round_trip(tmp_path):
    m = cf.FlowModel(2, "sb", seed=0)
    m.fit(SRC, TGT, steps=20, batch_size=32, progress=False)
    m.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["method"] == "sb" and cfg["net"]["hidden"] == [64, 64, 64]
    m2 = cf.FlowModel.load(tmp_path / "model")
    x = torch.randn(16, 2)
    assert torch.equal(m.velocity(0.3, x), m2.velocity(0.3, x))
    assert torch.equal(m.score(0.3, x), m2.score(0.3, x))
    assert torch.equal(
        m.transport(x, solver="euler", steps=10), m2.transport(x, solver="euler", steps=10)
    )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        m.save(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="config.json"):
        cf.FlowModel.load(tmp_path / "nothing")


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    full = cf.FlowModel(2, "ot", seed=1)
    full.fit(SRC, TGT, steps=40, batch_size=32, progress=False, ema_decay=0.9, warmup_steps=5)
    part = cf.FlowModel(2, "ot", seed=1)
    part.fit(
        SRC,
        TGT,
        steps=20,
        batch_size=32,
        progress=False,
        ema_decay=0.9,
        warmup_steps=5,
        checkpoint_dir=str(tmp_path),
        checkpoint_every=20,
    )
    resumed = cf.FlowModel(2, "ot", seed=1)
    resumed.fit(
        SRC,
        TGT,
        steps=40,
        batch_size=32,
        progress=False,
        ema_decay=0.9,
        warmup_steps=5,
        checkpoint_dir=str(tmp_path),
        checkpoint_every=20,
        resume=True,
    )
    assert resumed.history.steps == 40
    assert torch.equal(weights(full), weights(resumed))


def test_ema_weights_are_used_for_inference():
    plain = cf.FlowModel(2, "icfm", seed=0)
    plain.fit(SRC, TGT, steps=50, batch_size=32, progress=False)
    ema = cf.FlowModel(2, "icfm", seed=0)
    ema.fit(SRC, TGT, steps=50, batch_size=32, progress=False, ema_decay=0.9)
    assert not torch.equal(weights(plain), weights(ema))


def test_early_stopping_restores_the_best_weights():
    calls = []

    def val(model):  # gets worse after the second validation
        calls.append(weights(model).clone())
        return [3.0, 1.0, 2.0, 2.5, 2.7, 2.9][len(calls) - 1]

    m = cf.FlowModel(2, "icfm", seed=0)
    hist = m.fit(
        SRC, TGT, steps=600, batch_size=32, progress=False, val_fn=val, val_every=10, patience=3
    )
    assert hist.stopped_early and hist.steps == 50 and hist.best_step == 20
    assert torch.equal(weights(m), calls[1])


def test_bad_input_is_named():
    m = cf.FlowModel(2, "ot")
    with pytest.raises(ValueError, match="NaN or inf"):
        m.fit(torch.tensor([[0.0, float("nan")]] * 10), torch.randn(10, 2), steps=1, progress=False)
    with pytest.raises(ValueError, match="model's 2 features"):
        m.fit(torch.randn(10, 3), torch.randn(10, 3), steps=1, progress=False, prefetch=0)
    with pytest.raises(ValueError, match="unknown method"):
        cf.FlowModel(2, "magic")
    with pytest.raises(ValueError, match="only the SB path has a score"):
        cf.FlowModel(2, "ot", train_score=True)


def test_class_conditioning_follows_the_pairing():
    # two classes at x = -3 and x = +3; a conditional model must send noise to the right one
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(2, (2000,), generator=g)
    target = torch.stack([labels.float() * 6 - 3, torch.zeros(2000)], 1) + 0.1 * torch.randn(
        2000, 2, generator=g
    )
    m = cf.FlowModel(2, "ot", n_classes=2, seed=0)
    m.fit(
        lambda n, g: torch.randn(n, 2, generator=g),
        target,
        target_cond=labels,
        steps=600,
        batch_size=128,
        progress=False,
    )
    x0 = torch.randn(500, 2)
    for c, sign in [(0, -1), (1, 1)]:
        out = m.transport(x0, cond=torch.full((500,), c))
        assert (torch.sign(out[:, 0]) == sign).float().mean() > 0.95


def test_warm_ema_matches_its_formula():
    from torch.optim.swa_utils import AveragedModel

    from cellflow.train.optim import warm_ema

    p = torch.nn.Parameter(torch.zeros(1))
    holder = torch.nn.ParameterList([p])
    avg = AveragedModel(holder, multi_avg_fn=warm_ema(0.99))
    expected = None
    for n, value in enumerate([1.0, 5.0, -2.0, 3.0, 7.0]):
        with torch.no_grad():
            p.fill_(value)
        avg.update_parameters(holder)
        # the first update copies; update n (n >= 1 averaged before it) decays by min(0.99, (1 + n)
        # / (10 + n))
        expected = (
            value
            if n == 0
            else (lambda d: d * expected + (1 - d) * value)(min(0.99, (1 + n) / (10 + n)))
        )
        assert float(avg.module[0]) == pytest.approx(expected)


def test_labelled_ot_couples_within_each_class():
    import ot

    model = cf.FlowModel(2, "ot", n_classes=3, seed=0)
    g = torch.Generator().manual_seed(0)
    x1 = (
        torch.randn(300, 2, generator=g) * 0.3 + torch.arange(300).remainder(3).float()[:, None] * 4
    )
    labels = torch.arange(300).remainder(3)
    make = model._make_batch_fn(lambda n, g: torch.randn(n, 2, generator=g), x1, 90, None, labels)
    s, cond = make(torch.Generator().manual_seed(1))
    assert len(cond) == 90
    for c in range(3):
        rows = cond == c
        i0 = torch.sort(s.i0[rows]).values
        # each class is paired with its own contiguous slice of the noise batch ...
        assert torch.equal(i0, torch.arange(int(i0[0]), int(i0[0]) + len(i0)))
        # ... by an optimal plan: the pairs' cost equals the class sub-problem's optimum
        a, b = s.x0[rows].double(), s.x1[rows].double()
        pair_cost = (a - b).pow(2).sum(1).mean()
        opt = ot.emd2([], [], torch.cdist(a, b).pow(2).numpy())
        assert float(pair_cost) == pytest.approx(opt, rel=1e-9)
    pooled = model._make_batch_fn(
        lambda n, g: torch.randn(n, 2, generator=g),
        x1,
        90,
        None,
        labels,
        couple_within_labels=False,
    )
    s2, cond2 = pooled(torch.Generator().manual_seed(1))
    assert len(cond2) == 90


def test_ot_workers_get_the_cores_and_the_thread_count_is_restored():
    from cellflow.couplings import ExactOT, IndependentCoupling
    from cellflow.train.trainer import TrainConfig, Trainer, worker_step_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ot = ExactOT()
        assert (
            worker_step_threads(ot, 4, 2) == 1
            and worker_step_threads(ot, 4, 1) == 1
            and worker_step_threads(ot, 0, 2) is None
        )
        assert (
            worker_step_threads(IndependentCoupling(), 4, 2) is None
        )  # no solve to give a core to
        net, seen = torch.nn.Linear(2, 2), []

        def loss_fn(batch):
            seen.append(torch.get_num_threads())
            return (net(batch) ** 2).mean()

        cfg = TrainConfig(steps=5, prefetch=2, workers=1, step_threads=1, progress=False)
        Trainer({"net": net}, lambda g: torch.randn(8, 2, generator=g), loss_fn, cfg).run()
        assert (
            seen == [1] * 5 and torch.get_num_threads() == 2
        )  # one thread while the workers run, then restored
        seen.clear()
        Trainer(
            {"net": net},
            lambda g: torch.randn(8, 2, generator=g),
            loss_fn,
            TrainConfig(steps=3, progress=False, threads=2),
        ).run()
        assert seen == [2] * 3  # inline training on the threads asked for
    finally:
        torch.set_num_threads(before)


def test_a_slow_first_batch_stays_out_of_the_progress_bar_s_rate(monkeypatch):
    # numba compiles the exact-OT solver during the first batch on first use (about 10 s); the bar's
    # clock starts once that batch is there, so its rate and ETA describe the steps that follow
    import time

    from cellflow.train import trainer as training

    bars = []

    class Recording(training.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(training, "tqdm", Recording)
    net, ready = torch.nn.Linear(1, 1), []

    def make(g):
        if not ready:
            time.sleep(1.0)
            ready.append(time.time())
        return torch.randn(8, 1, generator=g)

    cfg = training.TrainConfig(steps=20, lr=0.01, progress=True, prefetch=0)
    training.Trainer({"net": net}, make, lambda x: ((net(x) - x) ** 2).mean(), cfg).run(seed=0)
    (bar,) = bars
    assert bar.start_t >= ready[0] - 0.05  # tqdm's clock is time.time


def test_history_prints_a_summary_not_every_loss():
    h = cf.FlowModel(2, "icfm", seed=0).fit(
        torch.randn(64, 2), torch.randn(64, 2), steps=120, batch_size=16, progress=False
    )
    text = repr(h)
    assert text.startswith("TrainHistory(steps=120, loss first=") and len(text) < 150
    from cellflow.train.trainer import TrainHistory

    assert repr(TrainHistory()) == "TrainHistory(steps=0)"


def test_every_model_trains_with_train_and_fit_is_the_same_method():
    """One verb: FlowModel.train, as CellFlow, ImageFlow and TabularFlow; ``fit`` (its former
    name) is the very same method, so code written with it gives the same weights."""
    assert cf.FlowModel.fit is cf.FlowModel.train
    assert cf.FlowModel.transport is cf.FlowModel.push  # points move with push, as CellFlow's cells
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 2
    a, b = cf.FlowModel(2, method="icfm", seed=3), cf.FlowModel(2, method="icfm", seed=3)
    a.train(x0, x1, steps=5, batch_size=16, progress=False)
    b.fit(x0, x1, steps=5, batch_size=16, progress=False)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)


def test_every_model_stands_on_one_base():
    """FlowModel and CellFlow (and the image and table generators, through FlowModel) share one
    base: the same save, the same training glue, the same networks by name."""
    from cellflow.images import ImageFlow
    from cellflow.models._base import ModelBase

    assert issubclass(cf.FlowModel, ModelBase) and issubclass(cf.CellFlow, ModelBase)
    assert cf.FlowModel.save is cf.CellFlow.save is ModelBase.save
    assert cf.FlowModel._run_training is cf.CellFlow._run_training
    flow = ImageFlow((1, 8, 8), network={"channels": 8}, seed=0)
    assert isinstance(flow.model, ModelBase) and set(flow.model.modules) == {"net"}
