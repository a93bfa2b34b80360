r"""`CellFlow`: one flow over all time points of a single-cell time course (multi-marginal CFM).

**Model time** is the time course's clock (:class:`cellflow.course.TimeCourse`: ``"index"``
puts time point :math:`k` at :math:`\tau_k = k`, ``"real"`` at its measured time over the mean
interval); velocities are converted back to per unit of ``obs[time_key]``
(:meth:`CellFlow.velocity`).

**Training** (:meth:`CellFlow.train`, :mod:`cellflow.models._cell_training`) regresses one
network on the conditional flow-matching targets of every interval between consecutive trained
time points. SB models add the score regression of [SF]2M; OT-MFM first fits its geodesic
interpolant (:mod:`cellflow.flow.geodesics`). With ``per_interval=True`` the field is one
network per interval instead (:class:`cellflow.flow.networks.IntervalMLP`), trained in the same
steps on the same pairs; it may turn at a measured time point where a shared network must blend
the intervals on either side.

**Inference** (:meth:`CellFlow.push`, :meth:`CellFlow.velocity`, :meth:`CellFlow.predict`,
:meth:`CellFlow.transition_matrix`). Times in and out are measured times (``obs[time_key]``
units); the flow runs in model time. Cells go in and come out in the representation's units;
the networks see them standardised (:class:`cellflow.course.read.Standardizer`). Pushes run
forwards or backwards, along the ODE or, for SB models, the Schrödinger bridge SDE.

The data (times, cells, standardisation, fingerprint) are the model's :attr:`CellFlow.course`;
saving and loading are in :mod:`cellflow.models._persist`; what every model shares, in
:mod:`cellflow.models._base`.

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

import numpy as np
import torch

from .._defaults import (
    HIDDEN,
    MIN_CELLS,
    MODEL_WHITEN,
    TIME_SCALE,
    USE_REP,
)
from .._types import Growth, Method, Solver, TimeScale
from ..course import TimeCourse
from ..flow.geodesics import GeodesicInterpolant
from ..flow.matchers import make_matcher
from ..flow.networks import MLP, IntervalMLP, interval_index
from ..flow.solvers import integrate_ode, integrate_sde, solver_argument
from ..train.threads import scoped_threads
from ..train.trainer import TrainHistory, check_device
from ._base import ModelBase
from ._cell_training import CellTraining
from ._growth import (
    check_growth,
    check_prior_scale,
    growth_prior,
    growth_tau,
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


class CellFlow(CellTraining, ModelBase):
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
        (:mod:`cellflow.course.store`). An ``obsm`` representation is copied once to float32.
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
    growth, growth_key, tau_a
        Cells that divide and die (:mod:`cellflow.models._growth`). ``None`` (default): every
        cell has one descendant, as in balanced OT. ``"prior"``: each cell's mass grows at the
        rate in ``obs[growth_key]`` (per unit of ``obs[time_key]``, log scale: 0 is steady;
        e.g. from :func:`cellflow.pp.score_growth`; a growth *factor* f per unit of time, such
        as moscot's ``prior_growth_rates``, is the rate ``log f``). ``"learned"``: the rate is
        learned from how the
        time points' compositions change, starting from ``obs[growth_key]`` if given.
        ``"prior"`` uses the prior's masses exactly; ``"learned"`` plans each interval once on
        all its cells (:class:`cellflow.couplings.UnbalancedOT`) with the source marginal relaxed
        by ``tau_a`` in (0, 1] (moscot's name; 1: the prior exactly; default ``GROWTH_TAU``, 0.95;
        refused with
        the other settings, where it would do nothing). A prior implying a population change
        of more than 1e4-fold over one interval is refused (a rate per day read per hour). Either
        way a growth network :math:`g(t, x)` is fitted beside the velocity, so that :meth:`push`
        can carry each cell's mass and :meth:`growth_rate` report it.
    tau
        The old name of ``tau_a`` (a ``FutureWarning``; it goes in cellflow 0.2).
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
        tau_a: float | None = None,
        min_cells: int = MIN_CELLS,
        seed: int = 0,
        device: str | torch.device = "cpu",
        tau: float | None = None,
    ):
        check_growth(growth, growth_key, adata)
        self.spec = cellflow_spec(method)  # the table's row: its aliases are resolved here
        if growth is not None and self.spec.geodesic:
            raise ValueError(
                f"growth is not available for OT-MFM (method={method!r}); use method='ot' or 'sb'."
            )
        self.growth, self.growth_key = growth, growth_key
        self.tau_a = growth_tau(growth, tau_a, tau)
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

    @property
    def tau(self) -> float | None:
        """The old name of :attr:`tau_a`; reading it warns, and it goes in cellflow 0.2."""
        warnings.warn(
            "CellFlow.tau is now CellFlow.tau_a; the old name stops working in cellflow 0.2.",
            FutureWarning,
            stacklevel=2,
        )
        return self.tau_a

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
            f"CellFlow(method={self.method!r}, time_key={self.time_key!r}, "
            f"times={self.times.tolist()}, "
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

    def _intervals(self) -> list[tuple[float, float]]:
        return self.course.intervals(self.holdout)

    def _knots(self) -> list[float]:
        return self.course.knots(self.holdout)

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
