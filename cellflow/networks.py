"""Vector-field networks.

Example
-------
>>> import torch
>>> from cellflow.networks import MLP
>>> net = MLP(dim=2)                      # the paper's 3 x 64 SELU network
>>> net(torch.tensor(0.5), torch.randn(10, 2)).shape
torch.Size([10, 2])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MLP", "ACTIVATIONS", "build_network"]

ACTIVATIONS = {"selu": nn.SELU, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh,
               "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


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
        hidden: tuple[int, ...] | list[int] = (64, 64, 64),
        activation: str = "selu",
        time_varying: bool = True,
        cond_dim: int = 0,
        n_classes: int = 0,
        out_dim: int | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}.")
        if cond_dim and n_classes:
            raise ValueError("give either cond_dim (covariates) or n_classes (labels), not both.")
        self.config = dict(dim=int(dim), hidden=[int(h) for h in hidden], activation=activation,
                           time_varying=bool(time_varying), cond_dim=int(cond_dim), n_classes=int(n_classes),
                           out_dim=int(out_dim or dim))
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
                raise ValueError(f"this network is conditioned on {c['n_classes']} classes: pass cond=labels.")
            parts.append(nn.functional.one_hot(cond.long().reshape(-1), c["n_classes"]).to(h.dtype))
        elif c["cond_dim"]:
            if cond is None:
                raise ValueError(f"this network is conditioned on {c['cond_dim']} covariates: pass cond.")
            parts.append(cond.reshape(n, -1).to(h.dtype))
        out = self.net(torch.cat(parts, 1))
        if out.shape[1] == math.prod(x.shape[1:]):
            return out.reshape(x.shape)
        return out


def _bad_t(t: Tensor, n: int):
    raise ValueError(f"t has {t.numel()} entries for a batch of {n}: pass a scalar or one time per sample.")


def build_network(config: dict) -> nn.Module:
    """Rebuild a network from its ``config`` dict (as saved by a model)."""
    config = dict(config)
    kind = config.pop("kind", "mlp")
    if kind == "mlp":
        return MLP(**config)
    if kind == "unet":
        from .unet import UNet

        return UNet(**config)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp' or 'unet'.")
