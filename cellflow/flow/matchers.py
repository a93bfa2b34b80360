r"""Conditional flow matchers: a probability path plus a minibatch coupling.

=========  ================================================  ====================================
method     path                                              coupling
=========  ================================================  ====================================
``icfm``   :class:`~cellflow.flow.paths.StraightPath`        independent (I-CFM)
``ot``     :class:`~cellflow.flow.paths.StraightPath`        exact OT, squared Euclidean (OT-CFM)
``sb``     :class:`~cellflow.flow.paths.BrownianBridgePath`  entropic OT, ε = 2σ² (SB-CFM)
``fm``     :class:`~cellflow.flow.paths.LipmanPath`          independent, N(0, I) source only
``vp``     :class:`~cellflow.flow.paths.VPPath`              independent
=========  ================================================  ====================================

Example
-------
>>> import torch
>>> from cellflow.flow.matchers import make_matcher
>>> fm = make_matcher("ot", sigma=0.1)
>>> x0, x1 = torch.randn(128, 2), torch.randn(128, 2) + 3
>>> labels = torch.arange(128)
>>> s = fm.sample(x0, x1)
>>> bool((s.x0 == x0[s.i0]).all()), labels[s.i1].shape   # labels follow their samples
(True, torch.Size([128]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..couplings import Coupling, ExactOT, IndependentCoupling, SinkhornOT
from .methods import METHODS as _TABLE
from .methods import canonical_method, method_spec, methods_for
from .paths import BrownianBridgePath, LipmanPath, PathSample, ProbPath, StraightPath, VPPath

__all__ = [
    "MatchedSample",
    "FlowMatcher",
    "make_matcher",
    "METHODS",
    "DEFAULT_SIGMA",
    "canonical_method",
]

#: the methods of :class:`cellflow.FlowModel` and their default σ, read from
#: :mod:`cellflow.flow.methods`
METHODS = methods_for("vectors")
DEFAULT_SIGMA = {name: _TABLE[name].sigma for name in METHODS}
# a geodesic path starts from the straight one; OT-MFM's interpolant bends it during training
_PATHS = {
    "straight": StraightPath,
    "geodesic": StraightPath,
    "brownian_bridge": BrownianBridgePath,
    "lipman": LipmanPath,
    "vp": VPPath,
}


@dataclass
class MatchedSample(PathSample):
    """A :class:`~cellflow.flow.paths.PathSample` plus the pairing indices: ``x0 = x0_batch[i0]``,
    ``x1 = x1_batch[i1]``; index labels, conditions or weights with them."""

    i0: Tensor = None
    i1: Tensor = None


def _check_shapes(x0: Tensor, x1: Tensor) -> None:
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"source and target samples differ in shape: {tuple(x0.shape[1:])} vs "
            f"{tuple(x1.shape[1:])}."
        )


class FlowMatcher:
    """Pairs two minibatches with a coupling, then samples a conditional path.

    Parameters
    ----------
    path
        The conditional probability path.
    coupling
        How the two minibatches are paired (default: independent).
    """

    def __init__(self, path: ProbPath, coupling: Coupling | None = None, name: str | None = None):
        self.path = path
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        self.name = name or type(path).__name__

    @property
    def sigma(self) -> float:
        return self.path.sigma

    @property
    def has_score(self) -> bool:
        """Whether the path defines a conditional score (the SB path)."""
        return hasattr(self.path, "score")

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        t: Tensor | float | None = None,
        *,
        a=None,
        b=None,
        n: int | None = None,
        groups: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MatchedSample:
        """Pair ``x0`` with ``x1`` and draw ``(t, x_t, u_t)``.

        Parameters
        ----------
        x0, x1
            Source and target minibatches (the OT batch; their sizes may differ).
        t
            Explicit times for the ``n`` pairs (default uniform on [0, 1]).
        a, b
            Optional sample weights for the coupling.
        n
            Number of pairs to return (default ``len(x0)``): a training batch smaller than the
            OT batch.
        groups
            A class label per row of ``x1`` (``len(x0) >= len(x1)``): couple each class's rows
            with their own disjoint slice of ``x0``. Pooled OT would pair a class with a
            *region* of the source, while sampling that class starts from all of it; within
            each class the source rows paired with it stay an unbiased source sample. Ignored
            by the independent coupling, for which pooling changes nothing.
        generator
            Torch generator controlling the pairing, ``t`` and the noise.
        """
        _check_shapes(x0, x1)
        if groups is not None and not isinstance(self.coupling, IndependentCoupling):
            if a is not None or b is not None:
                raise ValueError("sample weights a, b cannot be combined with groups.")
            i0, i1 = self._pair_within_groups(
                x0, x1, groups, len(x0) if n is None else n, generator
            )
        else:
            p = self.coupling.pair(x0, x1, a=a, b=b, n=n, generator=generator)
            i0, i1 = p.i0, p.i1
        return self.path_sample(x0, x1, i0, i1, t, generator=generator)

    def path_sample(
        self,
        x0: Tensor,
        x1: Tensor,
        i0: Tensor | None = None,
        i1: Tensor | None = None,
        t: Tensor | float | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> MatchedSample:
        """``(t, x_t, u_t)`` on the path between ``x0[i0]`` and ``x1[i1]`` (``None``: the rows
        in order, ``x0[k] -> x1[k]``): :meth:`sample` for pairs already chosen, e.g. drawn from
        a :class:`~cellflow.couplings.WholePlan`."""
        if i0 is None:
            i0 = i1 = torch.arange(x0.shape[0], device=x0.device)
            s = self.path.sample(x0, x1, t, generator=generator)
            return MatchedSample(**vars(s), i0=i0, i1=i1)
        s = self.path.sample(x0[i0], x1[i1], t, generator=generator)
        return MatchedSample(**vars(s), i0=i0, i1=i1)

    def defer_sample(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        n: int | None = None,
        generator: torch.Generator | None = None,
    ):
        """:meth:`sample` in two parts, where the coupling can split its solve off
        (:meth:`cellflow.couplings.ExactOT.defer_pair`): ``(solve, finish)`` with
        ``finish(solve())`` equal to ``sample(x0, x1, n=n, generator=generator)``, bit for bit
        (the pairing's draws are taken now, the path's in ``finish``, as ``sample`` takes them).
        ``None`` where it cannot. ``solve()`` runs without the GIL, in a batch worker; the
        rest in the training thread.
        """
        _check_shapes(x0, x1)
        defer = getattr(self.coupling, "defer_pair", None)
        parts = defer(x0, x1, n=n, generator=generator) if defer is not None else None
        if parts is None:
            return None
        solve, finish_pair = parts

        def finish(result) -> MatchedSample:
            p = finish_pair(result)
            return self.path_sample(x0, x1, p.i0, p.i1, generator=generator)

        return solve, finish

    def _pair_within_groups(self, x0, x1, groups, n, generator):
        i0s, i1s, start = [], [], 0
        for c in torch.unique(groups):
            idx1 = torch.nonzero(groups == c).reshape(-1)
            idx0 = torch.arange(start, start + len(idx1))
            start += len(idx1)
            p = self.coupling.pair(x0[idx0], x1[idx1], generator=generator)
            i0s.append(idx0[p.i0])
            i1s.append(idx1[p.i1])
        i0, i1 = torch.cat(i0s), torch.cat(i1s)
        if len(i0) > n:
            keep = torch.randperm(len(i0), generator=generator)[:n]
            i0, i1 = i0[keep], i1[keep]
        return i0, i1

    def score_target(self, s: PathSample) -> tuple[Tensor, Tensor]:
        r"""For the SB path: the conditional score and its weight :math:`\lambda(t)`."""
        if not self.has_score:
            raise ValueError(f"{self.name} has no score; only method='sb' trains a score network.")
        return self.path.score(s), self.path.score_weight(s.t)

    def __repr__(self) -> str:
        return f"FlowMatcher({self.name}: {self.path!r}, {self.coupling!r})"


def make_matcher(
    method: str = "ot", sigma: float | None = None, *, front: str = "vectors", **coupling_kwargs
) -> FlowMatcher:
    """The flow matcher of a method by name (see the table above).

    Parameters
    ----------
    method
        ``"icfm"``, ``"ot"``, ``"sb"``, ``"fm"`` or ``"vp"``.
    sigma
        Path noise (σ; σ_min for ``fm``). Default: the method's (:mod:`cellflow.flow.methods`).
    front
        Whose methods to accept (``"vectors"``; ``"cells"`` adds OT-MFM, whose matcher starts
        from the straight path that its interpolant later bends).
    **coupling_kwargs
        Passed to the coupling (e.g. ``replace=True``, ``tol=1e-5``).
    """
    spec = method_spec(method, front)
    sigma = spec.sigma if sigma is None else sigma
    path = _PATHS[spec.path](sigma)  # each path refuses a σ it cannot take, with the reason
    if spec.coupling == "exact":
        coupling = ExactOT(**coupling_kwargs)
    elif spec.coupling == "sinkhorn":
        coupling = SinkhornOT(eps=2 * path.sigma**2, **coupling_kwargs)
    else:
        coupling = IndependentCoupling(**coupling_kwargs)
    return FlowMatcher(path, coupling, spec.label)
