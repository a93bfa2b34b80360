"""Vector-field networks.

Example
-------
>>> import torch
>>> from cellflow.flow.networks import MLP
>>> net = MLP(dim=2)                      # the paper's 3 x 64 SELU network
>>> net(torch.tensor(0.5), torch.randn(10, 2)).shape
torch.Size([10, 2])
>>> from cellflow.flow.networks import IntervalMLP
>>> field = IntervalMLP(dim=2, knots=[0.0, 1.0, 2.0])   # one MLP on [0, 1), another on [1, 2]
>>> field(torch.tensor([0.5, 1.5]), torch.randn(2, 2)).shape
torch.Size([2, 2])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._defaults import HIDDEN

__all__ = ["MLP", "IntervalMLP", "ACTIVATIONS", "build_network", "interval_index"]

ACTIVATIONS = {
    "selu": nn.SELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    r"""A multilayer perceptron :math:`v_\theta(t, x[, c])` for vectors (any sample shape is
    flattened and restored).

    Parameters
    ----------
    dim
        Number of features of a sample (the product of its shape).
    hidden
        Widths of the hidden layers (paper default: three of 64).
    activation
        One of :data:`ACTIVATIONS`.
    time_varying
        Feed ``t`` as an extra input.
    cond_dim
        Width of a continuous covariate vector ``cond`` appended to the input.
    n_classes
        Number of label classes; labels ``cond`` (integers) enter one-hot encoded.
    out_dim
        Output width (default ``dim``).
    """

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...] | list[int] = HIDDEN,
        activation: str = "selu",
        time_varying: bool = True,
        cond_dim: int = 0,
        n_classes: int = 0,
        out_dim: int | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}."
            )
        if cond_dim and n_classes:
            raise ValueError("give either cond_dim (covariates) or n_classes (labels), not both.")
        self.config = dict(
            dim=int(dim),
            hidden=[int(h) for h in hidden],
            activation=activation,
            time_varying=bool(time_varying),
            cond_dim=int(cond_dim),
            n_classes=int(n_classes),
            out_dim=int(out_dim or dim),
        )
        width_in = dim + int(time_varying) + cond_dim + n_classes
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width_in, h), ACTIVATIONS[activation]()]
            width_in = h
        layers.append(nn.Linear(width_in, out_dim or dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor | float, x: Tensor, cond: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        h = x.reshape(n, -1)
        parts = [h]
        c = self.config
        if c["time_varying"]:
            t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
            parts.append(t.reshape(-1, 1).expand(n, 1) if t.numel() in (1, n) else _bad_t(t, n))
        if c["n_classes"]:
            if cond is None:
                raise ValueError(
                    f"this network is conditioned on {c['n_classes']} classes: pass cond=labels."
                )
            parts.append(nn.functional.one_hot(cond.long().reshape(-1), c["n_classes"]).to(h.dtype))
        elif c["cond_dim"]:
            if cond is None:
                raise ValueError(
                    f"this network is conditioned on {c['cond_dim']} covariates: pass cond."
                )
            parts.append(cond.reshape(n, -1).to(h.dtype))
        out = self.net(torch.cat(parts, 1))
        if out.shape[1] == math.prod(x.shape[1:]):
            return out.reshape(x.shape)
        return out


def interval_index(knots: Tensor, t: Tensor, side: str = "right") -> Tensor:
    """Index of the interval between consecutive ``knots`` that holds each time in ``t``.

    At a knot, ``side="right"`` takes the interval that starts there (moving forward in time)
    and ``"left"`` the one that ends there (moving backward); times outside the knots take
    the first or last interval.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    k = torch.searchsorted(
        knots, t.detach().to(knots).reshape(-1).contiguous(), right=side == "right"
    )
    return (k - 1).clamp(0, len(knots) - 2)


class IntervalMLP(nn.Module):
    r"""A vector field that is piecewise in time: one :class:`MLP` per interval between
    consecutive ``knots`` :math:`\tau_0 < \tau_1 < \dots < \tau_m`,

    .. math:: v_\theta(t, x) = v_{\theta_i}(t, x), \qquad \tau_i \le t < \tau_{i+1}.

    A shared network is continuous in :math:`t`, so it blends the fields of the intervals on
    either side of a knot; this one may turn sharply at a measured time point, which is what a
    path made of one OT coupling per interval does. At a knot itself ``side`` chooses the
    interval: ``"right"`` (the one that starts there: the default, used when moving forward)
    or ``"left"`` (the one that ends there: used when moving backward); ``"mean"`` averages
    the two there. Times outside :math:`[\tau_0, \tau_m]` take the first or last interval.

    Parameters
    ----------
    dim
        Number of features of a sample.
    knots
        Increasing times that bound the intervals (at least two).
    hidden, activation
        As for :class:`MLP`, for each interval's network.
    """

    def __init__(
        self,
        dim: int,
        knots,
        hidden: tuple[int, ...] | list[int] = HIDDEN,
        activation: str = "selu",
    ):
        super().__init__()
        knots = [float(k) for k in knots]
        if len(knots) < 2 or any(b <= a for a, b in zip(knots[:-1], knots[1:])):
            raise ValueError(f"knots must be at least two increasing times, got {knots}.")
        self.nets = nn.ModuleList(
            MLP(dim, hidden=hidden, activation=activation) for _ in knots[:-1]
        )
        self.register_buffer("knots", torch.tensor(knots, dtype=torch.float64), persistent=False)
        self.config = dict(
            kind="interval_mlp",
            dim=int(dim),
            knots=knots,
            hidden=[int(h) for h in hidden],
            activation=activation,
        )

    def interval(self, t: Tensor, side: str = "right") -> Tensor:
        """Index of the interval each time in ``t`` falls in (:func:`interval_index`)."""
        return interval_index(self.knots, t, side)

    def forward(
        self, t: Tensor | float, x: Tensor, cond: Tensor | None = None, *, side: str = "right"
    ) -> Tensor:
        n = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        if t.numel() not in (1, n):
            _bad_t(t, n)
        if side not in ("left", "right", "mean"):
            raise ValueError(f"side must be 'left', 'right' or 'mean', got {side!r}.")
        if side == "mean":  # the left side only where it is another interval (at an inner knot)
            out = self(t, x, side="right")
            at_knot = self.interval(t, "left") != self.interval(t, "right")
            if at_knot.any():
                rows = at_knot.expand(n) if t.numel() == 1 else at_knot
                t_rows = t if t.numel() == 1 else t[rows]
                out[rows] = 0.5 * (out[rows] + self(t_rows, x[rows], side="left"))
            return out
        k = self.interval(t, side)
        if t.numel() == 1:  # one time for the whole batch (an ODE step): one network
            return self.nets[int(k)](t, x)
        t = t.expand(n)
        out = torch.empty_like(x)
        for i in torch.unique(k).tolist():
            rows = k == i
            out[rows] = self.nets[i](t[rows], x[rows])
        return out


def _bad_t(t: Tensor, n: int):
    raise ValueError(
        f"t has {t.numel()} entries for a batch of {n}: pass a scalar or one time per sample."
    )


def build_network(config: dict) -> nn.Module:
    """Rebuild a network from its ``config`` dict (as saved by a model)."""
    config = dict(config)
    kind = config.pop("kind", "mlp")
    if kind == "mlp":
        return MLP(**config)
    if kind == "interval_mlp":
        return IntervalMLP(**config)
    if kind == "unet":
        from .unet import UNet

        return UNet(**config)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp', 'interval_mlp' or 'unet'.")
