r"""Training of :class:`cellflow.CellFlow`: the multi-marginal conditional flow matching objective.

Each optimiser step draws ``batch_size`` cells from every trained time point, couples each pair
of consecutive time points :math:`(k, l)` with its own minibatch plan (exact OT, entropic OT or
independent), samples the path at :math:`t \sim U[0, 1]` and regresses the one network on the
pair's target, placed at model time :math:`\tau = \tau_k + \Delta t` with target
:math:`u_t / \Delta`, :math:`\Delta = \tau_l - \tau_k`:

.. math:: \mathcal{L}(\theta) = \sum_{(k, l)} \mathbb{E}\,\lVert v_\theta(\tau, x_t) - u_t / \Delta \rVert^2 .

SB models add the score regression of [SF]2M; OT-MFM first fits its geodesic interpolant
(:mod:`cellflow.flow.geodesics`). :class:`TrainingMixin` holds :meth:`~cellflow.CellFlow.train`;
the state it reads (the cell store, the matcher, the networks) is built by
:class:`cellflow.CellFlow`.
"""

from __future__ import annotations

import warnings

import torch

from .._defaults import BATCH_SIZE, MODEL_EMA_DECAY, STEPS
from ..flow.geodesics import GeodesicPath, fit_geodesic_interpolant
from ..flow.matchers import FlowMatcher
from ..flow.riemannian_metrics import MAX_METRIC_CELLS, fit_metric
from ..train import distributed
from ..train.config import check_batch_size, check_steps
from ..train.threads import scoped_threads
from ..train.trainer import (
    TrainHistory,
)
from ._base import training_config

__all__ = ["TrainingMixin"]


