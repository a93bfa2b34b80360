"""The product coupling (I-CFM)."""

from __future__ import annotations

import torch

from ._base import Coupling, Pairing, _weights


class IndependentCoupling(Coupling):
    """The product coupling (I-CFM): minibatches are already independent random draws,
    so ``x0[k]`` is paired with ``x1[k]`` (or a random ``x1`` when the sizes differ)."""

    def plan(self, x0, x1, a=None, b=None):
        a = _weights(a, x0.shape[0], x0.device)
        b = _weights(b, x1.shape[0], x0.device)
        return torch.outer(a / a.sum(), b / b.sum())

    def pair(self, x0, x1, *, a=None, b=None, n=None, generator=None):
        if a is not None or b is not None:
            return super().pair(x0, x1, a=a, b=b, n=n, generator=generator)
        n0, n1 = x0.shape[0], x1.shape[0]
        n = n0 if n is None else n
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        if n < n0:
            i0 = torch.randperm(n0, generator=generator, device=gen_dev)[:n].to(x0.device)
        elif n == n0:
            i0 = torch.arange(n0, device=x0.device)
        else:
            i0 = torch.randint(n0, (n,), generator=generator, device=gen_dev).to(x0.device)
        if n == n1 and n == n0:
            i1 = torch.arange(n1, device=x0.device)
        else:
            i1 = torch.randint(n1, (n,), generator=generator, device=gen_dev).to(x0.device)
        return Pairing(i0=i0, i1=i1, plan=None)
