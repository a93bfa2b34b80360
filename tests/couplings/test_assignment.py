"""The auction assignment against POT's network simplex and scipy, and its dual certificate."""

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from cellflow.couplings import ExactOT, _auction
from cellflow.couplings.assignment import exact_assignment


def _optimum(C):
    """POT's network simplex (on costs shifted to be non-negative) and scipy's assignment agree."""
    n = C.shape[0]
    w = np.full(n, 1.0 / n)
    pot = ot.emd2(w, w, C - C.min(), numItermax=10**9) * n + n * C.min()
    rows, cols = linear_sum_assignment(C)
    assert pot == pytest.approx(
        C[rows, cols].sum(), rel=1e-12, abs=1e-12 * max(float(np.abs(C).max()), 1.0)
    )
    return pot


def _assert_optimal_with_proof(C, cols, u, v):
    n = C.shape[0]
    assert sorted(cols.tolist()) == list(range(n))  # a permutation
    scale = max(float(np.abs(C).max()), 1.0)
    assert C[np.arange(n), cols].sum() == pytest.approx(_optimum(C), rel=1e-10, abs=1e-10 * scale)
    reduced = C - u[:, None] - v[None, :]
    assert reduced.min() >= -1e-10 * scale  # dual feasible ...
    assert (
        np.abs(reduced[np.arange(n), cols]).max() <= 1e-10 * scale
    )  # ... and tight on the assignment


def _case(kind, n, rng):
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) + 0.5
    if kind == "integer_ties":
        return rng.integers(0, 4, size=(n, n)).astype(float)
    if kind == "identical_clouds":  # zero-cost optimum, the identity
        return ot.dist(x, x)
    if kind == "far_clusters":  # costs of very different scales in one matrix
        x[: n // 3] += 1e4
        return ot.dist(x, y)
    if kind == "duplicates":
        x[: n // 2] = x[0]
        return ot.dist(x, y)
    if kind == "negative":
        return rng.normal(size=(n, n)) * 1e6 - 3e6
    return ot.dist(x, y)


@pytest.mark.parametrize(
    "kind",
    ["gaussian", "integer_ties", "identical_clouds", "far_clusters", "duplicates", "negative"],
)
@pytest.mark.parametrize("n", [1, 2, 7, 150])
def test_auction_is_the_network_simplex_optimum(kind, n):
    C = _case(kind, n, np.random.default_rng(n))
    res = exact_assignment(C)
    _assert_optimal_with_proof(C, res.cols, res.u, res.v)


def test_many_random_problems():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, d = int(rng.integers(2, 120)), int(rng.integers(1, 6))
        C = ot.dist(rng.normal(size=(n, d)), rng.normal(size=(n, d)) * rng.uniform(0.1, 3))
        res = exact_assignment(C)
        _assert_optimal_with_proof(C, res.cols, res.u, res.v)
        assert res.repaired == 0 and res.scans > 0  # the auction itself was optimal and proven so


def test_repair_path_reaches_the_optimum_when_the_auction_stops_short():
    """A coarse last ε (half the cost range) leaves the auction far from the optimum; the
    proof then fails and shortest augmenting paths must repair the assignment."""
    C = ot.dist(*(np.random.default_rng(3).normal(size=(2, 120, 2))))
    cols, u, v, bids, scans, repaired = _auction._solve(C, 0.5, 4.0, 8, 2000, 1e-13, 0)
    assert scans == -1 and repaired > 0
    _assert_optimal_with_proof(C, cols, u, v)
    # and when the auction gives up after its first bid (max_bids = 0): nearly every row is repaired
    cols, u, v, bids, scans, repaired = _auction._solve(C, 1e-7, 4.0, 8, 0, 1e-13, 3)
    assert bids == 0 and repaired > 0
    _assert_optimal_with_proof(C, cols, u, v)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="square"):
        exact_assignment(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="finite"):
        exact_assignment(np.array([[0.0, np.inf], [1.0, 0.0]]))
    assert exact_assignment(np.zeros((0, 0))).cols.shape == (0,)


def test_exact_ot_uses_the_auction_for_equal_uniform_batches_only(monkeypatch):
    import cellflow.couplings._exact as couplings  # where ExactOT looks its solvers up

    g = torch.Generator().manual_seed(0)
    x0, x1 = (
        torch.randn(200, 4, generator=g, dtype=torch.float64),
        torch.randn(200, 4, generator=g, dtype=torch.float64),
    )
    calls, real, real_points = [], couplings.exact_assignment, couplings.assign_points
    monkeypatch.setattr(couplings, "exact_assignment", lambda C: calls.append(C.shape) or real(C))
    monkeypatch.setattr(
        couplings, "assign_points", lambda a, b: calls.append((len(a), len(b))) or real_points(a, b)
    )
    auction = ExactOT().plan(x0, x1)
    simplex = ExactOT(auction=False).plan(x0, x1)
    torch.testing.assert_close(
        auction, simplex, rtol=0, atol=1e-15
    )  # unique optimum: the same plan
    ExactOT().plan(x0, x1[:150])  # unequal sizes: network simplex
    ExactOT().plan(
        x0, x1, a=torch.rand(200, generator=g), b=torch.rand(200, generator=g)
    )  # weights
    ExactOT(max_iter=10**7).plan(x0, x1)  # an explicit cap is the network simplex's
    assert calls == [(200, 200)]
    with pytest.raises(ValueError, match="equal, unweighted batches only"):
        ExactOT(auction=True).plan(x0, x1[:150])


def test_bid_scan_equals_the_naive_cheapest_and_second_cheapest():
    # the vectorised scan compares bit patterns whose lowest mantissa bits hold the column:
    # it must agree with float comparisons to that precision, including ties (the first
    # cheapest column wins), zeros and a single finite value
    from cellflow.couplings._auction import _bid, _index_bits

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 70)) if trial else 1
        Ri = rng.random(n) * 10.0 ** rng.integers(-3, 4)
        p = rng.random(n) * 10.0 ** rng.integers(-3, 4)
        if trial % 3 == 0:
            Ri, p = np.round(Ri, 1), np.round(p, 1) * (rng.random(n) < 0.5)  # ties and exact zeros
        x = Ri + p
        low = int(_index_bits(n))
        assert low >= n - 1 and low // 2 < max(n - 1, 1)  # the fewest bits that hold the index
        tol = 2.0 ** -(52 - low.bit_length())  # relative: the value bits the index replaced
        jb, best, second = _bid(Ri, p, np.empty(n, np.int64), low)
        assert jb == int(np.argmin(x))
        assert x.min() * (1 - tol) <= best <= x.min()  # truncated towards zero
        exp = np.partition(x, 1)[1] if n > 1 else np.inf
        assert second == exp if n == 1 else exp * (1 - tol) <= second <= exp


