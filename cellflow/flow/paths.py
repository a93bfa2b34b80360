r"""Conditional probability paths for flow matching.

Every path here is an *affine Gaussian* path between a pair :math:`(x_0, x_1)`:

.. math::

    x_t = a(t)\, x_0 + b(t)\, x_1 + s(t)\, \varepsilon, \qquad \varepsilon \sim \mathcal N(0, I),

whose conditional vector field (the regression target of flow matching) is

.. math::

    u_t = a'(t)\, x_0 + b'(t)\, x_1 + s'(t)\, \varepsilon
        = \mu_t' + \frac{s'(t)}{s(t)} (x_t - \mu_t).

A subclass only states :math:`a, b, s` and their derivatives; sampling, targets and
broadcasting over any sample shape (vectors, images) live in :class:`ProbPath`.

Example
-------
>>> import torch
>>> from cellflow.flow.paths import StraightPath
>>> path = StraightPath(sigma=0.1)
>>> s = path.sample(torch.randn(8, 2), torch.randn(8, 2))
>>> s.x_t.shape, s.u_t.shape, s.t.shape
(torch.Size([8, 2]), torch.Size([8, 2]), torch.Size([8]))
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "PathSample",
    "ProbPath",
    "StraightPath",
    "BrownianBridgePath",
    "LipmanPath",
    "VPPath",
]


@dataclass
class PathSample:
    """One minibatch drawn from a conditional probability path.

    Attributes
    ----------
    t
        Times, shape ``(n,)``.
    x_t
        Points on the path, same shape as ``x0``.
    u_t
        Conditional vector field at ``(t, x_t)``: the flow-matching target.
    eps
        The standard normal noise used for ``x_t`` (zeros where the path has no noise).
    x0, x1
        The paired endpoints, in pairing order.
    """

    t: Tensor
    x_t: Tensor
    u_t: Tensor
    eps: Tensor
    x0: Tensor
    x1: Tensor


def _expand(t: Tensor, like: Tensor) -> Tensor:
    """Reshape ``t`` of shape ``(n,)`` to broadcast against ``like`` of shape ``(n, ...)``."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


