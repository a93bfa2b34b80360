r"""`TimeCourse`: a single-cell time course read once from an AnnData.

What every model, tool and benchmark of a time course needs to know about the data, in one
place: each cell's sampling time (``obs[time_key]``), the cells of each time point in one
representation (``obsm[use_rep]`` or ``X``) and their standardisation, the model's clock, the
intervals between time points, and the fingerprint that says "this is the data a model was
trained on" (:mod:`cellflow.course.fingerprint`).

**The clock.** Time point :math:`k` (of the sorted measured times :math:`s_0 < \dots < s_{K-1}`)
sits at model time :math:`\tau_k`:

- ``time_scale="index"`` (default; the paper's protocol): :math:`\tau_k = k`, so every
  interval has unit length whatever the days between samples;
- ``time_scale="real"``: :math:`\tau_k = (s_k - s_0) / \bar\Delta`, with
  :math:`\bar\Delta = (s_{K-1} - s_0) / (K - 1)` the mean interval. A network sees the same
  clock (:math:`\tau \in [0, K-1]`) whether the times are given in days, hours or minutes, and
  evenly spaced times give the clock of ``"index"``.

Between time points, measured and model time are linearly interpolated. A held-out time point
is skipped: its two neighbours form one interval.

Example
-------
>>> import numpy as np, anndata as ad
>>> rng = np.random.default_rng(0)
>>> adata = ad.AnnData(obs={"day": np.repeat([2, 3, 4, 7], 20)})
>>> adata.obsm["X_pca"] = rng.normal(size=(80, 2))
>>> course = TimeCourse(adata, "day", time_scale="real")
>>> course.times.tolist(), course.cells_at(3).shape
([2.0, 3.0, 4.0, 7.0], (20, 2))
>>> course.model_time(7.0), course.measured_time(1.2)  # the mean interval is 5/3 days
(3.0, 4.0)
>>> course.pairs(holdout=3.0)  # indices of consecutive trained time points
[(0, 2), (2, 3)]
"""

from __future__ import annotations

import hashlib
import warnings
from typing import get_args

import numpy as np

from .._defaults import MIN_CELLS, MODEL_WHITEN, STORE_COPY_BYTES, TIME_SCALE, USE_REP
from .._types import TimeScale
from .fingerprint import (
    fingerprint,
    fingerprint_differences,
    mismatch_error,
    source_digest,
    values_differ,
)
from .read import Standardizer, check_n_pcs, get_times, representation_matrix
from .store import CellStore, RowSource, has_representation

__all__ = ["TimeCourse", "MIN_REAL_GAP"]

#: with ``time_scale="real"``, an interval shorter than this share of the mean one is warned about
MIN_REAL_GAP = 1e-3
#: a representation read on demand from a dataset stored in chunks of more rows is warned about
CHUNK_ROWS_WARN = 64


