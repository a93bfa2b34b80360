r"""`CellFlow`: one flow over all time points of a single-cell time course (multi-marginal CFM).

**Model time.** Time point :math:`k` (of the sorted measured times :math:`s_0 < \dots < s_{K-1}`)
sits at model time :math:`\tau_k`:

- ``time_scale="index"`` (default; the paper's protocol): :math:`\tau_k = k`, so every
  interval has unit length whatever the days between samples;
- ``time_scale="real"``: :math:`\tau_k = (s_k - s_0) / \bar\Delta`, with
  :math:`\bar\Delta = (s_{K-1} - s_0) / (K - 1)` the mean interval. The network sees the same
  clock (:math:`\tau \in [0, K-1]`) whether the times are given in days, hours or minutes, and
  evenly spaced times give the clock of ``"index"``; velocities are converted back to per unit
  of ``obs[time_key]`` (:meth:`CellFlow.velocity`).

Between time points, measured and model time are linearly interpolated. A held-out time point
is skipped: its two neighbours form one interval.

**Training** (:meth:`CellFlow.train`). Each optimiser step draws ``batch_size`` cells from every
trained time point, couples each pair of consecutive time points :math:`(k, l)` with its own
minibatch plan (exact OT for OT-CFM, entropic for SB-CFM, independent for I-CFM), samples the
path at :math:`t \sim U[0, 1]` and regresses the one network on the pair's target, placed at
:math:`\tau = \tau_k + \Delta t` with target :math:`u_t / \Delta`, :math:`\Delta = \tau_l - \tau_k`
(Tong et al. 2024):

.. math:: \mathcal{L}(\theta) = \sum_{(k, l)} \mathbb{E}\,\lVert v_\theta(\tau, x_t) - u_t / \Delta \rVert^2 .

SB models add the score regression of [SF]2M; OT-MFM first fits its geodesic interpolant
(:mod:`cellflow.flow.geodesics`). With ``per_interval=True`` the field is one network per
interval instead (:class:`cellflow.flow.networks.IntervalMLP`), trained in the same steps on the
same pairs; it may turn at a measured time point where a shared network must blend the
intervals on either side.

**Inference** (:meth:`CellFlow.push`, :meth:`CellFlow.velocity`, :meth:`CellFlow.predict`,
:meth:`CellFlow.transition_matrix`). Times in and out are measured times (``obs[time_key]``
units); the flow runs in model time. Cells go in and come out in the representation's units;
the networks see them standardised (:class:`cellflow.course._read.Standardizer`). Pushes run
forwards or backwards, along the ODE or, for SB models, the Schrödinger bridge SDE.

Saving and loading with the data's fingerprint are in :mod:`cellflow.models._persist`; what every
model shares, in :mod:`cellflow.models._base`.

Example
-------
>>> import numpy as np, anndata as ad
>>> import cellflow as cf
>>> rng = np.random.default_rng(0)
>>> adata = ad.AnnData(obs={"day": np.repeat([0, 1, 2], 100)})
>>> adata.obsm["X_pca"] = rng.normal(size=(300, 3)) + np.repeat([0, 1, 2], 100)[:, None]
>>> model = cf.CellFlow(adata, time_key="day", seed=0)
>>> _ = model.train(steps=50, batch_size=64, progress=False)
>>> model.push(adata.obsm["X_pca"][:5], 0, 2).shape
(5, 3)
>>> days = ad.AnnData(obs={"day": np.repeat([2, 3, 4, 7], 20)})
>>> days.obsm["X_pca"] = rng.normal(size=(80, 2))
>>> m = cf.CellFlow(days, time_key="day")
>>> m.model_time(5.5), m.measured_time(2.5)  # days 2, 3, 4, 7 at model times 0, 1, 2, 3
(2.5, 5.5)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from .._defaults import (
    BATCH_SIZE,
    GROWTH_OT_EPS,
    HIDDEN,
    MODEL_EMA_DECAY,
    MODEL_WHITEN,
    OT_PLAN,
    STEPS,
    TIME_SCALE,
    USE_REP,
)
from .._types import Growth, Method, OTPlan, Solver, TimeScale, whole_number
from ..couplings import WHOLE_PLAN_ENTRIES, IndependentCoupling, WholePlan
from ..course import TimeCourse
from ..flow.geodesics import GeodesicInterpolant, GeodesicPath, fit_geodesic_interpolant
from ..flow.matchers import FlowMatcher, make_matcher
from ..flow.networks import MLP, IntervalMLP, interval_index
from ..flow.riemannian_metrics import MAX_METRIC_CELLS, fit_metric
from ..flow.solvers import integrate_ode, integrate_sde, solver_argument
from ..train import distributed
from ..train.config import check_batch_size, check_steps
from ..train.threads import scoped_threads
from ..train.trainer import TrainHistory, check_device
from ._base import ModelBase, training_config
from ._growth import (
    SCALE_GRID,
    calibrate_prior,
    check_growth,
    check_prior_scale,
    growth_prior,
    growth_tau,
    interval_log_growth,
)
from ._methods import cellflow_spec, default_sigma
from ._persist import load_model, write_model_files
from .landing import knn_assignment

# cells integrated at a time: on one thread, 8,192 rows keep a layer's activations in cache
# (measured in choosing_a_method, "Threads")
CHUNK_SIZE = 8192


__all__ = ["CellFlow"]


def _from_course(name: str, doc: str) -> property:
    """A read-only attribute of the model that is its time course's (:attr:`CellFlow.course`)."""
    return property(lambda self: getattr(self.course, name), doc=doc)


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


