"""Behaviour pinned across refactors: each model trained for a few steps at a fixed seed gives
the weights and outputs recorded from the code before the package was regrouped (issue #40).

``reference_outputs()`` computes, per model, the first values of a few outputs and a SHA-256 of
all weights; ``python tests/test_regression.py`` prints them, to record new references after a
change that is *meant* to alter behaviour. The test compares the values with a tolerance far
below any change of behaviour (a different draw or a different step moves them by 1e-2 or
more), so that a CPU with other vector units passes; the digests are compared on the machine
that recorded them (same torch build and CPU), where the results are bit for bit the same.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE = Path(__file__).with_name("regression_reference.json")


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(
            np.ascontiguousarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t).tobytes()
        )
    return h.hexdigest()


def _weights(*nets) -> list:
    return [p for net in nets if net is not None for p in net.state_dict().values()]


def _head(x, n: int = 12) -> list[float]:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    return [float(v) for v in x.ravel()[:n]]


def _flow_models() -> dict:
    from cellflow import FlowModel
    from cellflow.datasets import toy_sample

    out = {}
    g = torch.Generator().manual_seed(0)
    x0, x1 = toy_sample("8gaussians", 256, generator=g), toy_sample("moons", 256, generator=g)
    for method in ("ot", "icfm", "sb"):
        m = FlowModel(2, method=method, seed=0)
        m.fit(x0, x1, steps=15, batch_size=64, progress=False)
        pushed = m.transport(x0[:8], solver="euler", steps=10)
        out[f"FlowModel/{method}"] = dict(
            weights=_digest(_weights(m.net, m.score_net)),
            head=_head(pushed),
            digest=_digest([pushed]),
        )
    return out


def _cell_flows() -> dict:
    import anndata as ad
    import pandas as pd

    from cellflow import CellFlow

    rng = np.random.default_rng(0)
    t = np.repeat([0, 1, 2, 3], 60)
    X = rng.normal(scale=0.4, size=(len(t), 4))
    X[:, 0] += t
    X[:, 1] += np.sin(t)
    adata = ad.AnnData(obs=pd.DataFrame({"day": t}, index=[f"c{i}" for i in range(len(t))]))
    adata.obsm["X_pca"] = X
    out = {}
    for name, kw in {
        "ot": {},
        "sb": {"method": "sb"},
        "mfm": {"method": "mfm"},
        "ot-per-interval": {"per_interval": True},
    }.items():
        m = CellFlow(adata, "day", seed=0, **kw)
        m.train(steps=12, batch_size=32, progress=False)
        pushed = m.push(X[:8], 0, 3, solver="euler", steps=20)
        vel = m.velocity(X[:8], 1.5)
        out[f"CellFlow/{name}"] = dict(
            weights=_digest(_weights(m.net, getattr(m, "score_net", None))),
            head=_head(pushed) + _head(vel, 4),
            digest=_digest([pushed, vel]),
        )
    return out


def _image_flow() -> dict:
    from cellflow.images import ImageFlow, load_images

    x, y, _ = load_images("digits")
    flow = ImageFlow((1, 8, 8), n_classes=10, network={"channels": 16}, seed=0)
    flow.train(x[:256], y[:256], steps=3, batch_size=16, progress=False)
    s = flow.sample(4, labels=[0, 1, 2, 3], steps=3, seed=0)
    return {
        "ImageFlow": dict(weights=_digest(_weights(flow.net)), head=_head(s), digest=_digest([s]))
    }


def _tabular_flow() -> dict:
    from cellflow.datasets import load_table
    from cellflow.tabular import TabularFlow

    df = load_table("iris")
    tf = TabularFlow(df, label="target", seed=0)
    tf.train(steps=20, progress=False)
    fake = tf.sample(6, seed=0)
    values = fake.drop(columns="target").to_numpy(dtype=np.float64)
    return {
        "TabularFlow": dict(
            weights=_digest(_weights(tf.model.net)),
            head=_head(values),
            digest=_digest([values, fake["target"].to_numpy(np.int64)]),
        )
    }


def reference_outputs() -> dict:
    from cellflow.train.threads import thread_scope

    with torch.random.fork_rng(), thread_scope(1):  # one thread: one order of every sum
        return {**_flow_models(), **_cell_flows(), **_image_flow(), **_tabular_flow()}


def _machine() -> str:
    return f"{platform.machine()} {platform.processor()} torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}"


@pytest.mark.slow
def test_models_give_the_recorded_weights_and_outputs():
    ref = json.loads(REFERENCE.read_text())
    now = reference_outputs()
    assert sorted(now) == sorted(ref["outputs"])
    for name, r in ref["outputs"].items():
        np.testing.assert_allclose(now[name]["head"], r["head"], rtol=1e-4, atol=1e-5, err_msg=name)
    if ref["machine"] == _machine():  # bit for bit where the references were recorded
        for name, r in ref["outputs"].items():
            assert (now[name]["weights"], now[name]["digest"]) == (r["weights"], r["digest"]), name


if __name__ == "__main__":
    print(json.dumps({"machine": _machine(), "outputs": reference_outputs()}, indent=1))
