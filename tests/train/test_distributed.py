"""Data-parallel training with 2 CPU processes on the gloo backend: both ranks end with the same
weights, each rank draws its own minibatches, and the result differs from one process."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cellflow as cf
from cellflow.datasets import toy_sample


def _worker(rank: int, world: int, store: str, out: str, kind: str):
    kind, _, mode = kind.partition("-")
    global_coupling = mode == "global"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from cellflow.train import distributed

        assert distributed.is_distributed() and distributed.rank() == rank
        if kind == "flow":
            model = cf.FlowModel(2, "ot", seed=0)
            src = lambda n, g: toy_sample("8gaussians", n, generator=g)  # noqa: E731
            tgt = lambda n, g: toy_sample("moons", n, generator=g)  # noqa: E731
            hist = model.fit(
                src,
                tgt,
                steps=30,
                batch_size=64,
                progress=False,
                prefetch=2,
                workers=1,
                global_coupling=global_coupling,
            )
            nets = {"net": model.net}
        else:  # a single-cell time course
            import anndata as ad
            import numpy as np
            import pandas as pd

            rng = np.random.default_rng(0)
            t = np.repeat([0.0, 1.0, 2.0], 100)
            adata = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]))
            adata.obsm["X_pca"] = rng.normal(scale=0.3, size=(len(t), 3)) + t[:, None]
            model = cf.CellFlow(adata, "day", method="ot", seed=0)
            hist = model.train(
                steps=20, batch_size=32, progress=False, global_coupling=global_coupling
            )
            nets = {"net": model.net}
        torch.save(
            {"state": {k: m.state_dict() for k, m in nets.items()}, "loss": hist.loss},
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _run(tmp_path, kind):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path), kind), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.parametrize("kind", ["flow", "cellflow", "flow-global", "cellflow-global"])
def test_ddp_two_gloo_ranks_hold_identical_weights(tmp_path, kind):
    r0, r1 = _run(tmp_path, kind)
    for name, state in r0["state"].items():
        for key, value in state.items():
            assert torch.equal(value, r1["state"][name][key]), (name, key)
    # each rank trained on its own minibatches (or its own share of the global batch): their
    # losses differ
    assert r0["loss"] != r1["loss"]
    if kind == "flow":
        # and the averaged gradients differ from a single process's run on rank 0's batches
        single = cf.FlowModel(2, "ot", seed=0)
        single.fit(
            lambda n, g: toy_sample("8gaussians", n, generator=g),
            lambda n, g: toy_sample("moons", n, generator=g),
            steps=30,
            batch_size=64,
            progress=False,
        )
        assert single.history.loss[0] == pytest.approx(r0["loss"][0])  # same first batch on rank 0
        w = next(iter(r0["state"]["net"].values()))
        assert not torch.equal(w, next(iter(single.net.state_dict().values())))


def test_step_generators_differ_by_rank_only_beyond_rank_zero():
    from cellflow.train.trainer import step_generator

    a = torch.rand(3, generator=step_generator(0, 5))
    assert torch.equal(a, torch.rand(3, generator=step_generator(0, 5, rank=0)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(0, 5, rank=1)))


@pytest.mark.parametrize("replace", [False, True])
def test_global_coupling_shares_partition_one_optimal_plan(monkeypatch, replace):
    """Two ranks' shares of a global coupling (faked world of 2, no process group) together
    are the pairs of one exact OT plan of the 2B-row batch, not two B-row plans."""
    import numpy as np
    import ot

    from cellflow.train import distributed
    from cellflow.train.trainer import step_generator

    src = lambda n, g: toy_sample("8gaussians", n, generator=g)  # noqa: E731
    tgt = lambda n, g: toy_sample("moons", n, generator=g)  # noqa: E731
    model = cf.FlowModel(2, "ot", seed=0, coupling_kwargs={"replace": replace})
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        s, _ = model._make_batch_fn(src, tgt, 32, None, None, global_coupling=True)(
            step_generator(0, 3)
        )
        assert s.x0.shape == (32, 2)
        shares.append(s)
    assert not torch.equal(shares[0].x0, shares[1].x0)
    g = step_generator(0, 3)
    X0, X1 = src(64, g), tgt(64, g)  # the global batch, as every rank draws it
    M = torch.cdist(X0.double(), X1.double()) ** 2
    P = ot.emd(np.full(64, 1 / 64), np.full(64, 1 / 64), M.numpy())
    i0 = torch.cat([s.i0 for s in shares])
    i1 = torch.cat([s.i1 for s in shares])
    assert torch.equal(torch.cat([s.x0 for s in shares]), X0[i0])
    assert torch.allclose(torch.cat([s.x1 for s in shares]), X1[i1])
    # every pair lies on the support of the global optimal plan
    assert (P[i0.numpy(), i1.numpy()] > 0).all()
    if not replace:  # a permutation: its cost is the optimum
        assert sorted(i0.tolist()) == list(range(64))
        assert float(M[i0, i1].mean()) == pytest.approx(
            ot.emd2(np.full(64, 1 / 64), np.full(64, 1 / 64), M.numpy()), rel=1e-9
        )
    # one rank (world 1) keeps all pairs: the option changes nothing without a process group
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    a, _ = model._make_batch_fn(src, tgt, 32, None, None, global_coupling=True)(
        step_generator(0, 3)
    )
    b, _ = model._make_batch_fn(src, tgt, 32, None, None)(step_generator(0, 3))
    assert torch.equal(a.x_t, b.x_t)