class CellFlow(ModelBase):
    """A flow between the time-point marginals of an AnnData.

    Parameters
    ----------
    adata
        Cells with sampling times in ``obs[time_key]`` and a representation in ``obsm[use_rep]``.
    time_key
        Column of ``adata.obs`` with each cell's time (numbers, or categories labelled by numbers).
    use_rep, n_pcs
        The representation and how many of its leading columns to use (default all).
        ``use_rep="X"`` trains on ``adata.X`` itself, dense, sparse or on disk (a backed
        AnnData): each step reads only the rows it draws, so X is never densified whole
        (:mod:`cellflow.course._store`). An ``obsm`` representation is copied once to float32.
    whiten
        Standardise each feature (the paper's 5-PC setting). Otherwise the representation is
        centred and divided by one scalar (its root mean feature variance), which keeps its
        geometry. Results are always returned in the representation's units.
    method, sigma
        ``"ot"`` (default), ``"sb"``, ``"icfm"``, or ``"mfm"``: OT-MFM, metric flow matching
        (Kapuśniak et al. 2024; :mod:`cellflow.flow.geodesics`), whose paths bend towards the cells
        instead of running straight; σ is in the standardised units the network
        sees, and defaults to :func:`default_sigma` (0.1; SB 1.0; 1.0 for OT-CFM and OT-MFM on 20
        or more unwhitened dimensions). The OT and SB couplings draw the training pairs
        from their plan with replacement, as torchcfm and the paper do (better than using each
        source cell exactly once, ``tutorials/speed_history.md``): one plan between the whole
        time points where it fits, else one per minibatch (:meth:`train`, ``ot_plan``).
    time_scale
        ``"index"`` (default) or ``"real"``; see the module docstring.
    hidden, activation
        The MLP (paper default: three layers of 64, SELU).
    per_interval
        One network per interval between consecutive (trained) time points instead of one
        shared network (:class:`cellflow.flow.networks.IntervalMLP`), so the field may turn at a
        measured time point where a shared one blends the intervals on either side. Pushes
        over several intervals drift less; held-out time points,
        fates and velocities are no better, so it is not the default (choosing a method, "One
        network per interval"). Forward pushes take the interval that starts at a knot,
        backward pushes the one that ends there, and :meth:`velocity` their mean.
    min_cells
        Refuse time points with fewer cells than this.
    seed
        Seeds weight initialisation and every training draw.
    growth, growth_key, tau
        Cells that divide and die (:mod:`cellflow.models._growth`). ``None`` (default): every
        cell has one descendant, as in balanced OT. ``"prior"``: each cell's mass grows at the
        rate in ``obs[growth_key]`` (per unit of ``obs[time_key]``, log scale: 0 is steady;
        e.g. from :func:`cellflow.pp.score_growth`; a growth *factor* f per unit of time, such
        as moscot's ``prior_growth_rates``, is the rate ``log f``). ``"learned"``: the rate is learned from how the
        time points' compositions change, starting from ``obs[growth_key]`` if given.
        ``"prior"`` uses the prior's masses exactly; ``"learned"`` plans each interval once on
        all its cells (:class:`cellflow.couplings.UnbalancedOT`) with the source marginal relaxed
        by ``tau`` in (0, 1] (1: the prior exactly; default ``GROWTH_TAU``, 0.95; refused with
        the other settings, where it would do nothing). A prior implying a population change
        of more than 1e4-fold over one interval is refused (a rate per day read per hour). Either
        way a growth network :math:`g(t, x)` is fitted beside the velocity, so that :meth:`push`
        can carry each cell's mass and :meth:`growth_rate` report it.
    device
        Where the networks train and integrate (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        Minibatches and their couplings are drawn on the CPU by the batch workers and moved;
        cells go in and come out as NumPy arrays either way. Saved models load on the CPU
        unless :meth:`load` is given a device.
    """

    def __init__(
        self,
        adata,
        time_key: str,
        *,
        use_rep: str = USE_REP,
        n_pcs: int | None = None,
        whiten: bool = MODEL_WHITEN,
        method: Method = "ot",
        sigma: float | None = None,
        time_scale: TimeScale = TIME_SCALE,
        hidden=HIDDEN,
        activation: str = "selu",
        per_interval: bool = False,
        growth: Growth | None = None,
        growth_key: str | None = None,
        tau: float | None = None,
        min_cells: int = 10,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        check_growth(growth, growth_key, adata)
        self.spec = cellflow_spec(method)  # the table's row: its aliases are resolved here
        if growth is not None and self.spec.geodesic:
            raise ValueError(
                f"growth is not available for OT-MFM (method={method!r}); use method='ot' or 'sb'."
            )
        self.growth, self.growth_key, self.tau = growth, growth_key, growth_tau(growth, tau)
        self.prior_scale: float | None = None  # learned growth: the fitted scale of the prior
        # checked before the course is read, whose fingerprint digests it
        prior = growth_prior(adata, growth_key, [slice(None)]) if growth is not None else None
        self.course = TimeCourse(
            adata,
            time_key,
            use_rep=use_rep,
            n_pcs=n_pcs,
            whiten=whiten,
            time_scale=time_scale,
            min_cells=min_cells,
            growth_key=growth_key if growth is not None else None,
        )
        self.method = self.spec.name
        self.seed = int(seed)
        self.device = check_device(device)
        self.sigma = float(
            default_sigma(self.method, self.whiten, self.n_pcs) if sigma is None else sigma
        )
        coupling = {"replace": True} if self.spec.pairs else {}
        # OT-MFM trains with OT-CFM's coupling; its path is learned in train()
        self.matcher = make_matcher(self.method, self.sigma, front="cells", **coupling)
        self.interpolant: GeodesicInterpolant | None = None
        self.geodesic_history: list[float] | None = None
        self._prior = None if prior is None else [prior[0][g] for g in self.course.groups]
        if self._prior is not None:
            check_prior_scale(self._prior, self.times, growth_key, time_key)
        self.per_interval = bool(per_interval)
        self._net_shape = dict(hidden=tuple(int(h) for h in hidden), activation=activation)
        self.holdout: float | None = None
        self._build_networks()
        self.history: TrainHistory | None = None
        #: bootstrap replicates (:meth:`bootstrap`); ``_resample``: a replicate's draws
        self.replicates: list[CellFlow] = []
        self._resample: list[torch.Tensor] | None = None
        self._train_settings: dict | None = None
        #: where the last training's pairs came from: "whole" plans, "minibatch" plans, or None
        #: (None before training, and for I-CFM, which has no plan)
        self.ot_plan: str | None = None

    def _build_networks(self) -> None:
        """Fresh networks (seeded): the field, and for SB models the score of the bridge
        marginals, so that ``push(sde=True)`` can sample the Schrödinger bridge SDE. Per-interval
        networks have a knot at each trained time point (a held-out one is not a knot)."""
        torch.manual_seed(self.seed)
        knots = self._knots()

        def make():
            if self.per_interval:
                return IntervalMLP(self.n_pcs, knots, **self._net_shape).to(self.device)
            return MLP(self.n_pcs, **self._net_shape).to(self.device)

        self.net = make()
        self.score_net = make() if self.spec.has_score else None
        self.growth_net = (
            MLP(self.n_pcs, out_dim=1, **self._net_shape).to(self.device) if self.growth else None
        )

    def _field(self, net, side: str = "right"):
        """``net`` as a function of ``(t, x)``; per-interval networks take the interval on ``side``
        of a knot (``"left"`` when integrating backwards, ``"mean"`` for :meth:`velocity`)."""
        if isinstance(net, IntervalMLP):
            return lambda t, x: net(t, x, side=side)
        return net

    # ------------------------------------------------------------------ the time course
    time_key = _from_course("time_key", "The ``obs`` column of each cell's time.")
    use_rep = _from_course("use_rep", 'The representation: an ``obsm`` key, or ``"X"``.')
    n_pcs = _from_course("n_pcs", "How many leading columns of the representation are used.")
    whiten = _from_course("whiten", "Whether each feature is standardised.")
    time_scale = _from_course("time_scale", 'The clock: ``"index"`` or ``"real"``.')
    min_cells = _from_course("min_cells", "The fewest cells a time point may have.")
    times = _from_course("times", "The sorted measured times.")
    scaler = _from_course("scaler", "The standardisation the networks see the cells in.")
    fingerprint = _from_course("fingerprint", "What identifies the data trained on.")
    time_origin = _from_course("time_origin", "The first measured time.")
    time_unit = _from_course("time_unit", "The mean interval between measured times.")

    def cell_times(self) -> np.ndarray:
        """Each cell's measured time (the ``obs[time_key]`` values as floats, in ``obs`` order)."""
        return self.course.cell_times()

    def cells_at(self, time: float) -> np.ndarray:
        """The observed cells at a measured time, in the representation's units."""
        return self.course.cells_at(time)

    # ------------------------------------------------------------------ persistence
    def _write_files(self, folder: Path) -> None:
        write_model_files(self, folder)

    @classmethod
    def load(cls, path: str | Path, adata, *, device: str | torch.device = "cpu") -> "CellFlow":
        """Load a saved model against ``adata``, which must be the AnnData it was trained on
        (same cells, the same values of the representation, the same times; compared by
        content, :func:`cellflow.models._persist.fingerprint`), onto ``device``; says what differs
        otherwise, and which file of a damaged folder is wrong."""
        return load_model(cls, path, adata, device)

    def __repr__(self) -> str:
        return (
            f"CellFlow(method={self.method!r}, time_key={self.time_key!r}, times={self.times.tolist()}, "
            f"use_rep={self.use_rep!r}, n_pcs={self.n_pcs}, whiten={self.whiten}"
            + (", per_interval=True" if self.per_interval else "")
            + (f", growth={self.growth!r}" if self.growth else "")
            + (
                f", prior_scale={self.prior_scale:g}"
                if self.growth == "learned" and self.prior_scale is not None and self.growth_key
                else ""
            )
            + ")"
        )

    # ------------------------------------------------------------------ model time
    def model_time(self, time: float) -> float:
        """Model time τ of a measured time (:meth:`cellflow.course.TimeCourse.model_time`)."""
        return self.course.model_time(time)

    def measured_time(self, tau: float) -> float:
        """The measured time at model time ``tau``: the inverse of :meth:`model_time`."""
        return self.course.measured_time(tau)

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
                    "ot_plan='whole' is not available for a growth-aware model: its pairs are drawn "
                    "in proportion to each cell's mass, batch by batch. Use ot_plan='minibatch'."
                )
            if not minibatch_free:
                raise ValueError(
                    "ot_plan='whole' cannot be combined with ot_batch_size or distributed training, "
                    "which set the minibatch plans' size. Leave ot_plan at 'auto'."
                )
        elif (
            self.growth
            or not minibatch_free
            or biggest > WHOLE_PLAN_ENTRIES
            or self.course.store.on_demand  # X read row by row: a whole plan would read it all
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

    def _intervals(self) -> list[tuple[float, float]]:
        return self.course.intervals(self.holdout)

    def _knots(self) -> list[float]:
        return self.course.knots(self.holdout)

    # ------------------------------------------------------------------ training
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
            only competes with the step for the cores (:func:`cellflow.train.batch_workers.default_prefetch`).
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
            without (method guide, "The weight average"). :func:`cellflow.evaluate_holdout` follows the paper's protocol, without it.
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
        if holdout is not None:
            holdout = self.course.measured(holdout, "holdout")
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
                f"ot_batch_size={ot_batch_size} is smaller than batch_size={batch_size}: the coupling "
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

        def loss_fn(batch):
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
        self.history, _ = self._run_training(
            make_batch if plans is None else whole_batch, loss_fn, cfg
        )
        for module in self.modules.values():
            module.eval()
        settings.pop("self")
        self._train_settings, self.replicates = settings, []
        return self.history

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
                tau=self.tau,
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

    # ------------------------------------------------------------------ inference
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
        return_mass: bool = False,
        method: str | None = None,
    ):
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

        ``return_mass=True`` (growth-aware models) also returns each cell's mass at the end (or
        at each of the ``n_points``), relative to 1 at ``t_from``:
        :math:`\exp\int g\,d\tau` along its ODE path (backwards, the share of an ancestor that
        the cell is). Returns ``(cells, mass)`` then.
        """
        solver = solver_argument(solver, method, "push")
        X = self.course.check_cells(X)
        tau0, tau1 = self.model_time(t_from), self.model_time(t_to)
        if return_mass:
            if self.growth_net is None:
                raise ValueError(
                    "return_mass=True needs a growth-aware model (CellFlow(..., growth='prior' or "
                    "'learned')); in this one every cell keeps a mass of 1."
                )
            if sde:
                raise ValueError("mass is carried along the ODE; push with sde=False.")
        if (
            tau0 == tau1 or len(X) == 0
        ):  # no time passes, or no cell moves: the cells stay as they are
            out = np.repeat(X[None], n_points, axis=0) if n_points else X.copy()
            if return_mass:
                return out, np.ones(out.shape[:-1])
            return out
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
                if return_mass:  # (x, log m) together: d(log m)/dτ = g(τ, x)
                    field = self._with_log_mass(field)
                    z = torch.cat([z, z.new_zeros(len(z), 1)], 1)
                tr = integrate_ode(field, z, grid.to(self.device), solver=solver, steps=steps)
                outs.append(tr.xs.cpu().numpy().astype(np.float64))
        out = np.concatenate(outs, axis=1)
        if return_mass:
            out, mass = out[..., :-1], np.exp(out[..., -1])
        out = out * self.scaler.scale + self.scaler.mean
        if return_mass:
            return (out, mass) if n_points else (out[-1], mass[-1])
        return out if n_points else out[-1]

    def _with_log_mass(self, field):
        growth = self.growth_net

        def joint(t, y):
            x = y[:, :-1]
            return torch.cat([field(t, x), growth(t, x).reshape(-1, 1)], 1)

        return joint

    @scoped_threads
    def growth_rate(
        self, X: np.ndarray, time: float | np.ndarray, *, chunk_size: int = CHUNK_SIZE
    ) -> np.ndarray:
        """The learned net growth rate :math:`g(t, x)` at cells ``X`` and time(s) ``time``, per
        unit of ``obs[time_key]`` on the log scale (a cell's expected descendants grow by
        ``exp(rate * Δt)``). At a measured time between two intervals of different length the
        rate per unit of model time is converted with the mean of their clocks."""
        if self.growth_net is None:
            raise ValueError(
                "this model has no growth (growth=None); build CellFlow(..., growth='learned') or "
                "growth='prior' to learn one."
            )
        growth = lambda t, z: self.growth_net(t, z).reshape(-1)  # noqa: E731
        out, s = self._at_cells(growth, X, time, chunk_size, width=())
        return out * self._clock_rate(s)

    def _at_cells(self, fn, X, time, chunk_size: int, width) -> tuple[np.ndarray, np.ndarray]:
        """``fn(τ, z)``, of shape ``(cells, *width)``, at cells ``X`` (standardised to ``z``) and
        their measured time(s) ``time`` (at model time ``τ``), ``chunk_size`` cells at a time
        without gradients; returns the values and each cell's measured time."""
        X = self.course.check_cells(X)
        s = np.broadcast_to(np.asarray(time, dtype=float), (len(X),))
        tau = np.vectorize(self.model_time, otypes=[float])(s)
        out = np.empty((len(X), *width))
        with torch.no_grad():
            for start in range(0, len(X), chunk_size):
                sl = slice(start, start + chunk_size)
                z = torch.tensor(
                    self.scaler.forward(X[sl]), dtype=torch.float32, device=self.device
                )
                t = torch.tensor(tau[sl], dtype=torch.float32, device=self.device)
                out[sl] = fn(t, z).cpu().numpy()
        return out, s

    def _clock_rate(self, s: np.ndarray) -> np.ndarray:
        """dτ/ds, model time per unit of measured time, at measured times ``s`` (at a knot, the
        mean of the two intervals' rates)."""
        taus, times = self.course.taus(), self.times
        slopes = np.diff(taus) / np.diff(times)
        k = np.clip(np.searchsorted(times, s, side="right") - 1, 0, len(slopes) - 1)
        left = np.clip(np.searchsorted(times, s, side="left") - 1, 0, len(slopes) - 1)
        at_knot = np.isin(s, times)
        return np.where(at_knot, 0.5 * (slopes[k] + slopes[left]), slopes[k])

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
        # at a knot a per-interval field takes both intervals
        field = self._field(self.net, "mean")
        out, _ = self._at_cells(field, X, time, chunk_size, width=(self.n_pcs,))
        return out * self.scaler.scale / self.course.unit()

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

        A growth-aware model pushes the cells with their masses and returns ``n_cells`` (default:
        as many as it pushed) drawn in proportion to mass (systematic resampling): a cell that
        doubled is there twice as often, so the prediction has the later population's
        composition.
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
        elif n_cells is not None and n_cells < len(X0) and self.growth_net is None:
            X0 = X0[np.sort(rng.choice(len(X0), n_cells, replace=False))]
        if self.growth_net is None:
            return self.push(X0, from_time, time, steps=steps)
        Y, mass = self.push(X0, from_time, time, steps=steps, return_mass=True)
        n = len(Y) if n_cells is None else int(n_cells)
        cum = np.cumsum(mass) / mass.sum()
        picks = np.searchsorted(cum, (rng.random() + np.arange(n)) / n, side="right")
        return Y[np.minimum(picks, len(Y) - 1)]

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
        seed: int | None = None,
        return_mass: bool = False,
    ):
        """Where cells at ``t_from`` land among the observed cells at ``t_to``.

        Each cell (default: all observed at ``t_from``) is pushed to ``t_to`` and spread over
        its ``k`` nearest observed cells there with Gaussian weights (bandwidth: the distance to
        its ``k``-th neighbour / 2, in model units). With ``sde=True`` (SB models), each cell
        follows ``n_samples`` SDE paths (noise seeded by ``seed``, default the model's) and its
        row is their average. Returns a sparse
        row-stochastic matrix (cells at ``t_from`` × observed cells at ``t_to``, in ``obs`` order).
        ``return_mass=True`` (growth-aware models) returns ``(matrix, mass)``, with each cell's
        mass at ``t_to`` along its ODE path (:meth:`push`).
        """
        import scipy.sparse as sp

        Y, mass = self.endpoints(
            t_from,
            t_to,
            cells=cells,
            steps=steps,
            sde=sde,
            n_samples=n_samples,
            seed=seed,
            return_mass=return_mass,
        )
        P = knn_assignment(self.scaler.forward(Y), self.scaler.forward(self.cells_at(t_to)), k=k)
        m = int(n_samples) if sde else 1
        if m == 1:
            return (P, mass) if return_mass else P
        mean = sp.csr_matrix(
            (np.full(len(Y), 1.0 / m), np.arange(len(Y)), np.arange(0, len(Y) + 1, m)),
            shape=(len(Y) // m, len(Y)),
        )
        return ((mean @ P).tocsr(), mass) if return_mass else (mean @ P).tocsr()

    def endpoints(
        self,
        t_from: float,
        t_to: float,
        *,
        cells: np.ndarray | None = None,
        steps: int = 100,
        sde: bool = False,
        n_samples: int = 10,
        seed: int | None = None,
        return_mass: bool = False,
    ):
        """Where the cells at ``t_from`` (default: all observed there) are at ``t_to``, the
        points every landing starts from (:meth:`transition_matrix`, :func:`cellflow.tl.fates`).

        Along the ODE one point per cell; with ``sde=True`` (SB models) ``n_samples`` SDE paths
        per cell, a cell's paths in consecutive rows (noise seeded by ``seed``, default the
        model's). Returns ``(points, mass)``: ``mass`` is ``None`` unless ``return_mass``, then
        each cell's mass at ``t_to`` along its ODE path (:meth:`push`; growth-aware models).

        >>> Y, _ = model.endpoints(0, 1)  # doctest: +SKIP
        """
        X0 = self.cells_at(t_from) if cells is None else self.course.check_cells(cells)
        if return_mass and not sde:
            return self.push(X0, t_from, t_to, steps=steps, return_mass=True)
        m = int(n_samples) if sde else 1
        Y = self.push(np.repeat(X0, m, axis=0), t_from, t_to, steps=steps, sde=sde, seed=seed)
        mass = (
            self.push(X0, t_from, t_to, steps=steps, return_mass=True)[1] if return_mass else None
        )
        return Y, mass  # with sde the mass follows the ODE
