"""Couplings against POT and against what an optimal plan must satisfy."""

import numpy as np
import ot
import pytest
import torch

from cellflow.couplings import (
    ConvergenceError,
    Coupling,
    ExactOT,
    IndependentCoupling,
    PartialOT,
    sinkhorn_log,
    squared_distances,
)
from cellflow.flow.matchers import make_matcher


def pts(n, d, seed=0, shift=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(
        n, d, generator=g, dtype=torch.float64
    ) + shift


@pytest.mark.parametrize("n0,n1", [(20, 20), (15, 25)])
def test_exact_plan_equals_pot_emd(n0, n1):
    x0, _ = pts(n0, 3, 1)
    _, x1 = pts(n1, 3, 2)
    P = ExactOT().plan(x0, x1).numpy()
    M = ot.dist(x0.numpy(), x1.numpy())
    P_ref = ot.emd(ot.unif(n0), ot.unif(n1), M, numItermax=10**7)
    assert np.isclose((P * M).sum(), (P_ref * M).sum(), rtol=1e-12)
    np.testing.assert_allclose(P, P_ref, atol=1e-12)  # unique optimum for continuous random data


def test_permutation_plan_is_recovered_exactly():
    x1, _ = pts(50, 4)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    x0 = x1[perm] + 1e-3  # the optimal map sends x0[k] to x1[perm[k]]
    p = ExactOT().pair(x0, x1)
    assert torch.equal(p.i0, torch.arange(50))
    assert torch.equal(p.i1, perm)


def test_equal_batches_keep_every_sample_once():
    x0, x1 = pts(128, 5)
    p = ExactOT().pair(x0, x1)
    assert sorted(p.i0.tolist()) == list(range(128)) and sorted(p.i1.tolist()) == list(range(128))
    # torchcfm-style draws with replacement are available and come from the plan's support
    q = ExactOT(replace=True).pair(x0, x1, generator=torch.Generator().manual_seed(0))
    assert len(q.i0) == 128 and bool((ExactOT().plan(x0, x1)[q.i0, q.i1] > 0).all())


def test_ot_pairing_shortens_displacement():
    x0, x1 = pts(256, 2, shift=2.0)
    ot_p = ExactOT().pair(x0, x1)
    ind = IndependentCoupling().pair(x0, x1)
    d_ot = (x0[ot_p.i0] - x1[ot_p.i1]).pow(2).sum(1).mean()
    d_ind = (x0[ind.i0] - x1[ind.i1]).pow(2).sum(1).mean()
    assert d_ot < 0.8 * d_ind


def test_exact_ot_capped_solver_raises_instead_of_returning_a_worse_plan():
    x0, x1 = pts(200, 10)
    with pytest.raises(ConvergenceError, match="did not reach the optimum"):
        ExactOT(max_iter=10).plan(x0, x1)
    with pytest.warns(RuntimeWarning, match="did not reach the optimum"):
        ExactOT(max_iter=10, on_fail="warn").plan(x0, x1)


@pytest.mark.parametrize("case", ["uniform", "weighted_rectangular", "far_clusters"])
def test_sparse_exact_plan_is_the_dense_optimum(case):
    """The sparse solve with pricing returns the dense optimum: same cost, same marginals,
    also with unequal weights and sizes, and when the near pairs alone cannot carry the mass
    (two clusters of unequal sizes far apart force pricing rounds)."""
    from cellflow.couplings.sparse_ot import sparse_exact_plan

    rng = np.random.default_rng(1)
    n, m = (300, 300) if case != "weighted_rectangular" else (200, 260)
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(m, 5)) + 0.5
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    if case == "weighted_rectangular":
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    if case == "far_clusters":
        x[: n // 4] += (
            20.0  # a quarter of the sources far away, only a tenth of the targets near them
        )
        y[: m // 10] += 20.0
    C = ot.dist(x, y)
    G, code = sparse_exact_plan(a, b, C, k=5)
    if (
        case == "far_clusters"
    ):  # the first sparse optimum is not the dense one: pricing had work to do
        assert sparse_exact_plan(a, b, C, k=5, max_rounds=1)[0] is None
    G_ref = ot.emd(a, b, C, numItermax=10**8)
    assert code == 1
    assert np.isclose((G * C).sum(), (G_ref * C).sum(), rtol=1e-10)
    np.testing.assert_allclose(G.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(G.sum(0), b, atol=1e-12)


def test_exact_ot_solves_large_wide_batches_sparsely_and_keeps_the_permutation(monkeypatch):
    import cellflow.couplings._exact as couplings  # where ExactOT looks its solvers up

    x0, x1 = pts(256, 3)
    sparse_p = ExactOT(sparse=True).pair(x0, x1)
    dense_p = ExactOT(sparse=False).pair(x0, x1)
    assert torch.equal(sparse_p.i1, dense_p.i1)  # unique optimum: the same permutation
    with pytest.raises(ConvergenceError, match="did not reach the optimum"):
        ExactOT(max_iter=10, sparse=True).plan(x0, x1)
    # the network simplex solves sparsely from SPARSE_FROM pairs in SPARSE_MIN_DIM dimensions only
    calls, real = [], couplings.sparse_exact_plan
    monkeypatch.setattr(
        couplings, "sparse_exact_plan", lambda *a, **k: calls.append(a[2].shape) or real(*a, **k)
    )
    ExactOT(auction=False).plan(*pts(1024, 20))
    ExactOT(auction=False).plan(*pts(1024, 5))
    ExactOT(auction=False).plan(*pts(1000, 20))
    ExactOT().plan(*pts(1024, 20))  # equal uniform batches: the auction, never the network simplex
    assert calls == [(1024, 1024)]


@pytest.mark.parametrize("d", [2, 100])
def test_sinkhorn_marginals_on_raw_costs(d):
    x0, x1 = pts(200, d, shift=1.0)
    C = squared_distances(x0, x1)  # raw: up to ~4d, never normalised
    a = torch.full((200,), 1 / 200, dtype=torch.float64)
    P = sinkhorn_log(a, a, C, eps=2.0)  # SB-CFM with sigma = 1
    assert torch.isfinite(P).all()
    assert (P.sum(1) - a).abs().max() < 1e-6 and (P.sum(0) - a).abs().max() < 1e-6
    # the plan is not the uniform fallback of an underflowed kernel
    assert (P * C).sum() < 0.9 * C.mean()


def test_sinkhorn_matches_pot():
    x0, x1 = pts(60, 3)
    C = squared_distances(x0, x1)
    a = torch.full((60,), 1 / 60, dtype=torch.float64)
    P = sinkhorn_log(a, a, C, eps=0.5, tol=1e-10)
    P_ref = ot.sinkhorn(
        a.numpy(),
        a.numpy(),
        C.numpy(),
        0.5,
        method="sinkhorn_log",
        stopThr=1e-12,
        numItermax=100000,
    )
    np.testing.assert_allclose(P.numpy(), P_ref, atol=1e-9)


def test_sinkhorn_small_eps_does_not_underflow_or_fall_back():
    x0, x1 = pts(64, 50, shift=0.5)
    C = squared_distances(x0, x1)
    a = torch.full((64,), 1 / 64, dtype=torch.float64)
    # exp(-C/eps) is exactly 0 in float32 for every entry: a plain kernel would underflow
    assert torch.exp(-C.float() / 0.5).max() == 0
    P = sinkhorn_log(a, a, C, eps=0.5, tol=1e-6, max_iter=50000)
    assert torch.isfinite(P).all() and (P.sum(1) - a).abs().sum() < 1e-6
    P_exact = ExactOT().plan(x0, x1)
    assert (P * C).sum() <= (P_exact * C).sum() * 1.01  # near-optimal, not the uniform plan
    assert (P * C).sum() < 0.9 * C.mean()


@pytest.mark.parametrize("eps", [1.0, 0.7])
def test_sinkhorn_plan_has_the_entropic_form_after_eps_scaling(eps):
    # (max C - min C)/eps > 100: several annealing stages with absorbed potentials. The
    # entropic plan is exactly P = diag(u) exp(-C/eps) diag(v) with marginals a and b, i.e.
    # log P + C/eps = alpha_i + beta_j: its double-centred residual vanishes.
    x0, x1 = pts(100, 20)
    C = squared_distances(x0, x1)
    assert (C.max() - C.min()) / eps > 100
    a = torch.full((100,), 1 / 100, dtype=torch.float64)
    P = sinkhorn_log(a, a, C, eps=eps, tol=1e-9, max_iter=100000)
    assert (P.sum(1) - a).abs().sum() < 1e-9 and (P.sum(0) - a).abs().sum() < 1e-9
    L = P.log() + C / eps
    assert torch.isfinite(L).all()
    R = L - L.mean(1, keepdim=True) - L.mean(0, keepdim=True) + L.mean()
    assert R.abs().max() < 1e-8


def test_sinkhorn_failure_raises():
    x0, x1 = pts(64, 2)
    C = squared_distances(x0, x1)
    a = torch.full((64,), 1 / 64, dtype=torch.float64)
    with pytest.raises(ConvergenceError, match="did not converge"):
        sinkhorn_log(a, a, C, eps=1e-3, max_iter=20, eps_scaling=False)


def test_unbalanced_matches_pot_and_relaxes_marginals():
    x0, x1 = pts(40, 2, shift=1.5)
    C = squared_distances(x0, x1)
    a = torch.full((40,), 1 / 40, dtype=torch.float64)
    b = torch.linspace(0.5, 1.5, 40, dtype=torch.float64)
    b = b / b.sum() * 2  # twice the mass of a: growth
    P = sinkhorn_log(a, b, C, eps=0.5, reg_m=1.0, tol=1e-12, max_iter=100000)
    P_ref = ot.unbalanced.sinkhorn_unbalanced(
        a.numpy(),
        b.numpy(),
        C.numpy(),
        0.5,
        1.0,
        reg_type="kl",
        method="sinkhorn_stabilized",
        numItermax=100000,
        stopThr=1e-12,
    )
    np.testing.assert_allclose(P.numpy(), P_ref, rtol=1e-5, atol=1e-10)
    # the marginals are relaxed, and tighten towards a and b as reg_m grows
    errs = []
    for reg_m in (0.1, 1.0, 10.0, 100.0):
        Q = sinkhorn_log(a, b, C, eps=0.5, reg_m=reg_m, tol=1e-9, max_iter=100000)
        errs.append(((Q.sum(1) - a).abs().sum() + (Q.sum(0) - b).abs().sum()).item())
    assert errs[0] > 0.1 and all(e1 > e2 for e1, e2 in zip(errs, errs[1:]))


def test_partial_ot_mass_constraints():
    x0, x1 = pts(30, 2)
    P = PartialOT(mass=0.6).plan(x0, x1)
    a = torch.full((30,), 1 / 30, dtype=torch.float64)
    assert abs(P.sum().item() - 0.6) < 1e-9
    assert (P.sum(1) <= a + 1e-12).all() and (P.sum(0) <= a + 1e-12).all()
    p = PartialOT(mass=0.6).pair(x0, x1, generator=torch.Generator().manual_seed(0))
    assert bool((P[p.i0, p.i1] > 0).all())


@pytest.mark.parametrize("method", ["icfm", "ot", "sb"])
def test_labels_follow_their_samples(method):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(100, 3, generator=g), torch.randn(100, 3, generator=g) + 1
    lab0, lab1 = torch.randperm(100, generator=g), torch.randperm(100, generator=g) + 1000
    fm = make_matcher(method, sigma=0.5)
    s = fm.sample(x0, x1, generator=g)
    # the returned endpoints are exactly the indexed rows, so lab0[i0] / lab1[i1] are their labels
    assert torch.equal(s.x0, x0[s.i0]) and torch.equal(s.x1, x1[s.i1])
    row0 = {tuple(r.tolist()): int(lab) for r, lab in zip(x0, lab0)}
    row1 = {tuple(r.tolist()): int(lab) for r, lab in zip(x1, lab1)}
    assert [row0[tuple(r.tolist())] for r in s.x0] == lab0[s.i0].tolist()
    assert [row1[tuple(r.tolist())] for r in s.x1] == lab1[s.i1].tolist()
    if method != "icfm":
        assert bool((fm.coupling.plan(x0, x1)[s.i0, s.i1] > 0).all())


def test_ot_batch_larger_than_training_batch():
    x0, x1 = pts(512, 2)
    s = make_matcher("ot").sample(
        x0.float(), x1.float(), n=128, generator=torch.Generator().manual_seed(0)
    )
    assert (
        s.x_t.shape == (128, 2)
        and len(set(s.i0.tolist())) == 128
        and len(set(s.i1.tolist())) == 128
    )
    # the 128 pairs are pairs of the full 512 x 512 optimal permutation
    full = ExactOT().pair(x0, x1)
    assert torch.equal(full.i1[s.i0], s.i1)


def test_sb_pairs_follow_the_entropic_plan():
    x0, x1 = pts(64, 2)
    fm = make_matcher("sb", sigma=1.0)
    P = fm.coupling.plan(x0, x1)
    counts = torch.zeros(64, 64, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        p = fm.coupling.pair(x0, x1, generator=g)
        counts[p.i0, p.i1] += 1
    emp = counts / counts.sum()
    assert (emp.sum(1) - 1 / 64).abs().max() < 1e-12  # every source sample once per draw
    # the drawn pairs have the plan's expected cost (19,200 draws: 4 standard errors)
    C = squared_distances(x0, x1)
    draws = C[counts > 0].repeat_interleave(counts[counts > 0].long())
    assert abs(draws.mean() - (P * C).sum()) < 4 * draws.std() / len(draws) ** 0.5
    # and none is drawn outside where the plan puts mass (entries below 1e-12)
    assert counts[P < 1e-12].sum() == 0


def test_row_sampling_matches_the_plan_rows_and_never_draws_zero_mass():
    from scipy.stats import chisquare

    from cellflow.couplings._base import _sample_rows

    g = torch.Generator().manual_seed(1)
    P = torch.rand(3, 8, generator=g, dtype=torch.float64)
    P[:, [0, 5]] = 0.0
    P[2, 6:] = 0.0  # trailing columns without mass
    counts = torch.zeros(3, 8)
    for _ in range(4000):
        counts[torch.arange(3), _sample_rows(P, g).reshape(-1)] += 1
    assert counts[P == 0].sum() == 0
    for i in range(3):
        keep = P[i] > 0
        expected = (P[i, keep] / P[i, keep].sum() * 4000).numpy()
        assert chisquare(counts[i, keep].numpy(), expected).pvalue > 1e-4


def test_row_sampling_when_the_uniform_rounds_up_to_the_row_total(monkeypatch):
    from cellflow.couplings._base import _sample_rows

    P = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(2, 1, dtype=torch.float64))
    assert _sample_rows(P, None).reshape(-1).tolist() == [
        1,
        1,
    ]  # the last column with mass, not past the end


def test_pairs_drawn_with_replacement_follow_the_whole_plan():
    from scipy.stats import chisquare

    from cellflow.couplings._base import _pairs_from_plan

    g = torch.Generator().manual_seed(2)
    P = torch.rand(4, 5, generator=g, dtype=torch.float64)
    P[P < 0.3] = 0.0  # entries without mass are never drawn
    P /= P.sum()
    p = _pairs_from_plan(P, 20000, True, g)
    counts = torch.zeros(4, 5)
    counts.index_put_((p.i0, p.i1), torch.ones(20000), accumulate=True)
    assert counts[P == 0].sum() == 0
    keep = P > 0
    assert chisquare(counts[keep].numpy(), (P[keep] * 20000).numpy()).pvalue > 1e-4


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("n", [None, 40, 130])
def test_pairs_read_off_the_permutation_equal_the_pairs_drawn_from_the_plan(replace, n):
    # ExactOT.pair skips the n x n plan for equal uniform batches; the base class draws from it
    x0, x1 = pts(96, 3)
    if n == 130 and not replace:
        with pytest.raises(ValueError, match="without replacement"):
            ExactOT().pair(x0, x1, n=n)
        return
    c = ExactOT(replace=replace)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fast = c.pair(x0, x1, n=n, generator=g1)
    slow = Coupling.pair(c, x0, x1, n=n, generator=g2)
    assert fast.plan is None and slow.plan is not None
    assert torch.equal(fast.i0, slow.i0) and torch.equal(fast.i1, slow.i1)
    assert torch.equal(
        torch.rand(4, generator=g1), torch.rand(4, generator=g2)
    )  # the same draws used


def test_squared_distances_match_the_direct_differences():
    g = torch.Generator().manual_seed(0)
    for n0, n1, d in [(30, 40, 2), (5, 7, 3), (64, 64, 50)]:
        x0 = torch.randn(n0, d, generator=g) * 3 + 10
        x1 = torch.randn(n1, d, generator=g)
        direct = ((x0.double()[:, None] - x1.double()[None]) ** 2).sum(-1)
        C = squared_distances(x0, x1)
        assert C.dtype == torch.float64 and C.shape == (n0, n1) and bool((C >= 0).all())
        assert torch.allclose(C, direct, rtol=1e-12, atol=1e-9)
    x = torch.randn(50, 4, generator=g)
    assert (
        float(squared_distances(x, x).diagonal().abs().max()) < 1e-12
    )  # clamped, no negative rounding


def test_defer_pair_is_pair_in_two_parts():
    # finish(solve()) draws what pair() draws, in the same order, from the same generator
    from cellflow.couplings.assignment import POINTS_MAX_DIM

    x0, x1 = torch.randn(90, 3), torch.randn(90, 3) + 1
    for replace, n in [(False, None), (False, 40), (True, None), (True, 150)]:
        c = ExactOT(replace=replace)
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        want = c.pair(x0, x1, n=n, generator=g1)
        solve, finish = c.defer_pair(x0, x1, n=n, generator=g2)
        got = finish(solve())
        assert torch.equal(got.i0, want.i0) and torch.equal(got.i1, want.i1) and got.plan is None
        assert torch.equal(
            torch.rand(3, generator=g1), torch.rand(3, generator=g2)
        )  # the generators agree after
    assert ExactOT().defer_pair(x0, x1[:80]) is None  # unequal: the network simplex, not deferred
    assert ExactOT().defer_pair(x0, x1, a=torch.rand(90)) is None  # weighted
    big = torch.randn(20, POINTS_MAX_DIM + 1)
    assert ExactOT().defer_pair(big, big) is None and not ExactOT().defers(POINTS_MAX_DIM + 1)
    assert ExactOT().defers(2) and not ExactOT(auction=False).defers(2)


def test_sinkhorn_uses_a_plan_within_accept_when_tol_is_out_of_reach():
    """A balanced plan that misses tol but is within ``accept`` of its marginals is returned
    (SinkhornOT's default, for training pairs); one beyond it still raises."""
    import re

    from cellflow.couplings import ConvergenceError, SinkhornOT, sinkhorn_log

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), 2 * torch.randn(50, 3, generator=g) + 1
    C = ((x[:, None] - y[None]) ** 2).sum(-1).double()
    a, b = torch.full((40,), 1 / 40).double(), torch.full((50,), 1 / 50).double()
    kw = dict(tol=1e-14, max_iter=5, eps_scaling=False)
    with pytest.raises(ConvergenceError) as info:
        sinkhorn_log(a, b, C, 1.0, **kw)
    err = float(re.search(r"marginal error (\S+) >", str(info.value)).group(1))
    assert 0 < err < 1
    P = sinkhorn_log(a, b, C, 1.0, accept=2 * err, **kw)
    assert abs(P.sum(1) - a).sum() + abs(P.sum(0) - b).sum() <= 2 * err
    with pytest.raises(ConvergenceError):
        sinkhorn_log(a, b, C, 1.0, accept=err / 2, **kw)
    assert SinkhornOT(1.0).accept == 1e-4 and SinkhornOT(1.0, accept=None).accept is None


def test_over_relaxed_sinkhorn_leaves_a_cycle(monkeypatch):
    """Two minibatches of a bootstrap resample (repeated cells on both sides) on which
    over-relaxation (ω = 1.9) locks into a cycle whose error never falls (0.618 after 20,000
    iterations); the
    stall safeguard returns to plain iterations, which converge."""
    from pathlib import Path

    import cellflow.couplings._sinkhorn as S

    data = np.load(Path(__file__).with_name("data") / "sinkhorn_cycle.npz")
    x0, x1 = torch.from_numpy(data["x0"]), torch.from_numpy(data["x1"])
    C = S.squared_distances(x0, x1).double()
    a = torch.full((60,), 1 / 60, dtype=torch.float64)
    P = S.sinkhorn_log(a, a, C, 2.0)
    assert (P.sum(1) - a).abs().sum() + (P.sum(0) - a).abs().sum() < 1e-5
    monkeypatch.setattr(S, "_STALL_CHECKS", 10**9)  # as before the safeguard
    from cellflow.couplings import ConvergenceError

    with pytest.raises(ConvergenceError, match="did not converge"):
        S.sinkhorn_log(a, a, C, 2.0, max_iter=3000)


class _FixedPlan(Coupling):
    """A coupling whose plan is given: what WholePlan draws from is then known exactly."""

    def __init__(self, P):
        super().__init__(replace=True)
        self.P = P

    def plan(self, x0, x1, a=None, b=None):
        return self.P


@pytest.mark.parametrize("sparse", [False, True])
def test_whole_plan_draws_each_pair_in_proportion_to_its_mass(sparse):
    from scipy.stats import chisquare

    from cellflow.couplings import WholePlan

    g = torch.Generator().manual_seed(3)
    P = torch.rand(6, 4, generator=g, dtype=torch.float64) + 0.05
    if sparse:
        P[P < 0.5] = 0.0  # the exact-OT case: only the positive entries are kept
    plan = WholePlan(_FixedPlan(P), torch.zeros(6, 2), torch.zeros(4, 2))
    assert plan.n_pairs == int((P > 0).sum())
    i0, i1 = plan.draw(40000, generator=g)
    counts = torch.zeros(6, 4)
    counts.index_put_((i0, i1), torch.ones(40000), accumulate=True)
    assert counts[P == 0].sum() == 0
    keep = P > 0
    expected = (P[keep] / P.sum() * 40000).numpy()
    assert chisquare(counts[keep].numpy(), expected).pvalue > 1e-4


def test_whole_plan_of_the_exact_coupling_draws_only_the_assignment():
    from cellflow.couplings import WholePlan

    x0, x1 = pts(50, 3)
    cols = ExactOT().pair(x0, x1).i1  # the optimal permutation
    plan = WholePlan(ExactOT(), x0, x1)
    assert plan.n_pairs == 50  # a permutation: 50 entries, not 2,500
    i0, i1 = plan.draw(5000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(i1, cols[i0])


def test_whole_plan_of_the_entropic_coupling_is_the_sinkhorn_plan_on_all_cells():
    from cellflow.couplings import SinkhornOT, WholePlan

    x0, x1 = pts(80, 2)
    P = SinkhornOT(eps=1.0).plan(x0, x1)
    assert abs(P.sum(1) - 1 / 80).sum() < 1e-4 and abs(P.sum(0) - 1 / 80).sum() < 1e-4
    i0, i1 = WholePlan(SinkhornOT(eps=1.0), x0, x1).draw(
        20000, generator=torch.Generator().manual_seed(0)
    )
    C = squared_distances(x0, x1)
    draws = C[i0, i1]  # the drawn pairs have the plan's expected cost (4 standard errors)
    assert abs(draws.mean() - (P * C).sum()) < 4 * draws.std() / len(draws) ** 0.5
    # weights: cells without mass (absent from a bootstrap resample) are never drawn
    a = torch.ones(80, dtype=torch.float64)
    a[:40] = 0
    i0, _ = WholePlan(SinkhornOT(eps=1.0), x0, x1, a / a.sum()).draw(2000)
    assert int(i0.min()) >= 40


def test_get_coupling_is_deprecated_but_still_answers():
    from cellflow.couplings import get_coupling

    with pytest.warns(FutureWarning, match="removed in cellflow 0.2"):
        assert isinstance(get_coupling("exact"), ExactOT)
