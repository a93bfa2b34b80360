"""The CUDA path: CellFlow, FlowModel and Sinkhorn on a GPU give what they give on the CPU.

Skipped where PyTorch sees no CUDA GPU (CI); run on a GPU machine with ``pytest
tests/models/test_cuda.py``.
The first test runs everywhere: asking for CUDA without one is a clear error.
"""

import numpy as np
import pytest
import torch
from test_cellflow import course

import cellflow as cf

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the error raised where there is no CUDA GPU"
)
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="sees no CUDA GPU; use device='cpu'"):
        cf.CellFlow(course(), "day", device="cuda")
    with pytest.raises(ValueError, match="is not a torch device"):
        cf.CellFlow(course(), "day", device="gpu0")


@needs_cuda
@pytest.mark.parametrize("method", ["ot", "sb", "mfm"])
def test_cellflow_trains_on_cuda_and_loads_on_the_cpu(tmp_path, method):
    adata = course()
    model = cf.CellFlow(adata, "day", method=method, seed=0, device="cuda")
    model.train(steps=300, batch_size=128, holdout=2.0, geodesic_steps=50, progress=False)
    assert next(model.net.parameters()).is_cuda
    pred = model.push(model.cells_at(1.0), 1.0, 2.0)
    assert isinstance(pred, np.ndarray) and pred.shape == (150, 3)
    truth = model.cells_at(2.0)
    assert cf.metrics.wasserstein(pred, truth, p=1) < 0.5 * cf.metrics.wasserstein(
        model.cells_at(1.0), truth, p=1
    )
    v = model.velocity(model.cells_at(1.0), 1.0)
    assert abs(v[:, 0].mean() - 1.0) < 0.3
    if method == "sb":
        assert model.push(model.cells_at(0.0), 0.0, 1.0, sde=True).shape == (150, 3)
    model.save(tmp_path / "m")
    cpu = cf.CellFlow.load(tmp_path / "m", adata)
    assert cpu.device.type == "cpu"
    np.testing.assert_allclose(cpu.velocity(model.cells_at(1.0), 1.0), v, rtol=1e-4, atol=1e-4)
    gpu = cf.CellFlow.load(tmp_path / "m", adata, device="cuda")
    np.testing.assert_allclose(gpu.push(model.cells_at(1.0), 1.0, 2.0), pred, rtol=1e-4, atol=1e-4)


@needs_cuda
@pytest.mark.parametrize("method", ["ot", "sb", "icfm"])
def test_flow_model_trains_on_cuda(method):
    g = torch.Generator().manual_seed(0)
    model = cf.FlowModel(2, method, device="cuda", seed=0)
    model.fit(
        lambda n, gen: torch.randn(n, 2, generator=gen),
        lambda n, gen: torch.randn(n, 2, generator=gen) + 4,
        steps=300,
        batch_size=128,
        progress=False,
    )
    x1 = model.transport(torch.randn(500, 2, generator=g), 0.0, 1.0)
    assert x1.device.type == "cpu" and abs(float(x1.mean()) - 4.0) < 0.5


@needs_cuda
@pytest.mark.parametrize("d", [2, 50])
def test_sinkhorn_on_cuda_matches_the_cpu(d):
    from cellflow.couplings import sinkhorn_log, squared_distances

    rng = np.random.default_rng(d)
    x0, x1 = (
        torch.from_numpy(rng.standard_normal((512, d))),
        torch.from_numpy(rng.standard_normal((512, d)) + 0.5),
    )
    C = squared_distances(x0, x1)
    a = torch.full((512,), 1 / 512, dtype=torch.float64)
    P_cpu = sinkhorn_log(a, a, C, 2.0)
    P_gpu = sinkhorn_log(a.cuda(), a.cuda(), C.cuda(), 2.0)
    assert P_gpu.is_cuda
    np.testing.assert_allclose(P_gpu.cpu().numpy(), P_cpu.numpy(), rtol=1e-8, atol=1e-14)
    err = (P_gpu.sum(1) - a.cuda()).abs().sum() + (P_gpu.sum(0) - a.cuda()).abs().sum()
    assert float(err) <= 1e-6
