r"""`CellFlow`: one flow over all time points of a single-cell time course (multi-marginal CFM).

One network :math:`v_\theta(\tau, x)` is trained on every pair of consecutive time points at
once, with a minibatch coupling per pair (exact OT for OT-CFM, entropic for SB-CFM), as in
Tong et al. (2024). Time point :math:`k` sits at model time :math:`\tau_k`:

- ``time_scale="index"`` (default; the paper's protocol): :math:`\tau_k = k`, so every
  interval has unit length whatever the days between samples;
- ``time_scale="real"``: :math:`\tau_k` keeps the measured spacing (days 2, 3, 4, 7 are not
  evenly spaced), in mean intervals from the first time point so that the unit of time does
  not matter (:mod:`cellflow.models._model_time`); velocities are per unit of real time.

On a pair :math:`(k, l)` with span :math:`\Delta = \tau_l - \tau_k` the path sample at
:math:`t \in [0, 1]` is placed at :math:`\tau = \tau_k + \Delta t` with target
:math:`u_t / \Delta`. A held-out time point is skipped: its neighbours form one pair.

With ``per_interval=True`` the field is one network per interval instead
(:class:`cellflow.flow.networks.IntervalMLP`), trained in the same steps on the same pairs. It may
turn at a measured time point where a shared network must blend the intervals on either side.

This module builds the model (cells, scaling, networks) and saves it; model time and the trained
intervals are in :mod:`cellflow.models._model_time`, training in :mod:`cellflow.models._cells_training`, and
pushes, velocities and predictions in :mod:`cellflow.models._cells_inference`, as mixins of
:class:`CellFlow` (the scvi-tools pattern).

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
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import torch

from .._defaults import MODEL_WHITEN, TIME_SCALE, USE_REP
from .._types import Method, TimeScale
from ..adata._read import Standardizer, check_n_pcs, get_representation, get_times
from ..adata._store import CellStore, RowSource
from ..flow.geodesics import GeodesicInterpolant
from ..flow.matchers import make_matcher
from ..flow.networks import MLP, IntervalMLP
from ..train.trainer import TrainHistory, check_device
from ._base import ModelBase
from ._cells_inference import InferenceMixin
from ._cells_training import TrainingMixin
from ._methods import cellflow_spec, default_sigma
from ._model_time import ModelTimeMixin
from ._persist import fingerprint, load_model, source_digest, write_model_files

__all__ = ["CellFlow"]


class CellFlow(ModelBase, ModelTimeMixin, TrainingMixin, InferenceMixin):
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
        (:mod:`cellflow.adata._store`). An ``obsm`` representation is copied once to float32.
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
        from the whole minibatch plan with replacement, as torchcfm and the paper do (better
        than using each source cell exactly once, ``tutorials/speed_history.md``).
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
        hidden=(64, 64, 64),
        activation: str = "selu",
        per_interval: bool = False,
        min_cells: int = 10,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        if time_scale not in get_args(TimeScale):
            raise ValueError(f"time_scale must be 'index' or 'real', got {time_scale!r}.")
        self.time_key, self.use_rep, self.time_scale = time_key, use_rep, time_scale
        self.spec = cellflow_spec(method)
        self.method = self.spec.name
        self.seed, self.whiten, self.min_cells = int(seed), bool(whiten), int(min_cells)
        self.device = check_device(device)
        t, self.times = get_times(adata, time_key)
        n_pcs = check_n_pcs(n_pcs)
        if (
            use_rep == "X"
        ):  # sparse or on-disk X is read a minibatch at a time, never densified whole
            source = RowSource.from_adata(adata, "X", n_pcs)
            X = None
            self.n_pcs = source.n_cols
        else:
            source, X = None, get_representation(adata, use_rep, n_pcs)
            self.n_pcs = X.shape[1]
        counts = {float(s): int((t == s).sum()) for s in self.times}
        few = {k: v for k, v in counts.items() if v < min_cells}
        if few:
            raise ValueError(
                f"time point(s) {few} have fewer than min_cells={min_cells} cells; drop them or "
                "lower min_cells."
            )
        self.sigma = float(
            default_sigma(self.method, self.whiten, self.n_pcs) if sigma is None else sigma
        )
        coupling = {"replace": True} if self.spec.pairs else {}
        # OT-MFM trains with OT-CFM's coupling; its path is learned in train()
        self.matcher = make_matcher(self.method, self.sigma, front="cells", **coupling)
        self.interpolant: GeodesicInterpolant | None = None
        self.geodesic_history: list[float] | None = None
        self.scaler = (
            Standardizer.fit(X, self.whiten)
            if source is None
            else Standardizer.from_moments(*source.moments(), self.whiten)
        )
        self._cell_times = t
        self._store = CellStore(
            [np.flatnonzero(t == s) for s in self.times], self.scaler, source, X
        )
        self.fingerprint = fingerprint(adata, use_rep, time_key, self.n_pcs)
        # the model's clock: measured time s sits at (s - time_origin) / time_unit (time_scale="real")
        self.time_origin = float(self.times[0])
        self.time_unit = float((self.times[-1] - self.times[0]) / (len(self.times) - 1))
        self.per_interval = bool(per_interval)
        self._net_shape = dict(hidden=tuple(int(h) for h in hidden), activation=activation)
        self.holdout: float | None = None
        self._build_networks()
        self.history: TrainHistory | None = None

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

    def _field(self, net, side: str = "right"):
        """``net`` as a function of ``(t, x)``; per-interval networks take the interval on ``side``
        of a knot (``"left"`` when integrating backwards, ``"mean"`` for :meth:`velocity`)."""
        if isinstance(net, IntervalMLP):
            return lambda t, x: net(t, x, side=side)
        return net

    def cell_times(self) -> np.ndarray:
        """Each cell's measured time (the ``obs[time_key]`` values as floats, in ``obs`` order)."""
        return self._cell_times.copy()

    def _check_cells(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_pcs:
            raise ValueError(
                f"cells must be an array of shape (n_cells, {self.n_pcs}) in the units of "
                f"obsm[{self.use_rep!r}][:, :{self.n_pcs}]; got shape {X.shape}."
            )
        if not np.isfinite(X).all():
            raise ValueError("cells contain NaN or inf.")
        return X

    def _check_source(self) -> None:
        """A model with ``use_rep="X"`` reads its cells from ``adata.X`` whenever it needs them;
        refuse if X has changed since the model was built (an in-place ``sc.pp.scale``, say),
        which would otherwise mix old and new values without a word."""
        if not self._store.on_demand:
            return  # an obsm representation was copied when the model was built
        fp = self.fingerprint
        now = source_digest(self._store.source)
        if now != fp["rep_sha1"]:
            raise ValueError(
                "adata.X has changed since this model was built (e.g. sc.pp.scale(adata) or another "
                "in-place step), and a model with use_rep='X' reads its cells from it. Undo the "
                "change (work on adata.copy()), or build and train a new model on the AnnData as it "
                "is now."
            )

    def cells_at(self, time: float) -> np.ndarray:
        """The observed cells at a measured time, in the representation's units."""
        time = self._measured(time, "time")
        i = int(np.flatnonzero(self.times == time)[0])
        self._check_source()
        return self._store.cells(i)

    def _measured(self, time, name: str) -> float:
        """``time`` as one of the measured times (a number, or a label such as ``"3"``)."""
        try:
            value = float(time)
        except (TypeError, ValueError):
            value = None
        if value is None or value not in self.times:
            raise ValueError(
                f"{name}={time!r} is not a measured time; choose from {self.times.tolist()} "
                f"(the values of obs[{self.time_key!r}])."
            )
        return value

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
            + (", per_interval=True)" if self.per_interval else ")")
        )
