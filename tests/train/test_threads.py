"""The thread policy (cellflow.train.threads): one intra-op thread unless the user asks, restored
after."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import cellflow as cf
from cellflow.train import threads as th


@pytest.fixture
def at_default(monkeypatch):
    """torch's count as cellflow saw it at import, no environment override, no set_threads."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "_DEFAULT", None)
    torch.set_num_threads(th._TORCH_AT_IMPORT)
    yield
    torch.set_num_threads(before)


def _spy_fit(threads=None, fail=False, **kw):
    seen = []
    m = cf.FlowModel(2, "icfm", seed=0)
    real = m.loss

    def loss(batch):
        seen.append(torch.get_num_threads())
        if fail:
            raise RuntimeError("boom")
        return real(batch)

    m.loss = loss
    m.fit(
        torch.randn(64, 2),
        torch.randn(64, 2),
        steps=3,
        batch_size=16,
        progress=False,
        threads=threads,
        **kw,
    )
    return seen


def test_one_thread_by_default_and_the_callers_count_restored(at_default):
    torch.set_num_threads(th._TORCH_AT_IMPORT)
    assert _spy_fit() == [1, 1, 1]
    assert torch.get_num_threads() == th._TORCH_AT_IMPORT
    with pytest.raises(RuntimeError, match="boom"):
        _spy_fit(fail=True)
    assert torch.get_num_threads() == th._TORCH_AT_IMPORT  # restored after an exception too


def test_an_explicit_count_is_honoured(at_default, monkeypatch):
    assert _spy_fit(threads=3) == [3, 3, 3]
    other = th._TORCH_AT_IMPORT + 1
    torch.set_num_threads(other)  # the user's own torch setting
    assert _spy_fit() == [other] * 3 and torch.get_num_threads() == other
    torch.set_num_threads(th._TORCH_AT_IMPORT)
    monkeypatch.setenv("OMP_NUM_THREADS", str(th._TORCH_AT_IMPORT))
    assert _spy_fit() == [th._TORCH_AT_IMPORT] * 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    cf.set_threads(2)
    assert _spy_fit() == [2, 2, 2]
    with pytest.raises(ValueError, match="threads must be"):
        cf.set_threads(0)


def test_inference_runs_in_the_scope_and_restores(at_default):
    a = _course()
    model = cf.CellFlow(a, "day", seed=0)
    model.train(steps=3, batch_size=16, progress=False)
    seen = []
    net = model.net
    hook = net.register_forward_hook(lambda *args: seen.append(torch.get_num_threads()))
    model.push(model.cells_at(0.0)[:4], 0, 1, steps=2)
    model.velocity(model.cells_at(0.0)[:4], 0.0)
    hook.remove()
    assert set(seen) == {1} and torch.get_num_threads() == th._TORCH_AT_IMPORT


def _course():
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.repeat([0.0, 1.0, 2.0], 30)
    a = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(90)]))
    a.obsm["X_pca"] = rng.normal(size=(90, 3)) + t[:, None]
    return a


def test_a_seed_gives_the_same_weights_in_a_fresh_process_under_the_policy():
    """Same seed, same weights, bit for bit, in two processes that both run under the policy."""
    code = (
        "import torch, cellflow as cf; m = cf.FlowModel(2, 'sb', seed=3); "
        "m.fit(torch.randn(128, 2, generator=torch.Generator().manual_seed(0)), "
        "torch.randn(128, 2, generator=torch.Generator().manual_seed(1)) + 2, steps=30, "
        "batch_size=64, "
        "progress=False); print(repr(torch.cat([p.flatten() for p in "
        "m.net.parameters()]).sum().item()))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
        ).stdout
        for _ in range(2)
    ]
    assert outs[0] and outs[0] == outs[1]
