"""ODE/SDE integration and the log-likelihood against closed forms."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from cellflow.flow.likelihood import log_likelihood
from cellflow.flow.solvers import integrate_ode, integrate_sde


@pytest.mark.parametrize(
    "method,steps,tol",
    [("euler", 1000, 2e-3), ("midpoint", 100, 1e-5), ("rk4", 50, 1e-8), ("dopri5", None, 1e-5)],
)
def test_ode_methods_solve_linear_decay(method, steps, tol):
    x0 = torch.randn(5, 3, dtype=torch.float64)
    tr = integrate_ode(
        lambda t, x: -x, x0, (0.0, 1.0), method=method, steps=steps, atol=1e-9, rtol=1e-9
    )
    torch.testing.assert_close(tr.end, x0 * math.exp(-1), rtol=tol, atol=tol)
    assert tr.nfe > 0


def test_fixed_step_nfe_and_grid():
    x0 = torch.ones(2, 2)
    tr = integrate_ode(
        lambda t, x: x, x0, (0.0, 1.0), solver="euler", steps=10, save_every_step=True
    )
    assert tr.nfe == 10 and tr.xs.shape == (11, 2, 2)
    torch.testing.assert_close(tr.end, torch.full((2, 2), 1.1**10))
    back = integrate_ode(lambda t, x: x, tr.end, (1.0, 0.0), solver="rk4", steps=100)
    torch.testing.assert_close(back.end, x0 * 1.1**10 / math.e, rtol=1e-6, atol=1e-6)


def test_time_dependent_field_and_unknown_solver():
    tr = integrate_ode(
        lambda t, x: t * torch.ones_like(x), torch.zeros(1, 1, dtype=torch.float64), solver="dopri5"
    )
    assert tr.end.item() == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="unknown ODE solver"):
        integrate_ode(lambda t, x: x, torch.zeros(1, 1), method="rk45")


def test_euler_maruyama_brownian_motion_statistics():
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(20000, 2, dtype=torch.float64)
    tr = integrate_sde(
        lambda t, x: torch.ones_like(x), x0, (0.0, 2.0), sigma=0.5, steps=50, generator=g
    )
    # X_2 ~ N(2, 0.25 * 2)
    assert tr.end.mean().item() == pytest.approx(2.0, abs=4 * math.sqrt(0.5 / 40000))
    assert tr.end.var().item() == pytest.approx(0.5, rel=0.03)
    assert tr.xs.shape == (51, 20000, 2) and tr.nfe == 50


@pytest.mark.parametrize("estimator,n_probes,tol", [("exact", 1, 1e-4), ("hutchinson", 2000, 0.2)])
def test_log_likelihood_of_linear_flow(estimator, n_probes, tol):
    # v(x) = A x carries N(0, I) to N(0, e^A e^A^T) at t = 1; log-density known in closed form
    torch.manual_seed(0)
    A = torch.tensor([[0.3, 0.5, 0.0], [-0.2, 0.1, 0.4], [0.0, 0.3, -0.5]], dtype=torch.float64)
    E = torch.linalg.matrix_exp(A)
    target = MultivariateNormal(torch.zeros(3, dtype=torch.float64), E @ E.T)
    x1 = target.sample((8,))
    base = lambda x: Normal(0.0, 1.0).log_prob(x).sum(1)  # noqa: E731
    ll = log_likelihood(
        lambda t, x: x @ A.T,
        x1,
        base,
        estimator=estimator,
        n_probes=n_probes,
        atol=1e-8,
        rtol=1e-8,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(ll, target.log_prob(x1), atol=tol, rtol=0)


def test_log_likelihood_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="estimator"):
        log_likelihood(lambda t, x: x, torch.zeros(2, 2), lambda x: x.sum(1), estimator="trace")


def test_method_is_the_former_name_of_solver_and_warns():
    """``solver=`` names the ODE solver everywhere; ``method=``, its name before, still works for
    now, gives the same answer and says what to write instead."""
    import numpy as np

    import cellflow as cf

    m = cf.FlowModel(2, method="icfm", seed=0)
    x = torch.randn(5, 2)
    with pytest.warns(FutureWarning, match=r"push\(method=...\) is now push\(solver=...\)"):
        old = m.transport(x, method="euler", steps=5)
    assert torch.equal(old, m.transport(x, solver="euler", steps=5))
    with pytest.warns(FutureWarning, match="integrate_ode"):
        integrate_ode(lambda t, y: y, x, method="rk4", steps=4)
    with pytest.raises(ValueError, match="unknown ODE solver 'leapfrog'"):
        integrate_ode(lambda t, y: y, x, solver="leapfrog")
    import anndata as ad
    import pandas as pd

    a = ad.AnnData(
        obs=pd.DataFrame({"day": np.repeat([0, 1], 30)}, index=[f"c{i}" for i in range(60)])
    )
    a.obsm["X_pca"] = np.random.default_rng(0).normal(size=(60, 2))
    model = cf.CellFlow(a, "day")
    model.train(steps=2, progress=False)
    with pytest.warns(FutureWarning, match=r"push\(method=...\)"):
        old = model.push(a.obsm["X_pca"][:4], 0, 1, method="rk4", steps=3)
    np.testing.assert_array_equal(old, model.push(a.obsm["X_pca"][:4], 0, 1, solver="rk4", steps=3))