class ProbPath(ABC):
    r"""An affine Gaussian conditional path :math:`x_t = a(t)x_0 + b(t)x_1 + s(t)\varepsilon`.

    Subclasses implement :meth:`coefficients`. The default time distribution is
    uniform on :math:`[0, 1]`; an explicit ``t`` passed to :meth:`sample` is used as is.
    """

    sigma: float = 0.0

    @abstractmethod
    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Return ``a, b, s, da, db, ds`` evaluated at ``t`` (each the shape of ``t``)."""

    # ------------------------------------------------------------------ helpers
    def check_pair(self, x0: Tensor, x1: Tensor) -> None:
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}; "
                "pair them first (see cellflow.couplings)."
            )
        if x0.dim() < 1:
            raise ValueError("x0 and x1 need a leading batch dimension, e.g. shape (n, d).")

    def sample_t(self, n: int, *, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` times uniformly on [0, 1]."""
        return torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)

    def _as_t(
        self, t: Tensor | float | None, x0: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        n = x0.shape[0]
        if t is None:
            return self.sample_t(n, like=x0, generator=generator)
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        if t.dim() == 0:
            t = t.expand(n)
        t = t.reshape(-1)
        if t.shape[0] != n:
            raise ValueError(f"t has {t.shape[0]} entries but the batch has {n} samples.")
        return t

    # ------------------------------------------------------------------ public
    def mean(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        r""":math:`\mu_t = a(t) x_0 + b(t) x_1`."""
        a, b, *_ = self.coefficients(t)
        return _expand(a, x0) * x0 + _expand(b, x0) * x1

    def std(self, t: Tensor) -> Tensor:
        """:math:`s(t)`, the standard deviation of the conditional path."""
        return self.coefficients(t)[2]

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        t: Tensor | float | None = None,
        *,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        """Sample ``(t, x_t, u_t)`` for already paired endpoints ``x0[i] -> x1[i]``.

        Parameters
        ----------
        x0, x1
            Paired endpoints, shape ``(n, ...)``.
        t
            Times, shape ``(n,)`` or a scalar. Default: uniform on [0, 1].
        eps
            Standard normal noise to use (default: drawn with ``generator``).
        generator
            Torch random generator for ``t`` and ``eps``.
        """
        self.check_pair(x0, x1)
        t = self._as_t(t, x0, generator)
        a, b, s, da, db, ds = self.coefficients(t)
        eps = self._noise(x0, eps, generator)
        a, b, s, da, db, ds = (_expand(c, x0) for c in (a, b, s, da, db, ds))
        x_t = a * x0 + b * x1 + s * eps
        u_t = da * x0 + db * x1 + ds * eps
        return PathSample(t=t, x_t=x_t, u_t=u_t, eps=eps, x0=x0, x1=x1)

    def _noise(self, x0: Tensor, eps: Tensor | None, generator) -> Tensor:
        """``eps`` if given, else standard normal noise shaped like ``x0`` (zeros for a path without
        noise)."""
        if eps is not None:
            return eps
        if not self.has_noise:
            return torch.zeros_like(x0)
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)

    @property
    def has_noise(self) -> bool:
        """Whether :math:`s(t)` is non-zero, i.e. whether ``eps`` must be drawn."""
        return self.sigma > 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


def _check_sigma(sigma: float, *, positive: bool = False) -> float:
    sigma = float(sigma)
    if not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite, got {sigma}.")
    if positive and sigma <= 0:
        raise ValueError(
            "sigma must be > 0 for a Schrödinger bridge (entropic OT needs ε = 2σ² > 0), got "
            f"{sigma}. "
            "Use method='ot' (OT-CFM) for a deterministic straight path."
        )
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    return sigma


class StraightPath(ProbPath):
    r"""The I-CFM / OT-CFM path: :math:`\mu_t = (1-t)x_0 + t x_1`, :math:`s(t) = \sigma`,
    target :math:`u_t = x_1 - x_0`."""

    def __init__(self, sigma: float = 0.0):
        self.sigma = _check_sigma(sigma)

    def coefficients(self, t):
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        return 1 - t, t, self.sigma * one, -one, one, zero

    def sample(self, x0, x1, t=None, *, eps=None, generator=None) -> PathSample:
        """See :meth:`ProbPath.sample`: the same draws and, bit for bit, the same values, in
        fewer tensor operations (the constant coefficients are not materialised), which
        matters in batch workers that share the GIL with the training step."""
        self.check_pair(x0, x1)
        t = self._as_t(t, x0, generator)
        eps = self._noise(x0, eps, generator)
        b = _expand(t, x0)
        x_t = (
            torch.rsub(b, 1) * x0 + b * x1 + self.sigma * eps
        )  # (1 - b), without Tensor.__rsub__'s Python wrapper
        return PathSample(t=t, x_t=x_t, u_t=x1 - x0, eps=eps, x0=x0, x1=x1)


class BrownianBridgePath(ProbPath):
    r"""The SB-CFM path: a Brownian bridge with diffusion :math:`\sigma`.

    :math:`\mu_t = (1-t)x_0 + t x_1`, :math:`s(t) = \sigma\sqrt{t(1-t)}`, and

    .. math::

        u_t = \frac{1-2t}{2t(1-t)} (x_t - \mu_t) + (x_1 - x_0).

    The conditional score is :math:`\nabla \log p_t(x_t | x_0, x_1) = -(x_t-\mu_t)/s(t)^2
    = -\varepsilon / s(t)` and its loss weight :math:`\lambda(t) = 2 s(t) / \sigma^2`
    ([SF]2M, Tong et al. 2024), so that :math:`\lambda(t)\nabla\log p_t = -2\varepsilon/\sigma^2`
    stays bounded. The SDE with drift :math:`v_t + \tfrac{\sigma^2}{2} s_t` and diffusion
    :math:`\sigma` has the bridge's marginals.

    Both the target and the score are singular at exactly ``t = 0`` and ``t = 1``.
    """

    def __init__(self, sigma: float = 1.0):
        self.sigma = _check_sigma(sigma, positive=True)

    def coefficients(self, t):
        one = torch.ones_like(t)
        root = torch.sqrt(t * (1 - t))
        s = self.sigma * root
        ds = self.sigma * (1 - 2 * t) / (2 * root)
        return 1 - t, t, s, -one, one, ds

    #: Drawn times stay this far from the ends, where :math:`\dot s(t)` is infinite
    #: (``torch.rand`` returns exactly 0 about once in 2**24 draws).
    T_EPS = 1e-5

    def sample_t(self, n: int, *, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` times uniformly on [ε, 1 − ε], ε = ``T_EPS``."""
        u = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)
        return self.T_EPS + (1 - 2 * self.T_EPS) * u

    def score(self, sample: PathSample) -> Tensor:
        r"""Conditional score :math:`-\varepsilon / s(t)` of a drawn sample."""
        return -sample.eps / _expand(self.std(sample.t), sample.eps)

    def score_weight(self, t: Tensor) -> Tensor:
        r""":math:`\lambda(t) = 2 s(t) / \sigma^2`."""
        return 2 * self.std(t) / self.sigma**2


class LipmanPath(ProbPath):
    r"""Flow matching of Lipman et al. (2023) from a standard normal source.

    :math:`x_t = (1 - (1-\sigma_{min}) t)\, x_0 + t\, x_1` with :math:`x_0 \sim \mathcal N(0, I)`,
    target :math:`u_t = x_1 - (1-\sigma_{min}) x_0 = \frac{x_1 -
    (1-\sigma_{min})x_t}{1-(1-\sigma_{min})t}`.

    The path is only a valid probability path when ``x0`` is standard normal noise, so
    :meth:`sample` refuses sources whose moments are clearly not those of
    :math:`\mathcal N(0, I)` (checked on batches of at least 64 samples; disable with
    ``check_source=False``).
    """

    def __init__(self, sigma: float = 0.0, *, check_source: bool = True):
        self.sigma = _check_sigma(sigma)
        if self.sigma >= 1:
            raise ValueError(f"sigma_min must be < 1 for Lipman flow matching, got {self.sigma}.")
        self.check_source = check_source

    has_noise = False  # the noise is x0 itself

    def coefficients(self, t):
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        c = 1 - self.sigma
        return 1 - c * t, t, zero, -c * one, one, zero

    def check_pair(self, x0: Tensor, x1: Tensor) -> None:
        super().check_pair(x0, x1)
        n = x0.shape[0]
        if not self.check_source or n < 64:
            return
        flat = x0.reshape(n, -1).double()
        mean_err = flat.mean(0).abs().max().item()
        var = flat.var(0)
        # 6 standard errors: a false alarm has probability < 1e-8 per coordinate
        if (
            mean_err > 6 / math.sqrt(n)
            or (var - 1).abs().max().item() > 6 * math.sqrt(2 / n) + 0.05
        ):
            raise ValueError(
                "Lipman flow matching (method='fm') is only valid from a standard normal source, "
                f"but x0 has a mean of up to {mean_err:.3g} and variances in "
                f"[{var.min().item():.3g}, {var.max().item():.3g}]. Use method='icfm' or 'ot' to "
                "flow "
                "between two data distributions, or pass x0 = torch.randn_like(x1)."
            )

    def __repr__(self) -> str:
        return f"LipmanPath(sigma_min={self.sigma})"


class VPPath(ProbPath):
    r"""Variance-preserving (trigonometric) interpolant.

    :math:`\mu_t = \cos(\pi t/2)\, x_0 + \sin(\pi t/2)\, x_1`, :math:`s(t) = \sigma`,
    target :math:`u_t = \tfrac{\pi}{2}(\cos(\pi t/2)\, x_1 - \sin(\pi t/2)\, x_0)`.
    """

    def __init__(self, sigma: float = 0.0):
        self.sigma = _check_sigma(sigma)

    def coefficients(self, t):
        h = math.pi / 2
        c, s = torch.cos(h * t), torch.sin(h * t)
        return c, s, self.sigma * torch.ones_like(t), -h * s, h * c, torch.zeros_like(t)