class TimeCourse:
    """The cells of an AnnData by time point, their standardisation and the model clock.

    Parameters
    ----------
    adata, time_key, use_rep, n_pcs, whiten, time_scale, min_cells
        As for :class:`cellflow.CellFlow`, which reads its data through a course: the cells
        with times in ``obs[time_key]`` and a representation in ``obsm[use_rep]`` (or ``X``,
        read a minibatch of rows at a time, :mod:`cellflow.course.store`), its standardisation
        (:class:`cellflow.course.read.Standardizer`), the clock (module docstring) and the
        fewest cells a time point may have.
    growth_key
        A column of growth priors that belongs to the data (its digest joins the fingerprint).
    """

    def __init__(
        self,
        adata,
        time_key: str,
        *,
        use_rep: str = USE_REP,
        n_pcs: int | None = None,
        whiten: bool = MODEL_WHITEN,
        time_scale: TimeScale = TIME_SCALE,
        min_cells: int = MIN_CELLS,
        growth_key: str | None = None,
    ):
        if time_scale not in get_args(TimeScale):
            raise ValueError(f"time_scale must be 'index' or 'real', got {time_scale!r}.")
        self.time_key, self.use_rep, self.time_scale = time_key, use_rep, time_scale
        self.whiten, self.min_cells = bool(whiten), int(min_cells)
        t, self.times = get_times(adata, time_key)
        n_pcs = check_n_pcs(n_pcs)
        if use_rep == "X":  # sparse or on-disk X is read a minibatch at a time, never whole
            source = RowSource.from_adata(adata, "X", n_pcs)
        else:  # read once, a block of rows at a time, into float32 (never a float64 copy)
            M = representation_matrix(adata, use_rep, n_pcs)
            if getattr(M, "dtype", np.dtype(float)).kind not in "biuf":
                raise ValueError(
                    f"adata.obsm[{use_rep!r}] must hold numbers, not values of dtype {M.dtype}."
                )
            source = RowSource(M, n_pcs, name=f"obsm[{use_rep!r}]")
        self.n_pcs = source.n_cols
        counts = {float(s): int((t == s).sum()) for s in self.times}
        few = {k: v for k, v in counts.items() if v < min_cells}
        if few:
            raise ValueError(
                f"time point(s) {few} have fewer than min_cells={min_cells} cells; drop them or "
                "lower min_cells."
            )
        # an obsm representation's digest is taken in the pass that reads its moments
        digest = None if use_rep == "X" else hashlib.sha1()
        self.scaler = Standardizer.from_moments(*source.moments(digest), self.whiten)
        self._cell_times = t
        #: the row indices (into ``obs``) of each time point's cells
        self.groups = [np.flatnonzero(t == s) for s in self.times]
        # a representation up to STORE_COPY_BYTES is copied (standardised, float32); X and a
        # larger representation are read a minibatch of rows at a time from where they are
        copy = use_rep != "X" and 4 * source.shape[0] * source.n_cols <= STORE_COPY_BYTES
        self.store = CellStore(self.groups, self.scaler, source, keep=copy)
        chunk = getattr(source.M, "chunks", None)  # an on-disk (h5py) dataset's chunk shape
        if self.store.on_demand and use_rep != "X" and chunk and chunk[0] > CHUNK_ROWS_WARN:
            warnings.warn(
                f"obsm[{use_rep!r}] is stored on disk in chunks of {chunk[0]} rows (a compressed "
                "or chunked .h5ad), and training reads the rows each step draws from it: every "
                "row costs the read of its whole chunk. Write the file without compression "
                "(anndata stores a dense array contiguous by default) for fast draws.",
                stacklevel=3,
            )
        self.fingerprint = fingerprint(
            adata,
            use_rep,
            time_key,
            self.n_pcs,
            growth_key,
            rep_sha1=None if digest is None else digest.hexdigest(),
        )
        # what check_source compares: 256 rows of what the store reads on demand
        self._source_sha1 = source_digest(self.store.source) if self.store.on_demand else None
        # measured time s sits at (s - time_origin) / time_unit on the clock of "real"
        self.time_origin = float(self.times[0])
        self.time_unit = float((self.times[-1] - self.times[0]) / (len(self.times) - 1))
        gaps = np.diff(self.times)
        if time_scale == "real" and len(gaps) and gaps.min() < MIN_REAL_GAP * self.time_unit:
            k = int(np.argmin(gaps))
            warnings.warn(
                f"time points {self.times[k]:g} and {self.times[k + 1]:g} are "
                f"{gaps[k]:.3g} apart, {gaps[k] / self.time_unit:.2g} of the mean interval: with "
                f"time_scale='real' the velocity between them is {self.time_unit / gaps[k]:.2g} "
                "times that of a mean interval, and training on it swamps the rest (losses of "
                "1e10 and more). Merge them if they are one sample, or use time_scale='index'.",
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return (
            f"TimeCourse(time_key={self.time_key!r}, times={self.times.tolist()}, "
            f"cells={self.sizes()}, use_rep={self.use_rep!r}, n_pcs={self.n_pcs})"
        )

    # ------------------------------------------------------------------ cells
    def sizes(self) -> list[int]:
        """The number of cells of each time point."""
        return self.store.sizes()

    def cell_times(self) -> np.ndarray:
        """Each cell's measured time (the ``obs[time_key]`` values as floats, in ``obs`` order)."""
        return self._cell_times.copy()

    def measured(self, time, name: str = "time") -> float:
        """``time`` as one of the measured times (a number, or a label such as ``"3"``); an
        error names the argument ``name`` and the times there are otherwise."""
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

    def index(self, time, name: str = "time") -> int:
        """The position of a measured time in :attr:`times`."""
        return int(np.flatnonzero(self.times == self.measured(time, name))[0])

    def cells_at(self, time, rows: np.ndarray | None = None) -> np.ndarray:
        """The observed cells at a measured time (all, or those at positions ``rows`` among
        them), in the representation's units."""
        i = self.index(time)
        self.check_source()
        return self.store.cells(i, rows)

    def moments_at(self, time) -> tuple[np.ndarray, np.ndarray]:
        """Column mean and variance of the cells at a measured time (representation units),
        read a block of cells at a time."""
        i = self.index(time)
        self.check_source()
        return self.store.moments(i)

    def check_cells(self, X) -> np.ndarray:
        """``X`` as float64 cells of this representation, or an error saying the shape wanted."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_pcs:
            raise ValueError(
                f"cells must be an array of shape (n_cells, {self.n_pcs}) in the units of "
                f"obsm[{self.use_rep!r}][:, :{self.n_pcs}]; got shape {X.shape}."
            )
        if not np.isfinite(X).all():
            raise ValueError("cells contain NaN or inf.")
        return X

    def check_source(self) -> None:
        """With ``use_rep="X"`` (or a representation too large to copy, ``STORE_COPY_BYTES``)
        the cells are read from the AnnData whenever they are needed; refuse if they have
        changed since the course was read (an in-place ``sc.pp.scale``, say), which would
        otherwise mix old and new values without a word."""
        if not self.store.on_demand:
            return  # the representation was copied when the course was read
        if source_digest(self.store.source) != self._source_sha1:
            where = f"adata.{self.store.source.name}"
            raise ValueError(
                f"{where} has changed since this model was built (e.g. sc.pp.scale(adata) or "
                f"another in-place step), and the model reads its cells from it. Undo the change "
                "(work on adata.copy()), or build and train a new model on the AnnData as it is "
                "now."
            )

    def check(self, adata) -> None:
        """Raise unless ``adata`` is the AnnData this course was read from: the same cells
        (number and names), the same values of the representation, the same times and growth
        prior (:func:`cellflow.course.fingerprint.fingerprint`); with ``use_rep="X"``, also if
        ``adata.X`` changed in place since."""
        if not has_representation(adata, self.use_rep):
            where = (
                "adata.X is empty" if self.use_rep == "X" else f"adata.obsm has no {self.use_rep!r}"
            )
            raise KeyError(f"{where}, the representation the model was trained on.")
        diff = fingerprint_differences(adata, self.use_rep, self.fingerprint, self.time_key)
        if diff:
            raise mismatch_error(diff)
        self.check_source()

    # ------------------------------------------------------------------ the clock
    def taus(self) -> np.ndarray:
        """Model time of each measured time point."""
        if self.time_scale == "index":
            return np.arange(len(self.times), dtype=float)
        return (self.times - self.time_origin) / self.time_unit

    def unit(self) -> float:
        """Measured time per unit of model time (for ``"real"``, the mean interval; ``"index"``
        has no such unit, and its velocities are per interval)."""
        return self.time_unit if self.time_scale == "real" else 1.0

    def model_time(self, time) -> float:
        """Model time τ of a measured time (linear interpolation between time points)."""
        try:
            time = float(time)
        except (TypeError, ValueError):
            raise ValueError(
                f"time {time!r} is not a number; times are in the units of "
                f"obs[{self.time_key!r}] (measured: {self.times.tolist()})."
            ) from None
        if not self.times[0] <= time <= self.times[-1]:
            raise ValueError(
                f"time {time} is outside the measured range [{self.times[0]}, {self.times[-1]}]."
            )
        return float(np.interp(time, self.times, self.taus()))

    def measured_time(self, tau: float) -> float:
        """The measured time at model time ``tau``: the inverse of :meth:`model_time`."""
        taus = self.taus()
        if not taus[0] <= tau <= taus[-1]:
            raise ValueError(
                f"model time {tau} is outside the trained range [{taus[0]}, {taus[-1]}]."
            )
        return float(np.interp(tau, taus, self.times))

    def pairs(self, holdout: float | None = None) -> list[tuple[int, int]]:
        """Consecutive trained time points ``(i, j)`` (indices into :attr:`times`), skipping
        ``holdout``."""
        keep = [i for i, s in enumerate(self.times) if holdout is None or s != holdout]
        return list(zip(keep[:-1], keep[1:]))

    def intervals(self, holdout: float | None = None) -> list[tuple[float, float]]:
        """The trained intervals ``(τ_i, τ_j)`` in model time (skipping ``holdout``)."""
        taus = self.taus().tolist()
        return [(taus[i], taus[j]) for i, j in self.pairs(holdout)]

    def knots(self, holdout: float | None = None) -> list[float]:
        """The trained time points in model time (``holdout`` skipped): the intervals' ends."""
        intervals = self.intervals(holdout)
        return [a for a, _ in intervals] + [intervals[-1][1]]

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict:
        """The course's block of a saved model's ``config.json`` (JSON-safe)."""
        return dict(
            time_key=self.time_key,
            use_rep=self.use_rep,
            n_pcs=self.n_pcs,
            whiten=self.whiten,
            time_scale=self.time_scale,
            time_origin=self.time_origin,
            time_unit=self.time_unit,
            min_cells=self.min_cells,
            times=self.times.tolist(),
            scaler=self.scaler.to_dict(),
            fingerprint=self.fingerprint,
        )

    @staticmethod
    def check_saved(config: dict, adata, *, values: bool = True) -> None:
        """Raise unless ``adata`` is the AnnData of a saved course (its :meth:`to_dict`), with
        everything that differs; before any of it is read into a new course. ``values=False``
        leaves the representation's values to :meth:`check_values` once the course is read (one
        pass over them instead of two)."""
        problems = []
        if config["time_key"] not in adata.obs:
            problems.append(f"obs has no column {config['time_key']!r}")
        if not has_representation(adata, config["use_rep"]):
            problems.append(
                "X is empty" if config["use_rep"] == "X" else f"obsm has no {config['use_rep']!r}"
            )
        else:
            # models saved before the fingerprint held the times still compare the time points
            saved = {"times": config["times"], **config["fingerprint"]}
            problems += fingerprint_differences(
                adata, config["use_rep"], saved, config["time_key"], values=values
            )
        if problems:
            raise mismatch_error(problems)

    def check_values(self, config: dict) -> None:
        """Raise unless the representation this course read has the values of a saved course
        (its :meth:`to_dict`): the digest taken while reading it against the saved one."""
        saved = config["fingerprint"].get("rep_sha1")
        if saved is not None and saved != self.fingerprint.get("rep_sha1"):
            raise mismatch_error([values_differ(self.use_rep, self.n_pcs)])

    def restore(self, config: dict) -> None:
        """Take the standardisation and clock of a saved course (its :meth:`to_dict`) on the
        same data (models saved before ``time_unit`` existed ran real time unscaled)."""
        self.scaler = Standardizer.from_dict(config["scaler"])
        self.time_origin = float(config.get("time_origin", 0.0))
        self.time_unit = float(config.get("time_unit", 1.0))