def test_assign_points_equals_the_assignment_of_the_cost_matrix():
    # the costs computed inside the solver (direct differences) against squared_distances' matrix
    from cellflow.couplings import squared_distances
    from cellflow.couplings.assignment import POINTS_MAX_DIM, assign_points

    g = torch.Generator().manual_seed(3)
    for n, d, dtype in [
        (1, 2, torch.float32),
        (2, 1, torch.float64),
        (64, 2, torch.float32),
        (150, 5, torch.float64),
        (90, POINTS_MAX_DIM, torch.float32),
    ]:
        x0, x1 = (
            torch.randn(n, d, generator=g, dtype=dtype),
            torch.randn(n, d, generator=g, dtype=dtype) + 1,
        )
        C = squared_distances(x0, x1).numpy()
        res, ref = assign_points(x0.numpy(), x1.numpy()), exact_assignment(C)
        np.testing.assert_array_equal(res.cols, ref.cols)  # continuous data: one optimum
        assert (
            C - res.u[:, None] - res.v[None, :] >= -1e-9 * max(np.ptp(C), 1.0)
        ).all()  # its certificate
    for dim in (2, POINTS_MAX_DIM + 1):  # ExactOT goes either way, with the same permutation
        x0, x1 = torch.randn(80, dim, generator=g), torch.randn(80, dim, generator=g)
        cols = ExactOT()._assignment(x0, x1).numpy()
        np.testing.assert_array_equal(
            cols, exact_assignment(squared_distances(x0, x1).numpy()).cols
        )
    x16 = torch.randn(40, 3, generator=g).half()  # a dtype numba has no kernel for: float64
    assert sorted(ExactOT()._assignment(x16, x16.flip(0)).tolist()) == list(range(40))
    with pytest.raises(ValueError, match="one shape"):
        assign_points(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        assign_points(np.array([[0.0], [np.nan]]), np.zeros((2, 1)))
    assert assign_points(np.zeros((0, 2)), np.zeros((0, 2))).cols.shape == (0,)


def test_assign_point_stacks_solves_each_problem_as_assign_points_does():
    from cellflow.couplings import PointsSolve
    from cellflow.couplings.assignment import assign_point_stacks, assign_points

    rng = np.random.default_rng(4)
    for k, n, d, dtype in [(1, 1, 2, np.float32), (5, 64, 2, np.float32), (3, 100, 5, np.float64)]:
        x0, x1 = (
            rng.normal(size=(k, n, d)).astype(dtype),
            (rng.normal(size=(k, n, d)) + 1).astype(dtype),
        )
        cols = assign_point_stacks(x0, x1)
        assert cols.shape == (k, n) and cols.dtype == np.int64
        for q in range(k):
            np.testing.assert_array_equal(cols[q], assign_points(x0[q], x1[q]).cols)
        # the worker's task for k steps: the same permutations as solving the jobs one by one
        jobs = [PointsSolve(x0[q], x1[q]) for q in range(k)]
        for a, b in zip(PointsSolve.together(jobs), [job() for job in jobs]):
            np.testing.assert_array_equal(a, b)
    # jobs of different shapes (or dtypes) are solved one by one, still in order
    a = PointsSolve(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)))
    b = PointsSolve(
        rng.normal(size=(20, 2)).astype(np.float32), rng.normal(size=(20, 2)).astype(np.float32)
    )
    out = PointsSolve.together([a, b, a])
    assert [len(c) for c in out] == [30, 20, 30] and (out[0] == a()).all() and (out[1] == b()).all()
    with pytest.raises(ValueError, match="one shape"):
        assign_point_stacks(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match=r"\(k, n, d\)"):
        assign_point_stacks(np.zeros((3, 2)), np.zeros((3, 2)))
    assert assign_point_stacks(np.zeros((2, 0, 2)), np.zeros((2, 0, 2))).shape == (2, 0)
