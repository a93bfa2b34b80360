"""Every path against its hand-written closed form."""

import math

import pytest
import torch

from cellflow.flow.matchers import make_matcher
from cellflow.flow.paths import BrownianBridgePath, LipmanPath, StraightPath, VPPath

SIGMAS = [0.0, 5e-4, 0.5, 1.5, 0, 1]
SHAPES = [[1], [2], [1, 2], [3, 4, 5]]


def batch(shape, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    x1 = torch.randn(n, *shape, generator=g, dtype=torch.float64) + 2
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
    eps = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    return x0, x1, t, eps


def col(t, x):
    return t.reshape(-1, *([1] * (x.dim() - 1)))


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_straight_path_closed_form(sigma, shape):
    x0, x1, t, eps = batch(shape)
    s = StraightPath(sigma).sample(x0, x1, t, eps=eps)
    tt = col(t, x0)
    assert torch.equal(s.t, t)
    torch.testing.assert_close(s.x_t, tt * x1 + (1 - tt) * x0 + sigma * eps)
    torch.testing.assert_close(s.u_t, x1 - x0)


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_straight_path_fast_sample_equals_the_generic_one_bit_for_bit(sigma, dtype):
    # StraightPath.sample skips the constant coefficients; the draws and values must not change
    from cellflow.flow.paths import ProbPath

    x0, x1 = torch.randn(300, 3, dtype=dtype), torch.randn(300, 3, dtype=dtype)
    path = StraightPath(sigma)
    for t in (None, 0.3, torch.rand(300, dtype=dtype)):
        fast = path.sample(x0, x1, t, generator=torch.Generator().manual_seed(1))
        generic = ProbPath.sample(path, x0, x1, t, generator=torch.Generator().manual_seed(1))
        for k in ("t", "x_t", "u_t", "eps"):
            assert torch.equal(getattr(fast, k), getattr(generic, k)), k


@pytest.mark.parametrize("sigma", [5e-4, 0.5, 1.5, 1])
@pytest.mark.parametrize("shape", SHAPES)
def test_brownian_bridge_closed_form(sigma, shape):
    x0, x1, t, eps = batch(shape)
    path = BrownianBridgePath(sigma)
    s = path.sample(x0, x1, t, eps=eps)
    tt = col(t, x0)
    mu = tt * x1 + (1 - tt) * x0
    sig_t = sigma * torch.sqrt(tt * (1 - tt))
    torch.testing.assert_close(s.x_t, mu + sig_t * eps)
    torch.testing.assert_close(s.u_t, (1 - 2 * tt) / (2 * tt * (1 - tt)) * (s.x_t - mu) + (x1 - x0))
    # score of N(mu, sig_t^2 I) at x_t, and lambda(t) = 2 sigma_t / sigma^2
    torch.testing.assert_close(path.score(s), -(s.x_t - mu) / sig_t**2)
    torch.testing.assert_close(path.score_weight(t), 2 * sigma * torch.sqrt(t * (1 - t)) / sigma**2)


@pytest.mark.parametrize("sigma", [0.0, 0, -1.0, -0.1])
def test_brownian_bridge_refuses_nonpositive_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be > 0"):
        BrownianBridgePath(sigma)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        make_matcher("sb", sigma=sigma)


@pytest.mark.parametrize("sigma", [0.0, 5e-4, 0.5, 0])
@pytest.mark.parametrize("shape", SHAPES)
def test_lipman_closed_form(sigma, shape):
    x0, x1, t, _ = batch(shape)
    s = LipmanPath(sigma).sample(x0, x1, t)
    tt = col(t, x0)
    torch.testing.assert_close(s.x_t, tt * x1 + (1 - (1 - sigma) * tt) * x0)
    torch.testing.assert_close(s.u_t, (x1 - (1 - sigma) * s.x_t) / (1 - (1 - sigma) * tt))


def test_lipman_refuses_non_normal_source():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(256, 3, generator=g)
    LipmanPath().sample(torch.randn(256, 3, generator=g), x1)  # standard normal: accepted
    with pytest.raises(ValueError, match="only valid from a standard normal source"):
        LipmanPath().sample(torch.randn(256, 3, generator=g) * 3 + 1, x1)
    with pytest.raises(ValueError, match="sigma_min must be < 1"):
        LipmanPath(1.5)


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_vp_closed_form(sigma, shape):
    x0, x1, t, eps = batch(shape)
    s = VPPath(sigma).sample(x0, x1, t, eps=eps)
    tt = col(t, x0)
    h = math.pi / 2
    torch.testing.assert_close(s.x_t, torch.cos(h * tt) * x0 + torch.sin(h * tt) * x1 + sigma * eps)
    torch.testing.assert_close(s.u_t, h * (torch.cos(h * tt) * x1 - torch.sin(h * tt) * x0))


@pytest.mark.parametrize("method", ["icfm", "ot", "sb", "vp"])
def test_explicit_t_is_honoured_and_default_is_uniform(method):
    fm = make_matcher(method, sigma=0.5)
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2)
    s = fm.sample(x0, x1, t=0.3)
    assert torch.all(s.t == torch.tensor(0.3))
    tvec = torch.linspace(0.1, 0.9, 64)
    assert torch.equal(fm.sample(x0, x1, t=tvec).t, tvec)
    ts = torch.cat(
        [fm.sample(x0, x1, generator=torch.Generator().manual_seed(i)).t for i in range(40)]
    )
    assert ts.min() >= 0 and ts.max() <= 1
    # uniform on [0, 1]: mean 1/2, variance 1/12 (2560 draws: 5 standard errors)
    assert abs(ts.mean() - 0.5) < 5 * math.sqrt(1 / 12 / len(ts))
    assert abs(ts.var() - 1 / 12) < 0.01


def test_bad_shapes_and_t():
    p = StraightPath(0.1)
    with pytest.raises(ValueError, match="same shape"):
        p.sample(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="t has 3 entries"):
        p.sample(torch.randn(4, 2), torch.randn(4, 2), t=torch.rand(3))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        StraightPath(-1)


def test_integer_sigma_is_a_float():
    assert isinstance(StraightPath(1).sigma, float) and isinstance(
        BrownianBridgePath(1).sigma, float
    )