class TrainingMixin:
    """:meth:`train` for :class:`cellflow.CellFlow` (the multi-marginal objective)."""

    def _warn_large_batch(
        self, n: int, used: list[int], sizes: list[int], name: str = "batch_size"
    ) -> None:
        """Warn when a batch is larger than a trained time point: its cells are drawn with
        replacement, so every batch repeats them, and the coupling costs more without pairing
        more distinct cells."""
        small = min(used, key=lambda k: sizes[k])
        if n > sizes[small]:
            warnings.warn(
                f"{name}={n} is larger than the {sizes[small]} cells of time point "
                f"{self.times[small]:g}: each batch draws them with replacement and repeats them. "
                f"{name}={sizes[small]} or less (or the default) pairs as many distinct cells at "
                "less cost.",
                UserWarning,
                stacklevel=4,
            )

    @scoped_threads
    def train(
        self,
        steps: int = STEPS,
        batch_size: int | None = None,
        *,
        holdout: float | None = None,
        ot_batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        ema_decay: float | None = MODEL_EMA_DECAY,
        grad_clip: float | None = None,
        warmup_steps: int = 0,
        prefetch: int | None = None,
        workers: int = 2,
        global_coupling: bool = False,
        geodesic_steps: int | None = None,
        metric: dict | None = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> TrainHistory:
        """Fit the flow on all consecutive pairs of time points (skipping ``holdout``).

        Parameters
        ----------
        steps
            Optimiser steps; each sums the loss over all pairs.
        batch_size
            Cells drawn per time point per step (default: 512, or the cells of the smallest
            trained time point if it has fewer). Cells are drawn with replacement, so a batch
            larger than a time point only repeats its cells; an explicit one warns.
        ot_batch_size
            Cells drawn per time point for the minibatch coupling, from whose plan
            ``batch_size`` pairs are then drawn (default: ``batch_size``, the paper's protocol).
            Larger batches bring the coupling closer to the OT plan between the whole time
            points, at the cost of a larger OT problem per pair of time points.
        holdout
            A measured time to leave out (not the first or last).
        prefetch, workers
            Batches drawn ahead by ``workers`` threads. Default: 4 ahead for OT-CFM, whose exact
            OT solves run in parallel with the step; none for SB-CFM and I-CFM, whose torch work
            only competes with the step for the cores (:func:`cellflow.train.batch_workers.default_prefetch`).
        global_coupling
            Distributed training only: every rank draws the same ``world_size × batch_size``
            cells per time point, couples them as one batch, and trains on its own share of the
            pairs (default: each rank couples its own batch; see :mod:`cellflow.train.distributed`).
        geodesic_steps, metric
            OT-MFM only: Adam steps for the geodesic interpolant (default ``steps // 2``, so
            1,000 for the paper's 2,000), and the metric: ``kind`` (``"rbf"``, default, or
            ``"land"``) and the keyword arguments of its ``fit``
            (:func:`cellflow.flow.riemannian_metrics.fit_metric`: ``eps=0.1``; RBF ``n_centers=100,
            kappa=1.0``; LAND ``gamma="auto"``, the median distance between neighbouring cells).
            One metric is fitted per pair of consecutive (non-held-out) time points, on the
            cells of those two time points only; the interpolant is kept in
            :attr:`interpolant`, its relative energy per step in :attr:`geodesic_history`.
        ema_decay
            The network used after training is the exponential moving average of its weights
            with this decay (default 0.999; ``None``: the last weights). Pushing cells over
            several intervals compounds the step-to-step noise of the last weights; the average
            keeps such paths on the measured time points, and one interval is as good as
            without (method guide, "The weight average"). :func:`cellflow.evaluate_holdout` follows the paper's protocol, without it.
        lr, weight_decay, grad_clip, warmup_steps, progress
            See :class:`cellflow.train.trainer.TrainConfig`.
        threads
            Torch intra-op threads, for the metric and geodesic stage of OT-MFM too (``None``:
            one unless you set more; :mod:`cellflow.train.threads`).
        """
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        if ot_batch_size is not None:
            ot_batch_size = check_batch_size(ot_batch_size, "ot_batch_size")
        check_steps(steps)  # before any work: OT-MFM fits its metric first
        self._check_source()
        if holdout is not None:
            holdout = self._measured(holdout, "holdout")
            if holdout in (self.times[0], self.times[-1]):
                raise ValueError(
                    "the first and last time points cannot be held out: nothing brackets them. "
                    f"Hold out one of {self.times[1:-1].tolist()}."
                )
            if len(self.times) < 3:
                raise ValueError("holding out a time point needs at least 3 time points.")
        knots_change = self.per_interval and holdout != self.holdout
        self.holdout = holdout
        if knots_change:  # a held-out time point is not a knot: new networks
            self._build_networks()
        pairs = self._pairs(holdout)
        taus = self._taus().tolist()
        store, sizes, matcher = self._store, self._store.sizes(), self.matcher
        used = sorted({k for p in pairs for k in p})
        if batch_size is None:
            batch_size = min(BATCH_SIZE, *(sizes[k] for k in used))
        else:
            self._warn_large_batch(batch_size, used, sizes)
        if ot_batch_size is not None:
            self._warn_large_batch(ot_batch_size, used, sizes, "ot_batch_size")
        self.batch_size = batch_size
        if self.spec.geodesic:
            g_steps = max(1, steps // 2) if geodesic_steps is None else int(geodesic_steps)
            matchers = self._fit_geodesics(
                pairs,
                [(taus[i], taus[j] - taus[i]) for i, j in pairs],
                g_steps,
                metric or {},
                progress,
            )
        else:
            matchers = [matcher] * len(pairs)
        world, share = distributed.coupling_group(global_coupling)
        n = (
            batch_size * world
        )  # a global coupling draws all ranks' cells, then keeps this rank's share
        if ot_batch_size is not None and int(ot_batch_size) < batch_size:
            raise ValueError(
                f"ot_batch_size={ot_batch_size} is smaller than batch_size={batch_size}: the coupling "
                "draws at least the cells it pairs. Raise it, or leave it at None (= batch_size)."
            )
        n_ot = n if ot_batch_size is None else int(ot_batch_size) * world
        n_pairs = None if n_ot == n else n  # pairs drawn from the larger plan

        def make_batch(g):
            out = []
            for (i, j), pair_matcher in zip(pairs, matchers):
                x0 = store.draw(i, torch.randint(sizes[i], (n_ot,), generator=g))
                x1 = store.draw(j, torch.randint(sizes[j], (n_ot,), generator=g))
                s = pair_matcher.sample(x0, x1, n=n_pairs, generator=g)
                out.append(
                    (
                        distributed.rank_share(s, batch_size, share) if world > 1 else s,
                        taus[i],
                        taus[j] - taus[i],
                    )
                )
            return out

        def loss_fn(batch):
            # one network call over all pairs; the loss is the sum over pairs of each pair's mean
            dev = self.device  # batches are drawn on the CPU
            tau = torch.cat([tau0 + span * s.t for s, tau0, span in batch]).to(
                dev, non_blocking=True
            )
            x = torch.cat([s.x_t for s, _, _ in batch]).to(dev, non_blocking=True)
            target = torch.cat([s.u_t / span for s, _, span in batch]).to(dev, non_blocking=True)
            err = (self._in_training("net")(tau, x) - target).pow(2)
            loss = err.reshape(len(batch), -1).mean(1).sum()
            if self.score_net is not None:
                # λ(t)·s_θ against λ(t)·∇log p_t(x|x0,x1) = -2ε/σ² ([SF]2M); the score does not
                # depend on the time units
                scores = [matcher.score_target(s) for s, _, _ in batch]
                lam = torch.cat([w for _, w in scores]).reshape(-1, 1).to(dev, non_blocking=True)
                score = torch.cat([sc for sc, _ in scores]).to(dev, non_blocking=True)
                serr = (lam * self._in_training("score_net")(tau, x) - lam * score).pow(2)
                loss = loss + serr.reshape(len(batch), -1).mean(1).sum()
            return loss

        cfg = training_config(
            matcher.coupling,
            prefetch=prefetch,
            workers=workers,
            threads=threads,
            global_coupling=global_coupling,
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
            ema_decay=ema_decay,
            grad_clip=grad_clip,
            warmup_steps=warmup_steps,
            progress=progress,
        )
        self.history, _ = self._run_training(make_batch, loss_fn, cfg)
        for module in self.modules.values():
            module.eval()
        return self.history

    def _fit_geodesics(
        self, pairs, times, steps: int, metric: dict, progress: bool
    ) -> list[FlowMatcher]:
        """OT-MFM's first stage: one metric per pair, then the shared interpolant; one matcher per
        pair, on that pair's ``(start, span)`` of model time."""
        store, sizes = self._store, self._store.sizes()
        g = torch.Generator().manual_seed(self.seed)
        max_cells = int(metric.get("max_cells", MAX_METRIC_CELLS))

        def some_cells(i):  # distinct cells of group i, at most max_cells of them
            return store.draw(i, torch.randperm(sizes[i], generator=g)[:max_cells].sort().values)

        metric = dict(metric)
        kind = metric.pop("kind", "rbf")
        metrics = [
            fit_metric(torch.cat([some_cells(i), some_cells(j)]), kind, seed=self.seed, **metric)
            for i, j in pairs
        ]
        self.interpolant, self.geodesic_history = fit_geodesic_interpolant(
            lambda i, n, gen: store.draw(i, torch.randint(sizes[i], (n,), generator=gen)),
            pairs,
            metrics,
            self.n_pcs,
            steps=steps,
            times=times,
            seed=self.seed,
            progress=progress,
        )
        return [
            FlowMatcher(
                GeodesicPath(self.interpolant, self.sigma, start, span),
                self.matcher.coupling,
                "OT-MFM",
            )
            for start, span in times
        ]
