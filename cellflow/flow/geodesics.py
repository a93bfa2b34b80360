r"""Metric flow matching: interpolants that follow the data instead of straight lines.

Straight conditional paths (OT-CFM) cross empty regions of expression space when the cells of
two time points sit on a curved manifold. Metric Flow Matching (Kapuśniak et al., NeurIPS 2024)
bends them: it fits a data-dependent Riemannian metric that is cheap where cells are dense and
expensive where there are none, then learns interpolants that approximately minimise the
kinetic energy under that metric.

**Metric** (:mod:`cellflow.flow.riemannian_metrics`). A diagonal metric
:math:`G(x) = \operatorname{diag}(1 / (h_d(x) + \varepsilon))`. :class:`RBFMetric` (default) has one
:math:`h` for every feature,

.. math:: h(x) = \sum_{k=1}^K w_k \exp\!\Big(-\frac{\lVert x - c_k\rVert^2}{2\kappa^2 s_k^2}\Big),
          \qquad w \ge 0,

where :math:`c_k` are k-means centres of the cells, :math:`s_k` the RMS spread of cluster
:math:`k` and the weights solve the non-negative least-squares problem
:math:`\min_{w\ge0}\lVert \Phi w - 1\rVert^2` on the cells, so that :math:`h` is of order 1 on
the data and :math:`h \to 0` away from it. With the default κ = 1 the kernels are narrow and
:math:`h` stays a bumpy density proxy, well below 1 on many cells; wider kernels (κ = 2) make it
flat at 1 on the cells. :class:`LANDMetric`
instead takes :math:`h_d(x)` from the local spread of the cells along feature :math:`d`, so it
also prefers the directions in which the cells nearby extend.

**Interpolant** (:class:`GeodesicInterpolant`). A parabola through the paired endpoints,

.. math:: x_t = (1-t)\,x_0 + t\,x_1 + t(1-t)\,\varphi_\eta(x_0, x_1), \qquad
          \dot x_t = x_1 - x_0 + (1-2t)\,\varphi_\eta(x_0, x_1),

with :math:`\varphi_\eta` an MLP whose last layer starts at zero (the straight line).
:func:`fit_geodesic_interpolant` minimises
:math:`\mathbb E_{t,(x_0,x_1)\sim\pi}\,\dot x_t^\top G(x_t)\,\dot x_t` over exact-OT minibatch
pairs :math:`\pi`, one metric per pair of consecutive time points and one shared
:math:`\varphi_\eta`.

**Flow** (:class:`GeodesicPath`). The vector field then regresses :math:`\dot x_t` at
:math:`x_t + \sigma\varepsilon`, exactly as OT-CFM regresses :math:`x_1 - x_0`.

Example
-------
>>> import torch
>>> from cellflow.flow.geodesics import RBFMetric, GeodesicInterpolant
>>> g = torch.Generator().manual_seed(0)
>>> X = torch.randn(500, 2, generator=g)
>>> metric = RBFMetric.fit(X, n_centers=20, seed=0)
>>> bool(metric.h(X).median() > 0.5), bool(metric.h(torch.full((1, 2), 10.0)) < 1e-3)
(True, True)
>>> phi = GeodesicInterpolant(2)
>>> x_t, u_t = phi(X[:3], X[3:6], torch.zeros(3))
>>> torch.allclose(x_t, X[:3])
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..couplings import Coupling, ExactOT
from .networks import MLP
from .paths import PathSample, StraightPath, _expand
from .riemannian_metrics import LANDMetric, RBFMetric

__all__ = ["GeodesicInterpolant", "GeodesicPath", "fit_geodesic_interpolant"]

_FORWARD_AD_LOCK = threading.Lock()


class GeodesicInterpolant(nn.Module):
    r"""The learned interpolant :math:`x_t = (1-t)x_0 + t x_1 + t(1-t)\varphi_\eta(x_0, x_1)`.

    ``forward(x0, x1, t, start=0, span=1)`` returns :math:`(x_t, \dot x_t)` with :math:`\dot x_t`
    the derivative in the interval's own time :math:`t \in [0, 1]`. By default the correction
    ignores time and every path is a parabola. With ``time_varying=True`` (the paper's form) it
    also sees the model time :math:`\tau = \text{start} + \text{span}\cdot t`, so one network
    can bend each interval's paths differently, and
    :math:`\dot x_t = x_1 - x_0 + (1-2t)\varphi + t(1-t)\,\text{span}\,\partial_\tau\varphi`,
    the last term by forward-mode differentiation. The last layer starts at zero, so an
    untrained interpolant is the straight line of OT-CFM.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str = "selu",
        time_varying: bool = False,
    ):
        super().__init__()
        self.time_varying = bool(time_varying)
        self.phi = MLP(
            dim, hidden=hidden, activation=activation, time_varying=self.time_varying, cond_dim=dim
        )
        nn.init.zeros_(self.phi.net[-1].weight)
        nn.init.zeros_(self.phi.net[-1].bias)

    @classmethod
    def from_state_dict(cls, state: dict, dim: int) -> GeodesicInterpolant:
        """Rebuild a saved interpolant; whether it sees time is read off its first layer."""
        interp = cls(dim, time_varying=state["phi.net.0.weight"].shape[1] == 2 * dim + 1)
        interp.load_state_dict(state)
        return interp

    def correction(self, x0: Tensor, x1: Tensor, tau: Tensor | float = 0.0) -> Tensor:
        r""":math:`\varphi_\eta(x_0, x_1, \tau)`."""
        return self.phi(tau, x0, cond=x1)

    def forward(
        self, x0: Tensor, x1: Tensor, t: Tensor, start: float = 0.0, span: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device).expand(len(x0))
        tau = start + span * t
        if self.time_varying:
            with (
                _FORWARD_AD_LOCK
            ):  # forward-mode levels are process-wide; batch workers call this in threads
                p, dp = torch.func.jvp(
                    lambda s: self.correction(x0, x1, s), (tau,), (torch.full_like(tau, span),)
                )
        else:
            p, dp = self.correction(x0, x1), None
        t = _expand(t, x0)
        u = x1 - x0 + (1 - 2 * t) * p
        if dp is not None:
            u = u + t * (1 - t) * dp
        return (1 - t) * x0 + t * x1 + t * (1 - t) * p, u


