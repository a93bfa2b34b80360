"""The optimiser and the weight average that :class:`cellflow.train.trainer.Trainer` uses.

- :func:`adamw`: AdamW with PyTorch's fused kernel where one exists for the parameters' device
  and dtype;
- :func:`warm_ema`: the update of the exponential moving average of the weights (EMA), warmed
  up so that a short run is not dominated by its initial weights.

Example
-------
>>> import torch
>>> from torch.optim.swa_utils import AveragedModel
>>> from cellflow.train.optim import adamw, warm_ema
>>> net = torch.nn.Linear(2, 1)
>>> opt = adamw(net.parameters(), lr=1e-3, weight_decay=1e-5)
>>> avg = AveragedModel(net, multi_avg_fn=warm_ema(0.999))
>>> avg.update_parameters(net)  # after each optimiser step
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["adamw", "warm_ema"]


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this PyTorch has one for the parameters' device and
    dtype (CPU since torch 2.4, CUDA): one pass over all parameters instead of a loop of
    foreach kernels. The same update up to rounding, and faster on small networks
    (``tutorials/speed_history.md``)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device, dtype or torch
        return torch.optim.AdamW(params, **kwargs)


def warm_ema(decay: float) -> Callable:
    r"""EMA update with warm-up: after :math:`n` updates the decay is
    :math:`\min(d, \tfrac{1 + n}{10 + n})`, so that a run much shorter than :math:`1/(1-d)`
    steps is not dominated by the initial weights (with a fixed :math:`d = 0.999`, 600 steps
    leave 55 % of the weight on the initialisation)."""

    @torch.no_grad()
    def update(avg: list[torch.Tensor], cur: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        torch._foreach_lerp_(avg, cur, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update
