"""Metrics against POT, scipy and closed forms on small cases."""

import math

import numpy as np
import ot
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy

from cellflow import metrics
from cellflow.flow.solvers import integrate_ode


def two_sets(n=40, m=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.7


def test_w1_w2_agree_with_pot():
    x, y = two_sets()
    w1 = ot.emd2(ot.unif(len(x)), ot.unif(len(y)), ot.dist(x, y, metric="euclidean"))
    w2 = math.sqrt(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), ot.dist(x, y)))
    assert metrics.wasserstein(x, y, p=1) == pytest.approx(w1, rel=1e-10)
    assert metrics.wasserstein(torch.tensor(x), torch.tensor(y), p=2) == pytest.approx(
        w2, rel=1e-10
    )


def test_w2_between_gaussian_translates_is_the_shift():
    x = np.random.default_rng(0).normal(size=(200, 2))
    assert metrics.wasserstein(x, x + [3.0, 4.0], p=2) == pytest.approx(5.0, rel=1e-9)


def test_subsampling_is_seeded_and_stated():
    x, y = two_sets(500, 400)
    a = metrics.wasserstein(x, y, p=1, max_samples=100, seed=1)
    assert a == metrics.wasserstein(x, y, p=1, max_samples=100, seed=1)
    assert a != metrics.wasserstein(x, y, p=1, max_samples=100, seed=2)


def test_sinkhorn_divergence_agrees_with_pot():
    x, y = two_sets(30, 25)
    ref = ot.bregman.empirical_sinkhorn_divergence(x, y, 1.0, stopThr=1e-12, numIterMax=100000)
    assert metrics.sinkhorn_divergence(x, y, eps=1.0) == pytest.approx(float(ref), rel=1e-6)
    assert metrics.sinkhorn_divergence(x, x, eps=1.0) == pytest.approx(0.0, abs=1e-9)


def test_mmd_against_numpy_u_statistic():
    x, y = two_sets(20, 15)
    hs = [0.5, 1.0, 2.0]

    def k(u, w):
        d2 = ((u[:, None] - w[None]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * h * h)) for h in hs)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    ref = (
        (kxx.sum() - np.trace(kxx)) / (20 * 19)
        + (kyy.sum() - np.trace(kyy)) / (15 * 14)
        - 2 * kxy.mean()
    )
    assert metrics.mmd(x, y, bandwidths=hs) == pytest.approx(ref, rel=1e-10)
    # unbiased: two samples of one distribution give ~0, a shift gives clearly more
    z = np.random.default_rng(5).normal(size=(400, 3))
    z2 = np.random.default_rng(6).normal(size=(400, 3))
    assert abs(metrics.mmd(z, z2)) < 0.02 < metrics.mmd(z, z2 + 1.0)


def test_energy_distance_matches_scipy_in_1d():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 1)), rng.normal(size=(60, 1)) + 0.5
    # scipy returns the square root of 2E|X-Y| - E|X-X'| - E|Y-Y'|
    assert metrics.energy_distance(x, y) == pytest.approx(
        scipy_energy(x[:, 0], y[:, 0]) ** 2, rel=1e-10
    )


def test_path_energy_and_npe_of_straight_flow_are_exact():
    # the field v = x1 - x0 = const translates N by (3, 4): energy = |shift|^2 = W2^2 = 25
    x0 = torch.randn(100, 2, dtype=torch.float64)
    shift = torch.tensor([3.0, 4.0], dtype=torch.float64)
    field = lambda t, x: shift.expand_as(x)  # noqa: E731
    tr = integrate_ode(
        field, x0, torch.linspace(0, 1, 11, dtype=torch.float64), solver="euler", steps=10
    )
    e = metrics.path_energy(field, tr)
    assert e == pytest.approx(25.0)
    w2 = metrics.wasserstein(x0, tr.end, p=2)
    assert metrics.normalized_path_energy(e, w2**2) == pytest.approx(0.0, abs=1e-9)
    assert metrics.normalized_path_energy(50.0, 25.0) == pytest.approx(1.0)