class GeodesicPath(StraightPath):
    r"""OT-CFM's Gaussian path around a learned interpolant:
    :math:`x_t = \mu_t(x_0, x_1) + \sigma\varepsilon`, :math:`u_t = \dot\mu_t(x_0, x_1)`, with
    :math:`\mu_t` a (trained, frozen) :class:`GeodesicInterpolant`."""

    def __init__(
        self,
        interpolant: GeodesicInterpolant,
        sigma: float = 0.1,
        start: float = 0.0,
        span: float = 1.0,
    ):
        super().__init__(sigma)
        self.interpolant = interpolant
        self.start, self.span = float(start), float(span)

    def mean(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            return self.interpolant(x0, x1, t, self.start, self.span)[0]

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        t: Tensor | float | None = None,
        *,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        self.check_pair(x0, x1)
        t = self._as_t(t, x0, generator)
        if eps is None:
            eps = (
                torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
                if self.has_noise
                else torch.zeros_like(x0)
            )
        with torch.no_grad():
            mu, u = self.interpolant(x0, x1, t, self.start, self.span)
        return PathSample(t=t, x_t=mu + self.sigma * eps, u_t=u, eps=eps, x0=x0, x1=x1)

    def __repr__(self) -> str:
        return f"GeodesicPath(sigma={self.sigma}, start={self.start}, span={self.span})"


def fit_geodesic_interpolant(
    draw: Callable[[int, int, torch.Generator], Tensor],
    pairs: Sequence[tuple[int, int]],
    metrics: Sequence[RBFMetric | LANDMetric],
    dim: int,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    coupling: Coupling | None = None,
    times: Sequence[tuple[float, float]] | None = None,
    time_varying: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> tuple[GeodesicInterpolant, list[float]]:
    r"""Train one :class:`GeodesicInterpolant` for all pairs by minimising the metric energy.

    Parameters
    ----------
    draw
        ``draw(i, n, generator)`` returns ``n`` random cells of group ``i`` as a float tensor.
    pairs, metrics
        The ``(source, target)`` groups and one metric per pair
        (:mod:`cellflow.flow.riemannian_metrics`).
    dim
        Number of features.
    steps, batch_size, lr
        Adam steps, cells per group per step, learning rate.
    coupling
        Pairs each minibatch (default: exact OT).
    times
        ``(start, span)`` of each pair in model time, which the correction network sees
        (default: pair ``p`` covers ``[p, p + 1]``).
    time_varying
        Let the correction depend on model time (:class:`GeodesicInterpolant`), as in the
        paper. Off by default: it predicted held-out time points no better, at more cost
        (the method guide, ``tutorials/choosing_a_method.md``, "OT-MFM").
    seed
        Seeds the network and every draw.

    Returns
    -------
    The trained interpolant (in eval mode) and the energy at each step, relative to the
    straight line's at the first step.
    """
    if len(pairs) != len(metrics):
        raise ValueError(
            f"{len(pairs)} pairs but {len(metrics)} metrics: give one metric per pair."
        )
    times = (
        [(float(p), 1.0) for p in range(len(pairs))]
        if times is None
        else [tuple(map(float, s)) for s in times]
    )
    if len(times) != len(pairs):
        raise ValueError(
            f"{len(pairs)} pairs but {len(times)} (start, span) times: give one per pair."
        )
    from tqdm.auto import tqdm

    coupling = coupling or ExactOT(replace=True)
    with torch.random.fork_rng(
        devices=[]
    ):  # seeded initialisation; the caller's global RNG is untouched
        torch.manual_seed(seed)
        interp = GeodesicInterpolant(dim, time_varying=time_varying)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(interp.parameters(), lr=lr)
    history, ref = [], None
    for _ in tqdm(range(steps), desc="geodesic interpolant", disable=not progress, leave=False):
        loss = 0.0
        for (i, j), metric, (start, span) in zip(pairs, metrics, times):
            x0, x1 = draw(i, batch_size, g), draw(j, batch_size, g)
            p = coupling.pair(x0, x1, generator=g)
            t = torch.rand(len(p.i0), generator=g)
            x_t, u_t = interp(x0[p.i0], x1[p.i1], t, start, span)
            loss = loss + metric.energy(x_t, u_t).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        ref = ref or value
        history.append(value / ref)
    interp.eval()
    for q in interp.parameters():
        q.requires_grad_(False)
    return interp, history
