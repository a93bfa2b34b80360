"""The coupling interface: :class:`Coupling`, the :class:`Pairing` it returns, the squared
Euclidean cost, and drawing index pairs from a plan."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class ConvergenceError(RuntimeError):
    """An OT solver stopped before reaching its tolerance."""


@dataclass
class Pairing:
    """Index pairs drawn from a coupling: ``x0[i0[k]]`` is paired with ``x1[i1[k]]``."""

    i0: Tensor
    i1: Tensor
    plan: Tensor | None = None


def squared_distances(x0: Tensor, x1: Tensor) -> Tensor:
    r"""Squared Euclidean cost matrix between flattened samples, in float64.

    :math:`\|a\|^2 + \|b\|^2 - 2ab` by one matrix product, clamped at 0: what
    ``torch.cdist`` computes for more than 25 rows, without its square root and our square
    (faster: ``tutorials/speed_history.md``). Up to 25 rows on both sides, ``cdist`` takes the
    differences directly, and so does this.
    """
    a = x0.reshape(x0.shape[0], -1).double()
    b = x1.reshape(x1.shape[0], -1).double()
    if a.shape[0] <= 25 and b.shape[0] <= 25:
        return torch.cdist(a, b).pow_(2)
    C = torch.addmm((a * a).sum(1, keepdim=True), a, b.T, alpha=-2.0)
    return C.add_((b * b).sum(1)).clamp_min_(0.0)


def _weights(w: Tensor | np.ndarray | None, n: int, device) -> Tensor:
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    w = torch.as_tensor(w, dtype=torch.float64, device=device).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"weights have {w.shape[0]} entries for {n} samples.")
    if (w < 0).any() or not torch.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative.")
    return w


def _fail(msg: str, on_fail: str) -> None:
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


class Coupling(ABC):
    """A rule that pairs the samples of two minibatches.

    Parameters
    ----------
    replace
        ``False`` (default): every source sample is used exactly once, paired with a target
        drawn from its row of the plan (for equal uniform batches and exact OT, a permutation).
        ``True``: draw pairs from the whole plan with replacement, as torchcfm does.
    """

    joint_by_default = False
    solves_on_cpu = (
        False  # the plan is a CPU solver call that releases the GIL (batch workers need cores)
    )

    def __init__(self, replace: bool | None = None):
        self.replace = self.joint_by_default if replace is None else bool(replace)

    @abstractmethod
    def plan(self, x0: Tensor, x1: Tensor, a=None, b=None) -> Tensor:
        """The transport plan, a float64 tensor of shape ``(len(x0), len(x1))``."""

    def pair(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        a=None,
        b=None,
        n: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Pairing:
        """Pair ``x0`` with ``x1``.

        Parameters
        ----------
        x0, x1
            Minibatches of shape ``(n0, ...)`` and ``(n1, ...)``.
        a, b
            Sample weights (default uniform).
        n
            Number of pairs to return (default ``len(x0)``). Smaller than the batch when the
            OT batch is larger than the training batch.
        generator
            Torch generator for every random draw.
        """
        P = self.plan(x0, x1, a, b)
        return _pairs_from_plan(P, n if n is not None else x0.shape[0], self.replace, generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _sample_rows(P: Tensor, generator, k: int = 1) -> Tensor:
    r"""``k`` columns per row of ``P``, column :math:`j` with probability :math:`P_{ij} / \sum_l
    P_{il}`,
    independently (with replacement); shape ``(rows, k)``.

    Inverse-CDF sampling: uniforms on the row's total are located in the row's cumulative
    sums by binary search (columns without mass have empty intervals, so they are never
    drawn). Faster than ``torch.multinomial``, and than finding the positive entries and
    drawing among them (``tutorials/speed_history.md``).
    """
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    cum = P.cumsum(1)
    u = torch.rand(P.shape[0], k, generator=generator, device=gen_dev, dtype=P.dtype).to(P.device)
    j = torch.searchsorted(cum, u * cum[:, -1:], right=True)
    over = j >= P.shape[1]  # u·total rounded up to the total: the row's last column with mass
    if bool(over.any()):
        last = P.shape[1] - 1 - (P.flip(1) > 0).to(torch.int8).argmax(1, keepdim=True)
        j = torch.where(over, last, j)
    return j


def _source_rows(n: int, n0: int, generator, device) -> Tensor:
    """``n`` distinct source rows of ``n0``: all in order, or a random subset when fewer."""
    if n > n0:
        raise ValueError(f"cannot draw {n} pairs without replacement from {n0} source samples.")
    if n == n0:
        return torch.arange(n0, device=device)
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n0, generator=generator, device=gen_dev)[:n].to(device)


def _pairs_from_plan(P: Tensor, n: int, replace: bool, generator) -> Pairing:
    n0 = P.shape[0]
    dev = P.device
    if not replace:
        i0 = _source_rows(n, n0, generator, dev)
        rows = P.sum(1)
        if (rows <= 0).any():
            raise ValueError(
                "some source samples carry no mass in the plan; use replace=True to draw pairs "
                "from the whole plan (the default for unbalanced and partial couplings)."
            )
        sub, sub_rows = (P[i0], rows[i0]) if n < n0 else (P, rows)
        # numpy's row argmax is ~8x faster than torch's on a CPU float64 plan (256²: 12 vs 92 µs)
        i1 = torch.from_numpy(sub.numpy().argmax(1)) if sub.device.type == "cpu" else sub.argmax(1)
        # a row whose largest entry is all of its mass has one positive entry (exact OT): no
        # sampling
        if not bool((sub.gather(1, i1[:, None]).squeeze(1) == sub_rows).all()):
            i1 = _sample_rows(sub, generator).reshape(-1)
        return Pairing(i0=i0, i1=i1, plan=P)
    k = _sample_rows(P.reshape(1, -1), generator, n).reshape(-1)
    return Pairing(i0=k // P.shape[1], i1=k % P.shape[1], plan=P)
