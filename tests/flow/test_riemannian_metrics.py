"""The LAND metric against its closed form, its anisotropy, and OT-MFM trained with it."""

import numpy as np
import pytest
import torch
from test_geodesics import annulus, course_on_ring

import cellflow as cf
from cellflow.flow.geodesics import fit_geodesic_interpolant
from cellflow.flow.riemannian_metrics import LANDMetric, RBFMetric, _gaussian, fit_metric


def brute_force_h(landmarks, x, gamma):
    """sum_n exp(-|x - x_n|^2 / (2 gamma^2)) (x_nd - x_d)^2 / N, with the (n, N, d) array."""
    diff = landmarks[None, :, :] - x[:, None, :]
    w = torch.exp(-diff.pow(2).sum(-1) / (2 * gamma**2))
    return torch.einsum("bn,bnd->bd", w, diff.pow(2)) / len(landmarks)


def test_the_metrics_kernel_is_exp_with_its_subnormal_tail_set_to_zero():
    """_gaussian(a) = exp(-a) wherever that is a normal float32 number (exp(-87) and up), exactly
    0 beyond, and its gradient is exp's there too."""
    a = torch.cat(
        [torch.linspace(0, 120, 20001), torch.tensor([1e4, float("inf")])]
    ).requires_grad_(True)
    k, ref = _gaussian(a), torch.exp(-a)
    normal = ref >= torch.finfo(torch.float32).tiny
    kept = a < 87
    torch.testing.assert_close(k[kept], ref[kept], rtol=1e-6, atol=0)
    assert bool((k[~kept] == 0).all())
    assert float((k - ref).abs()[normal].max()) <= float(torch.exp(torch.tensor(-87.0)))
    (grad,) = torch.autograd.grad(k.sum(), a)
    torch.testing.assert_close(grad[kept], -ref[kept].detach(), rtol=1e-6, atol=0)
    assert bool((grad[~kept] == 0).all())


