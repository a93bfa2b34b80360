"""Exact partial OT: transport only a fraction of the mass (POT)."""

from __future__ import annotations

import numpy as np
import ot
import torch

from ._base import Coupling, _weights, squared_distances


class PartialOT(Coupling):
    """Exact partial OT: transport only a fraction ``mass`` of the total mass (POT's
    ``partial_wasserstein``), leaving outliers unmatched. Pairs are drawn from the plan."""

    joint_by_default = True

    def __init__(self, mass: float = 0.9, replace: bool | None = None):
        if not 0 < mass <= 1:
            raise ValueError(f"mass must be in (0, 1], got {mass}.")
        super().__init__(replace)
        self.mass = float(mass)

    def plan(self, x0, x1, a=None, b=None):
        C = squared_distances(x0, x1).cpu().numpy()
        a = _weights(a, x0.shape[0], "cpu").numpy()
        b = _weights(b, x1.shape[0], "cpu").numpy()
        m = self.mass * min(a.sum(), b.sum())
        G = ot.partial.partial_wasserstein(a, b, C, m=m)
        return torch.from_numpy(np.asarray(G)).to(x0.device)
