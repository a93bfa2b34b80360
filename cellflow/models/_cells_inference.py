r"""Inference of :class:`cellflow.CellFlow`: pushing cells along the learned flow, velocities,
predictions at unmeasured times, and transitions between time points.

Times in and out are measured times (``obs[time_key]`` units); the flow runs in model time
(:meth:`cellflow.CellFlow.model_time`). Cells go in and come out in the representation's units;
the networks see them standardised (:class:`cellflow.adata._read.Standardizer`). Backward pushes
and the Schrödinger bridge SDE of SB models live here too. :class:`InferenceMixin` holds these
methods; the state they read is built by :class:`cellflow.CellFlow`.
"""

from __future__ import annotations

import numpy as np
import torch

from .._types import Solver
from ..flow.networks import interval_index
from ..flow.solvers import integrate_ode, integrate_sde, solver_argument
from ..train.threads import scoped_threads
from ._knn import knn_assignment

__all__ = ["InferenceMixin", "CHUNK_SIZE"]

# cells integrated at a time: on one thread, 8,192 rows keep a layer's activations in cache
# (measured in choosing_a_method, "Threads")
CHUNK_SIZE = 8192


class InferenceMixin:
    """:meth:`push`, :meth:`velocity`, :meth:`predict` and :meth:`transition_matrix` for
    :class:`cellflow.CellFlow`."""

    @scoped_threads
    def push(
        self,
        X: np.ndarray,
        t_from: float,
        t_to: float,
        *,
        solver: Solver = "euler",
        steps: int = 100,
        n_points: int | None = None,
        sde: bool = False,
        seed: int | None = None,
        chunk_size: int = CHUNK_SIZE,
        method: str | None = None,
    ) -> np.ndarray:
        r"""Move cells (rows of ``X`` in the representation's units) from time ``t_from`` to
        ``t_to`` (backwards if ``t_to < t_from``) along the learned ODE, or, for SB models with
        ``sde=True``, along the learned Schrödinger bridge SDE (Euler–Maruyama, ``steps`` steps).

        Times are in the units of ``obs[time_key]`` and may lie between measured times.
        ``n_points`` returns the states at that many evenly spaced times, shape
        ``(n_points, n_cells, n_pcs)``; otherwise the end points. Cells are integrated
        ``chunk_size`` at a time, so memory does not grow with the number of cells. ``solver``
        is the ODE solver (:func:`cellflow.flow.solvers.integrate_ode`; ``method=`` is its
        former name).

        The SDE in model time :math:`\tau`, on an interval of length :math:`\Delta` (1 for
        ``time_scale="index"``), is :math:`dx = [v_\theta \pm \tfrac{g^2}{2} s_\theta]\,d\tau
        + g\,dW` with :math:`g^2 = \sigma^2/\Delta`; the sign is + forwards and − backwards.
        ``seed`` seeds its noise (default: the model's seed).
        """
        solver = solver_argument(solver, method, "push")
        X = self._check_cells(X)
        tau0, tau1 = self.model_time(t_from), self.model_time(t_to)
        if (
            tau0 == tau1 or len(X) == 0
        ):  # no time passes, or no cell moves: the cells stay as they are
            return np.repeat(X[None], n_points, axis=0) if n_points else X.copy()
        grid = torch.linspace(tau0, tau1, n_points) if n_points else torch.tensor([tau0, tau1])
        if sde:
            if self.score_net is None:
                raise ValueError(
                    f"sde=True needs an SB model (method='sb'), which learns a score; this one is "
                    f"{self.method!r}. Push along the ODE (sde=False) instead."
                )
            if solver != "euler":
                raise ValueError("the SDE is integrated with Euler–Maruyama; leave solver='euler'.")
            gen = torch.Generator(device=self.device).manual_seed(
                self.seed if seed is None else int(seed)
            )
        outs = []
        with torch.no_grad():
            for start in range(0, max(len(X), 1), chunk_size):
                z = torch.tensor(
                    self.scaler.forward(X[start : start + chunk_size]),
                    dtype=torch.float32,
                    device=self.device,
                )
                if sde:
                    outs.append(
                        self._sde_path(z, grid, steps, gen).cpu().numpy().astype(np.float64)
                    )
                    continue
                field = self._field(self.net, "right" if tau1 >= tau0 else "left")
                tr = integrate_ode(field, z, grid.to(self.device), solver=solver, steps=steps)
                outs.append(tr.xs.cpu().numpy().astype(np.float64))
        out = np.concatenate(outs, axis=1) * self.scaler.scale + self.scaler.mean
        return out if n_points else out[-1]

    def _sde_path(
        self, z: torch.Tensor, grid: torch.Tensor, steps: int, gen: torch.Generator
    ) -> torch.Tensor:
        """Euler–Maruyama through the points of ``grid`` (``steps`` steps over the whole span)."""
        total = abs(float(grid[-1] - grid[0]))
        forward = float(grid[-1]) >= float(grid[0])
        sign = 1.0 if forward else -1.0
        side = "right" if forward else "left"
        intervals = self._intervals()  # g² depends on the length of the interval holding t
        knots = torch.tensor(self._knots(), dtype=torch.float64)

        def g2(t):
            lo, hi = intervals[int(interval_index(knots, torch.as_tensor(float(t)), side))]
            return self.sigma**2 / (hi - lo)

        net, score = self._field(self.net, side), self._field(self.score_net, side)

        def drift(t, x):
            return net(t, x) + sign * 0.5 * g2(t) * score(t, x)

        out = [z]
        for a, b in zip(grid[:-1].tolist(), grid[1:].tolist()):
            n = max(1, round(steps * abs(b - a) / total)) if total > 0 else 1
            tr = integrate_sde(
                drift,
                out[-1],
                (a, b),
                sigma=lambda t: g2(t) ** 0.5,
                steps=n,
                generator=gen,
                save_every_step=False,
            )
            out.append(tr.xs[-1])
        return torch.stack(out)

    @scoped_threads
    def velocity(
        self, X: np.ndarray, time: float | np.ndarray, *, chunk_size: int = CHUNK_SIZE
    ) -> np.ndarray:
        """The learned velocity at cells ``X`` and time(s) ``time`` (one per cell, or one for
        all), in units of the representation per unit of model time (per time-point interval
        for ``time_scale="index"``, per unit of ``obs[time_key]`` for ``"real"``). A
        per-interval field (``per_interval=True``) may jump at a measured time point; there it
        is the mean of the fields of the two intervals that meet."""
        X = self._check_cells(X)
        tau = np.vectorize(self.model_time, otypes=[float])(
            np.broadcast_to(np.asarray(time, dtype=float), (len(X),))
        )
        out = np.empty_like(X)
        with torch.no_grad():
            for start in range(0, len(X), chunk_size):
                sl = slice(start, start + chunk_size)
                z = torch.tensor(
                    self.scaler.forward(X[sl]), dtype=torch.float32, device=self.device
                )
                t = torch.tensor(tau[sl], dtype=torch.float32, device=self.device)
                out[sl] = (
                    self._field(self.net, "mean")(t, z).cpu().numpy()
                )  # at a knot: both intervals
        return out * self.scaler.scale / self._time_unit()

    def predict(
        self,
        time: float,
        *,
        n_cells: int | None = None,
        mode: str = "push",
        from_time: float | None = None,
        steps: int = 100,
        seed: int | None = None,
    ) -> np.ndarray:
        """Cells at ``time`` (measured, held out or between measured times), in the
        representation's units.

        ``mode="push"`` (the paper's protocol) pushes the observed cells of the nearest earlier
        trained time point (or ``from_time``) forward with ``steps`` Euler steps; ``n_cells``
        subsamples them without replacement. ``mode="sample"`` draws ``n_cells`` new cells: it
        resamples those cells with replacement, perturbs each with the path's Gaussian noise
        (σ in model units), and pushes them.
        """
        if mode not in ("push", "sample"):
            raise ValueError(f"mode must be 'push' or 'sample', got {mode!r}.")
        if n_cells is not None and (
            isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0
        ):
            raise ValueError(f"n_cells must be a whole number >= 0 or None, got {n_cells!r}.")
        self.model_time(time)
        if from_time is None:
            from_time = self.source_time(time)
        X0 = self.cells_at(from_time)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        if mode == "sample":
            idx = rng.integers(len(X0), size=len(X0) if n_cells is None else int(n_cells))
            noise = (
                rng.normal(size=(len(idx), self.n_pcs)) * max(self.sigma, 1e-3) * self.scaler.scale
            )
            X0 = X0[idx] + noise
        elif n_cells is not None and n_cells < len(X0):
            X0 = X0[np.sort(rng.choice(len(X0), n_cells, replace=False))]
        return self.push(X0, from_time, time, steps=steps)

    def source_time(self, time: float) -> float:
        """The nearest trained time point before ``time``: where predictions at ``time`` start."""
        earlier = [s for s in self.times if s < time and s != self.holdout]
        if not earlier:
            raise ValueError(
                f"no trained time point precedes {time}; predict times after {self.times[0]}."
            )
        return float(earlier[-1])

    def transition_matrix(
        self,
        t_from: float,
        t_to: float,
        *,
        cells: np.ndarray | None = None,
        k: int = 30,
        steps: int = 100,
        sde: bool = False,
        n_samples: int = 10,
    ):
        """Where cells at ``t_from`` land among the observed cells at ``t_to``.

        Each cell (default: all observed at ``t_from``) is pushed to ``t_to`` and spread over
        its ``k`` nearest observed cells there with Gaussian weights (bandwidth: the distance to
        its ``k``-th neighbour / 2, in model units). With ``sde=True`` (SB models), each cell
        follows ``n_samples`` SDE paths and its row is their average. Returns a sparse
        row-stochastic matrix (cells at ``t_from`` × observed cells at ``t_to``, in ``obs`` order).
        """
        import scipy.sparse as sp

        X0 = self.cells_at(t_from) if cells is None else self._check_cells(cells)
        m = int(n_samples) if sde else 1
        Y = self.push(np.repeat(X0, m, axis=0), t_from, t_to, steps=steps, sde=sde)
        P = knn_assignment(self.scaler.forward(Y), self.scaler.forward(self.cells_at(t_to)), k=k)
        if m == 1:
            return P
        mean = sp.csr_matrix(
            (np.full(len(Y), 1.0 / m), np.arange(len(Y)), np.arange(0, len(Y) + 1, m)),
            shape=(len(X0), len(Y)),
        )
        return (mean @ P).tocsr()
