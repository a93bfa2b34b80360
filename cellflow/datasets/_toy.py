r"""Two-dimensional toy distributions of the OT-CFM paper's 2-D benchmark, drawn in torch
(cheap, and reproducible from a ``torch.Generator``).

- ``normal``: :math:`\\mathcal N(0, I_2)` (the paper's "N");
- ``8gaussians``: eight Gaussians on a circle of radius 5, covariance :math:`\sqrt{0.1}\,I`
  (torchcfm's ``sample_8gaussians``: its ``var=0.1`` is passed as ``sqrt(var) * I``);
- ``moons``: two interleaving half circles, each point shifted along the diagonal by
  :math:`0.2\,U(0,1)` (torchdyn's ``generate_moons(noise=0.2)``), scaled by 3, shifted by −1
  (torchcfm's ``sample_moons``); the arc positions are uniform draws instead of a grid;
- ``scurve``: the 2-D projection (x, z) of scikit-learn's S-curve, noise 0.1, scaled by 1.5
  (our definition; the paper's runner differs in scale, so compare W2 across methods here).

Example
-------
>>> import torch
>>> from cellflow.datasets import toy_sample
>>> toy_sample("moons", 5, generator=torch.Generator().manual_seed(0)).shape
torch.Size([5, 2])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["toy_sample", "TOY_DISTRIBUTIONS"]


def _normal(n, g):
    return torch.randn(n, 2, generator=g)


_ANGLES = torch.arange(8) * (math.pi / 4)
_CENTERS = torch.stack(
    [torch.cos(_ANGLES), torch.sin(_ANGLES)], 1
)  # computed once (the draws are per call)


def _eight_gaussians(n, g, scale=5.0, cov=math.sqrt(0.1)):
    idx = torch.randint(8, (n,), generator=g)
    return (_CENTERS * scale)[idx] + math.sqrt(cov) * torch.randn(n, 2, generator=g)


_INNER_MOON = torch.tensor([1.0, 0.5])  # the inner moon is (1 - cos a, 0.5 - sin a)


def _moons(n, g, noise=0.2):
    n_out = n // 2
    a = torch.cat([torch.rand(n_out, generator=g), torch.rand(n - n_out, generator=g)]) * math.pi
    x = torch.stack([torch.cos(a), torch.sin(a)], 1)
    x[n_out:] = torch.rsub(x[n_out:], _INNER_MOON)
    x = x[torch.randperm(n, generator=g)]
    x = x + noise * torch.rand(n, 1, generator=g)  # one uniform shift for both coordinates
    return x * 3 - 1


def _scurve(n, g, noise=0.1):
    t = 3 * math.pi * (torch.rand(n, generator=g) - 0.5)
    x = torch.sin(t)
    z = torch.sign(t) * (torch.cos(t) - 1)
    pts = torch.stack([x, z], 1) + noise * torch.randn(n, 2, generator=g)
    return pts * 1.5


TOY_DISTRIBUTIONS = {
    "normal": _normal,
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "scurve": _scurve,
}


def toy_sample(name: str, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``n`` samples (float32, shape ``(n, 2)``) of a toy distribution by name."""
    key = {"n": "normal", "gaussian": "normal", "8gauss": "8gaussians"}.get(
        name.lower(), name.lower()
    )
    if key not in TOY_DISTRIBUTIONS:
        raise ValueError(
            f"unknown toy distribution {name!r}; choose from {sorted(TOY_DISTRIBUTIONS)}."
        )
    return TOY_DISTRIBUTIONS[key](int(n), generator).float()