def test_land_metric_is_its_closed_form_and_about_one_on_the_cells():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(800, 3, generator=g, dtype=torch.float64)
    metric = LANDMetric.fit(X, gamma=0.4, eps=0.05, seed=0)
    x, v = torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g)
    h = brute_force_h(metric.landmarks.double(), x.double(), 0.4) / metric.scale
    torch.testing.assert_close(metric.h(x).double(), h, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(metric.energy(x, v), (v.pow(2) / (metric.h(x) + 0.05)).sum(1))
    # Z makes h of order 1 on the cells (the median over a probe of them is 1 by construction)
    assert 0.8 < float(metric.h(metric.landmarks).median()) < 1.25
    # far from every cell h vanishes and the energy is |v|^2 / eps
    far, v = torch.full((1, 3), 20.0), torch.tensor([[1.0, 2.0, 0.0]])
    assert float(metric.h(far).max()) < 1e-12
    torch.testing.assert_close(metric.energy(far, v), torch.tensor([5.0 / 0.05]))


def test_land_prefers_the_directions_in_which_the_cells_spread():
    """A thin horizontal cloud: moving along it is cheaper than across it; the RBF metric is
    isotropic and charges both the same."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 2, generator=g) * torch.tensor([1.0, 0.1])
    land, rbf = fit_metric(X, "land", gamma=0.3, seed=0), fit_metric(X, "rbf", n_centers=30, seed=0)
    at, along, across = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(land.energy(at, across)) > 3 * float(land.energy(at, along))
    torch.testing.assert_close(rbf.energy(at, across), rbf.energy(at, along))
    assert isinstance(rbf, RBFMetric) and isinstance(land, LANDMetric)


def test_auto_gamma_is_the_median_neighbour_distance_and_follows_the_scale():
    """gamma="auto" (the default) is the median distance from a landmark to its nearest other
    landmark (here every cell is a probe), so the metric of the data scaled by s is the metric of
    the data, scaled: the same h at the corresponding points, gamma times s."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(600, 3, generator=g) * torch.tensor([1.0, 0.5, 0.2])
    d = torch.cdist(X, X)
    d.fill_diagonal_(float("inf"))
    metric = LANDMetric.fit(X, seed=0)
    assert metric.gamma == pytest.approx(float(d.min(1).values.median()), rel=1e-5)
    scaled = LANDMetric.fit(X * 30, seed=0)
    assert scaled.gamma == pytest.approx(30 * metric.gamma, rel=1e-5)
    x = torch.randn(10, 3, generator=g) * 0.5
    torch.testing.assert_close(scaled.h(x * 30), metric.h(x), rtol=1e-3, atol=1e-5)


def test_bad_metric_options_say_what_to_change():
    X = torch.randn(50, 2)
    with pytest.raises(ValueError, match="unknown metric kind 'lan'"):
        fit_metric(X, "lan")
    with pytest.raises(ValueError, match="gamma must be positive"):
        LANDMetric.fit(X, gamma=0.0)
    with pytest.raises(ValueError, match="at least 2 cells"):
        LANDMetric.fit(X[:1])
    with pytest.raises(ValueError, match="a positive number or 'auto', got 'median'"):
        LANDMetric.fit(X, gamma="median")
    with pytest.raises(ValueError, match="identical twin.*pass a positive gamma"):
        LANDMetric.fit(torch.cat([X, X]))
    with pytest.raises(ValueError, match="raise gamma, e.g. to about the median distance"):
        LANDMetric.fit(X * 1e4, gamma=1e-3)


def test_land_paths_follow_a_curved_manifold():
    """As for the RBF metric (test_geodesics): endpoints at both ends of a thick half ring; the
    LAND metric fitted on the ring lifts the midpoints onto it, off the empty centre."""
    rng = np.random.default_rng(0)
    ring = torch.tensor(annulus(3000, 0, 180, rng), dtype=torch.float32)
    groups = [
        torch.tensor(annulus(500, 150, 180, rng), dtype=torch.float32),
        torch.tensor(annulus(500, 0, 30, rng), dtype=torch.float32),
    ]
    metric = LANDMetric.fit(ring, gamma=0.1, eps=1e-2, seed=0)  # narrow: the centre is empty

    def draw(i, n, g):
        return groups[i][torch.randint(len(groups[i]), (n,), generator=g)]

    interp, hist = fit_geodesic_interpolant(
        draw, [(0, 1)], [metric], 2, steps=400, batch_size=128, seed=0
    )
    assert hist[0] == 1.0 and np.median(hist[-20:]) < 0.3
    g = torch.Generator().manual_seed(1)
    x0, x1 = draw(0, 300, g), draw(1, 300, g)
    mid, _ = interp(x0, x1, torch.full((300,), 0.5))
    straight = (x0 + x1) / 2
    assert float(straight[:, 1].mean()) < 0.35 and float(mid[:, 1].mean()) > 0.45
    assert float(metric.h(mid).sum(1).mean()) > 2 * float(
        metric.h(straight).sum(1).mean()
    )  # 2.08 vs 0.86


def test_cellflow_trains_ot_mfm_with_the_land_metric(tmp_path, monkeypatch):
    import cellflow.models._cell_training as training

    kinds = []
    real = training.fit_metric
    monkeypatch.setattr(
        training,
        "fit_metric",
        lambda X, kind, **kw: kinds.append((kind, kw["gamma"])) or real(X, kind, **kw),
    )
    adata = course_on_ring(n=100)
    m = cf.CellFlow(adata, "day", method="mfm", seed=0)
    m.train(
        steps=20,
        batch_size=32,
        geodesic_steps=20,
        metric={"kind": "land", "gamma": 0.5},
        progress=False,
    )
    assert kinds == [("land", 0.5), ("land", 0.5)]  # one metric per pair of days
    assert m.interpolant is not None and len(m.geodesic_history) == 20
    m.save(tmp_path / "m")
    back = cf.CellFlow.load(tmp_path / "m", adata)
    np.testing.assert_allclose(
        back.push(m.cells_at(0.0)[:5], 0, 2), m.push(m.cells_at(0.0)[:5], 0, 2), atol=1e-5
    )
