r"""Model time of :class:`cellflow.CellFlow`: where each measured time point sits on the
flow's clock, and the intervals a model trains on.

Time point :math:`k` (of the sorted measured times :math:`s_0 < s_1 < \dots < s_{K-1}`) sits
at model time :math:`\tau_k`: :math:`\tau_k = k` with ``time_scale="index"`` (the paper's
protocol), and :math:`\tau_k = (s_k - s_0) / \bar\Delta` with ``"real"``, where
:math:`\bar\Delta = (s_{K-1} - s_0) / (K - 1)` is the mean interval. Real time is thus
measured in mean intervals from the first time point, so the network sees the same clock
(:math:`\tau \in [0, K-1]`) whether the times are given in days, hours or minutes, and
evenly spaced times give the same clock as ``"index"``; velocities are converted back to
per unit of ``obs[time_key]`` (:meth:`cellflow.CellFlow.velocity`). Between time points, measured and model time are
linearly interpolated. A held-out time point is skipped: its two neighbours form one interval.
:class:`ModelTimeMixin` holds these methods; ``times``, ``time_scale`` and ``holdout`` are set by
:class:`cellflow.CellFlow`.

Example
-------
>>> import numpy as np, anndata as ad
>>> import cellflow as cf
>>> adata = ad.AnnData(obs={"day": np.repeat([2, 3, 4, 7], 20)})
>>> adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(80, 2))
>>> model = cf.CellFlow(adata, time_key="day")
>>> model.model_time(5.5), model.measured_time(2.5)  # days 2, 3, 4, 7 at model times 0, 1, 2, 3
(2.5, 5.5)
"""

from __future__ import annotations

import numpy as np

__all__ = ["ModelTimeMixin"]


class ModelTimeMixin:
    """:meth:`model_time`, :meth:`measured_time` and the trained pairs and intervals of
    :class:`cellflow.CellFlow`."""

    def _taus(self) -> np.ndarray:
        """Model time of each measured time point."""
        if self.time_scale == "index":
            return np.arange(len(self.times), dtype=float)
        return (self.times - self.time_origin) / self.time_unit

    def _time_unit(self) -> float:
        """Measured time per unit of model time (for ``"real"``, the mean interval; ``"index"``
        has no such unit, and its velocities are per interval)."""
        return self.time_unit if self.time_scale == "real" else 1.0

    def model_time(self, time: float) -> float:
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
        return float(np.interp(time, self.times, self._taus()))

    def measured_time(self, tau: float) -> float:
        """The measured time at model time ``tau``: the inverse of :meth:`model_time`."""
        taus = self._taus()
        if not taus[0] <= tau <= taus[-1]:
            raise ValueError(
                f"model time {tau} is outside the trained range [{taus[0]}, {taus[-1]}]."
            )
        return float(np.interp(tau, taus, self.times))

    def _pairs(self, holdout: float | None) -> list[tuple[int, int]]:
        """Consecutive trained time points ``(i, j)`` (indices into :attr:`times`), skipping ``holdout``."""
        keep = [i for i, s in enumerate(self.times) if holdout is None or s != holdout]
        return list(zip(keep[:-1], keep[1:]))

    def _intervals(self) -> list[tuple[float, float]]:
        """The training intervals ``(τ_i, τ_j)`` in model time (skipping a held-out time)."""
        taus = self._taus().tolist()
        return [(taus[i], taus[j]) for i, j in self._pairs(self.holdout)]

    def _knots(self) -> list[float]:
        """The trained time points in model time (a held-out one is skipped): the ends of the intervals."""
        intervals = self._intervals()
        return [a for a, _ in intervals] + [intervals[-1][1]]
