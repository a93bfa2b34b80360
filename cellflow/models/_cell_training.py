r"""Training a :class:`cellflow.CellFlow` (:class:`CellTraining`, the part of the model class that
fits its networks): the multi-marginal flow-matching loop, whole or minibatch plans, growth's
mass changes, OT-MFM's geodesics and bootstrap replicates.

Each optimiser step draws ``batch_size`` cells from every trained time point, couples each pair
of consecutive time points :math:`(k, l)` with its own plan (exact OT for OT-CFM, entropic for
SB-CFM, independent for I-CFM), samples the path at :math:`t \sim U[0, 1]` and regresses the one
network on the pair's target, placed at :math:`\tau = \tau_k + \Delta t` with target
:math:`u_t / \Delta`, :math:`\Delta = \tau_l - \tau_k` (Tong et al. 2024):

.. math:: \mathcal{L}(\theta) = \sum_{(k, l)} \mathbb{E}\,
          \lVert v_\theta(\tau, x_t) - u_t / \Delta \rVert^2 .

The clock :math:`\tau` is the time course's (:class:`cellflow.course.TimeCourse`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

from .._defaults import BATCH_SIZE, GROWTH_OT_EPS, MODEL_EMA_DECAY, OT_PLAN, STEPS
from .._types import OTPlan, whole_number
from ..couplings import WHOLE_PLAN_ENTRIES, IndependentCoupling, WholePlan
from ..flow.geodesics import GeodesicPath, fit_geodesic_interpolant
from ..flow.matchers import FlowMatcher
from ..flow.riemannian_metrics import MAX_METRIC_CELLS, fit_metric
from ..train import distributed
from ..train.config import check_batch_size, check_steps
from ..train.threads import scoped_threads
from ..train.trainer import TrainHistory
from ._base import training_config
from ._growth import SCALE_GRID, calibrate_prior, interval_log_growth

if TYPE_CHECKING:
    from .cells import CellFlow

__all__ = ["CellTraining"]


def _joined(samples, starts, spans, score_of=None, *, rates=None, intervals=None) -> dict:
    """One training batch from the path samples of the intervals: model times
    ``τ = start + span·t``, positions, and velocity targets ``u_t / span`` (per unit of model
    time), joined across intervals; the conditional score and its weight when ``score_of``
    (the SB matcher's ``score_target``) is given, the growth rates when ``rates`` are.

    A sample's ``start`` and ``span`` are numbers, or tensors with one entry per pair when one
    sample holds several intervals (``intervals``: how many; default one per sample)."""

    def per_pair(sp):
        return sp[:, None] if torch.is_tensor(sp) else sp

    batch = {
        "tau": torch.cat([t0 + sp * s.t for s, t0, sp in zip(samples, starts, spans)]),
        "x": torch.cat([s.x_t for s in samples]),
        "target": torch.cat([s.u_t / per_pair(sp) for s, sp in zip(samples, spans)]),
        "intervals": len(samples) if intervals is None else intervals,
    }
    if rates is not None:
        batch["rate"] = torch.cat(rates)
    if score_of is not None:
        scores = [score_of(s) for s in samples]
        batch["score"] = torch.cat([sc for sc, _ in scores])
        batch["lam"] = torch.cat([w for _, w in scores])
    return batch


class CellTraining:
    """The training of :class:`cellflow.CellFlow`: :meth:`train` and :meth:`bootstrap` (a
    mixin; the model class supplies the course, the matcher and the networks)."""

    def _whole_plans(self, ot_plan, pairs, matchers, sizes, minibatch_free, progress):
        """One :class:`~cellflow.couplings.WholePlan` per interval of ``pairs`` when
        ``ot_plan`` asks for them (``"auto"``: when they fit and nothing needs minibatches;
        ``minibatch_free``: no ``ot_batch_size``, no distributed run), else ``None``."""
        if ot_plan not in get_args(OTPlan):
            raise ValueError(f"ot_plan must be one of {get_args(OTPlan)}, got {ot_plan!r}.")
        coupling = self.matcher.coupling
        if ot_plan == "minibatch" or isinstance(coupling, IndependentCoupling):
            return None
        biggest = max(sizes[i] * sizes[j] for i, j in pairs)
        if ot_plan == "whole":
            if self.growth:
                raise ValueError(
                    "ot_plan='whole' is not available for a growth-aware model: its pairs are "
                    "drawn "
                    "in proportion to each cell's mass, batch by batch. Use ot_plan='minibatch'."
                )
            if not minibatch_free:
                raise ValueError(
                    "ot_plan='whole' cannot be combined with ot_batch_size or distributed "
                    "training, "
                    "which set the minibatch plans' size. Leave ot_plan at 'auto'."
                )
        elif (
            self.growth
            or not minibatch_free
            or biggest > WHOLE_PLAN_ENTRIES
            # X read row by row: a whole plan would read it all
            or (self.course.store.on_demand and self.course.use_rep == "X")
        ):
            return None
        from tqdm.auto import tqdm

        plans = []
        for (i, j), m in tqdm(
            list(zip(pairs, matchers)), desc="whole plans", disable=not progress, leave=False
        ):
            every = [torch.arange(sizes[i]), torch.arange(sizes[j])]
            weights = [None, None]
            if self._resample is not None:  # a bootstrap replicate: cells weighted by their draws
                weights = [
                    torch.bincount(self._resample[k], minlength=sizes[k]).double() / sizes[k]
                    for k in (i, j)
                ]
            x0, x1 = self.course.store.draw(i, every[0]), self.course.store.draw(j, every[1])
            plans.append(WholePlan(m.coupling, x0, x1, *weights))
        return plans

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
        ot_plan: OTPlan = OT_PLAN,
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
            only competes with the step for the cores
            (:func:`cellflow.train.batch_workers.default_prefetch`).
        global_coupling
            Distributed training only: every rank draws the same ``world_size × batch_size``
            cells per time point, couples them as one batch, and trains on its own share of the
            pairs (default: each rank couples its own batch; see :mod:`cellflow.train.distributed`).
        ot_plan
            Where the OT-CFM, SB-CFM and OT-MFM pairs come from. ``"whole"``: the plan between
            all cells of each pair of time points is solved once, before the first step, and
            every step draws its pairs from it (:class:`cellflow.couplings.WholePlan`); a step
            then costs what an I-CFM step costs. ``"minibatch"``: a new plan every step between
            the cells the step draws (the paper's protocol). ``"auto"`` (default): whole when
            every interval's plan has at most :data:`~cellflow.couplings.WHOLE_PLAN_ENTRIES`
            entries (4,096 × 4,096 cells), the cells are held in memory (not ``use_rep="X"``
            read row by row) and ``ot_batch_size``, growth and distributed training are not
            asked for; else minibatch. Held-out accuracy is the same (method guide,
            "Whole plans").
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
            without (method guide, "The weight average"). :func:`cellflow.evaluate_holdout` follows
            the paper's protocol, without it.
        lr, weight_decay, grad_clip, warmup_steps, progress
            See :class:`cellflow.train.trainer.TrainConfig`.
        threads
            Torch intra-op threads, for the metric and geodesic stage of OT-MFM too (``None``:
            one unless you set more; :mod:`cellflow.train.threads`).
        """
        settings = dict(locals())  # what a bootstrap replicate is trained with (bootstrap)
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        if ot_batch_size is not None:
            ot_batch_size = check_batch_size(ot_batch_size, "ot_batch_size")
        check_steps(steps)  # before any work: OT-MFM fits its metric first
        if global_coupling and self.growth:
            raise ValueError(
                "global_coupling is not available for a growth-aware model; leave it False "
                "(each rank then couples its own batch)."
            )
        self.course.check_source()
        holdout = self._checked_holdout(holdout)
        knots_change = self.per_interval and holdout != self.holdout
        self.holdout = holdout
        if knots_change:  # a held-out time point is not a knot: new networks
            self._build_networks()
        pairs = self.course.pairs(holdout)
        taus = self.course.taus().tolist()
        store, sizes, matcher = self.course.store, self.course.store.sizes(), self.matcher
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
                f"ot_batch_size={ot_batch_size} is smaller than batch_size={batch_size}: the "
                "coupling "
                "draws at least the cells it pairs. Raise it, or leave it at None (= batch_size)."
            )
        n_ot = n if ot_batch_size is None else int(ot_batch_size) * world
        n_pairs = None if n_ot == n else n  # pairs drawn from the larger plan
        plans = self._whole_plans(
            ot_plan, pairs, matchers, sizes, ot_batch_size is None and world == 1, progress
        )
        self.ot_plan = (
            None
            if isinstance(matcher.coupling, IndependentCoupling)
            else "minibatch"
            if plans is None
            else "whole"
        )
        # growth: each source cell's log mass change over its interval, and draws in proportion
        # to its mass (a global coupling was refused above)
        change = self._mass_changes(pairs) if self.growth else None

        make = self._batch_maker(
            pairs, matchers, plans, change, n, n_ot, n_pairs, batch_size, world, share
        )
        cfg = training_config(
            matcher.coupling if plans is None else None,  # no solves left to overlap
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
        self.history, _ = self._run_training(make, self._loss, cfg)
        for module in self.modules.values():
            module.eval()
        settings.pop("self")
        self._train_settings, self.replicates = settings, []
        return self.history

    def _checked_holdout(self, holdout):
        """``holdout`` as a measured time (or ``None``), refused at either end or with fewer
        than 3 time points."""
        if holdout is None:
            return None
        holdout = self.course.measured(holdout, "holdout")
        if holdout in (self.times[0], self.times[-1]):
            raise ValueError(
                "the first and last time points cannot be held out: nothing brackets them. "
                f"Hold out one of {self.times[1:-1].tolist()}."
            )
        if len(self.times) < 3:
            raise ValueError("holding out a time point needs at least 3 time points.")
        return holdout

    def _batch_maker(
        self, pairs, matchers, plans, change, n, n_ot, n_pairs, batch_size, world, share
    ):
        """The function that draws one training batch (from a random generator): every
        interval's pairs from its whole plan (``plans``), or from a minibatch plan of ``n_ot``
        cells a side (sources drawn by mass when ``change`` holds growth's mass changes), joined
        into one batch (:func:`_joined`)."""
        taus = self.course.taus().tolist()
        store, matcher = self.course.store, self.matcher
        sizes = store.sizes()
        boot = self._resample  # a bootstrap replicate draws from its resample of each time point
        starts = [taus[i] for i, _ in pairs]

        def some(i, g):  # n_ot positions within time point i, uniformly from its (re)sample
            idx = torch.randint(sizes[i], (n_ot,), generator=g)
            return idx if boot is None else boot[i][idx]

        spans = [taus[j] - taus[i] for i, j in pairs]
        score_of = matcher.score_target if self.score_net is not None else None
        # whole plans draw every interval's n pairs in one sample: each pair's start and span
        pair_starts = torch.tensor(starts, dtype=torch.float32).repeat_interleave(n)
        pair_spans = torch.tensor(spans, dtype=torch.float32).repeat_interleave(n)

        def whole_batch(g):
            # every interval's pairs from its whole plan; one path draw for all of them when
            # the intervals share their path (not OT-MFM's geodesics)
            draws = [plan.draw(n, g) for plan in plans]
            x0 = [store.draw(i, d[0]) for (i, _), d in zip(pairs, draws)]
            x1 = [store.draw(j, d[1]) for (_, j), d in zip(pairs, draws)]
            if any(m is not matchers[0] for m in matchers):
                return _joined(
                    [m.path_sample(a, b, generator=g) for m, a, b in zip(matchers, x0, x1)],
                    starts,
                    spans,
                    score_of,
                )
            s = matchers[0].path_sample(torch.cat(x0), torch.cat(x1), generator=g)
            return _joined([s], [pair_starts], [pair_spans], score_of, intervals=len(pairs))

        def make_batch(g):
            out, rates = [], []
            for k, ((i, j), pair_matcher) in enumerate(zip(pairs, matchers)):
                if change is None:
                    x0 = store.draw(i, some(i, g))
                else:
                    r, weight = change[k]
                    if (
                        boot is not None
                    ):  # a cell drawn m times in the resample has m times the weight
                        weight = weight * torch.bincount(boot[i], minlength=sizes[i])
                    i0 = torch.multinomial(weight, n_ot, replacement=True, generator=g)
                    x0 = store.draw(i, i0)
                x1 = store.draw(j, some(j, g))
                s = pair_matcher.sample(x0, x1, n=n_pairs, generator=g)
                if change is not None:
                    rates.append((r[i0[s.i0]] / spans[k]).float())
                out.append(distributed.rank_share(s, batch_size, share) if world > 1 else s)
            return _joined(out, starts, spans, score_of, rates=rates or None)

        return make_batch if plans is None else whole_batch

    def _loss(self, batch):
        """The loss of one batch (see the module docstring), summed over its intervals."""
        # one network call over all pairs; the loss is the sum over pairs of each pair's mean
        dev = self.device  # batches are drawn on the CPU
        tau, x, target = (batch[f].to(dev, non_blocking=True) for f in ("tau", "x", "target"))
        k = batch["intervals"]
        loss = self._squared_error("net", tau, x, target).reshape(k, -1).mean(1).sum()
        if self.growth_net is not None:
            # g_φ(τ, x_τ) against the pair's log mass change per unit of model time
            rate = batch["rate"].to(dev, non_blocking=True)
            gerr = self._squared_error("growth_net", tau, x, rate[:, None])
            loss = loss + gerr.reshape(k, -1).mean(1).sum()
        if self.score_net is not None:
            # λ(t)·s_θ against λ(t)·∇log p_t(x|x0,x1) = -2ε/σ² ([SF]2M); the score does not
            # depend on the time units
            lam = batch["lam"].reshape(-1, 1).to(dev, non_blocking=True)
            score = batch["score"].to(dev, non_blocking=True)
            serr = self._squared_error("score_net", tau, x, score, weight=lam)
            loss = loss + serr.reshape(k, -1).mean(1).sum()
        return loss

    def bootstrap(self, n_models: int, *, progress: bool = True) -> list["CellFlow"]:
        """``n_models`` bootstrap replicates of this trained model: each is trained as this one
        was (the same settings of :meth:`train`), from its own seed, on the cells of every
        time point resampled with replacement (as many as there are). Where the replicates
        disagree, the data do not pin the flow down: :func:`cellflow.tl.fates` and
        :func:`cellflow.tl.pull` with ``n_samples`` report their spread.

        Replicates are kept in :attr:`replicates` (and reused: asking for more trains only the
        new ones; training the model again discards them); they are not saved with the model,
        and the same model and ``n_models`` give the same replicates. A replicate reads and
        returns the same cells as this model (:meth:`cells_at`); only its training draws
        differ. A growth-aware replicate keeps the mass changes of this model's training
        (computed on all cells) and draws its resample in proportion to them.

        Examples
        --------
        >>> reps = model.bootstrap(10)  # doctest: +SKIP
        >>> [r.push(X0, 0, 5) for r in reps]  # doctest: +SKIP
        """
        import copy

        n_models = whole_number(n_models, "n_models")
        if getattr(self, "_train_settings", None) is None:
            raise ValueError(
                "train the model first (model.train(...)): replicates repeat its training."
            )
        from tqdm.auto import tqdm

        todo = range(len(self.replicates), int(n_models))
        for k in tqdm(todo, desc="bootstrap replicates", disable=not progress or not len(todo)):
            rng = np.random.default_rng([self.seed, k])
            rep = copy.copy(self)
            rep.seed = int(rng.integers(2**31 - 1))
            rep._resample = [
                torch.from_numpy(rng.integers(n, size=n)) for n in self.course.store.sizes()
            ]
            rep._build_networks()
            rep.train(**{**self._train_settings, "progress": False})
            rep._train_settings = None  # a replicate has no replicates of its own
            self.replicates.append(rep)
        return self.replicates[: int(n_models)]

    def _mass_changes(self, pairs) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each interval ``(i, j)``: the log mass change of every cell of time point ``i``
        over it (:func:`cellflow.models._growth.interval_log_growth`), and the weights by which
        its cells are drawn (their mass, scaled so that the largest is 1)."""
        out = []
        spans = [float(self.times[j] - self.times[i]) for i, j in pairs]
        self.prior_scale = 1.0
        if self._prior is not None and self.growth == "learned":
            self.prior_scale = calibrate_prior(
                self.course.store, pairs, self._prior, spans, seed=self.seed
            )
            if self.prior_scale in (SCALE_GRID[0], SCALE_GRID[-1]) and self._resample is None:
                warnings.warn(
                    f"growth='learned' scaled the prior obs[{self.growth_key!r}] by "
                    f"{self.prior_scale:g}, the "
                    + (
                        "lowest scale tried: the model ignores your prior, since the time "
                        "points' compositions do not change along it"
                        if self.prior_scale == SCALE_GRID[0]
                        else "highest scale tried: the data ask for faster growth than "
                        f"{SCALE_GRID[-1]:g} times the prior (check the prior's time unit)"
                    )
                    + ". model.prior_scale holds the scale.",
                    stacklevel=3,
                )
        for (i, j), span in zip(pairs, spans):
            r = interval_log_growth(
                self.course.store,
                i,
                j,
                None if self._prior is None else self.prior_scale * self._prior[i],
                span,
                learned=self.growth == "learned",
                tau_a=self.tau_a,
                eps=GROWTH_OT_EPS,
                seed=self.seed,
            )
            out.append((r, torch.exp(r - r.max())))
        return out

    def _fit_geodesics(
        self, pairs, times, steps: int, metric: dict, progress: bool
    ) -> list[FlowMatcher]:
        """OT-MFM's first stage: one metric per pair, then the shared interpolant; one matcher per
        pair, on that pair's ``(start, span)`` of model time."""
        store, sizes = self.course.store, self.course.store.sizes()
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
                self.spec.label,
            )
            for start, span in times
        ]
