r"""The flow-matching methods, each defined once: its path, its coupling, its default path noise
σ, its label, whether it learns a score, its other names, and where cellflow offers it.
Everything else asks this table: the matchers, :class:`cellflow.CellFlow`, the evaluation's
labels and the command line's choices.

=========  ===============================  ===========  =========  ============================
method     path                             coupling     σ          offered for
=========  ===============================  ===========  =========  ============================
``ot``     straight, width σ                exact OT     0.1        cells, vectors, images, tables
``sb``     Brownian bridge, σ               Sinkhorn     1.0        cells, vectors, tables
``icfm``   straight, width σ                independent  0.1        cells, vectors, images, tables
``mfm``    geodesic of a data metric        exact OT     0.1        cells
``fm``     Lipman et al., σ_min             independent  0.0        vectors, images
``vp``     variance preserving              independent  0.1        vectors
=========  ===============================  ===========  =========  ============================

Example
-------
>>> from cellflow.flow.methods import method_spec, methods_for
>>> method_spec("OT-CFM").name, method_spec("sb").label, method_spec("sb").has_score
('ot', 'SB-CFM', True)
>>> methods_for("cells")
('ot', 'sb', 'icfm', 'mfm')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from .._types import Method

__all__ = ["MethodSpec", "METHODS", "method_spec", "methods_for", "canonical_method"]


@dataclass(frozen=True)
class MethodSpec:
    """What one method is.

    ``path`` names the probability path (:mod:`cellflow.flow.paths`): ``"straight"``,
    ``"brownian_bridge"``, ``"lipman"``, ``"vp"``, or ``"geodesic"`` (a straight path bent by a
    learned interpolant, :mod:`cellflow.flow.geodesics`); ``coupling`` the minibatch pairing
    (:mod:`cellflow.couplings`): ``"exact"``, ``"sinkhorn"`` (ε = 2σ²) or ``"independent"``.
    ``fronts`` says where cellflow offers it: ``"cells"`` (:class:`cellflow.CellFlow`),
    ``"vectors"`` (:class:`cellflow.FlowModel`), ``"images"``, ``"tables"``."""

    name: Method
    label: str
    path: str
    coupling: str
    sigma: float
    has_score: bool = False
    aliases: tuple[str, ...] = ()
    fronts: frozenset[str] = frozenset({"vectors"})

    @property
    def geodesic(self) -> bool:
        """Whether training first fits a geodesic interpolant (OT-MFM)."""
        return self.path == "geodesic"

    @property
    def pairs(self) -> bool:
        """Whether the coupling pairs cells by their distance (not independently)."""
        return self.coupling != "independent"


_ALL = frozenset({"cells", "vectors", "images", "tables"})
METHODS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec(
            "ot",
            "OT-CFM",
            "straight",
            "exact",
            0.1,
            aliases=("otcfm", "exact"),
            fronts=_ALL,
        ),
        MethodSpec(
            "sb",
            "SB-CFM",
            "brownian_bridge",
            "sinkhorn",
            1.0,
            has_score=True,
            aliases=("sbcfm",),
            fronts=frozenset({"cells", "vectors", "tables"}),
        ),
        MethodSpec(
            "icfm",
            "I-CFM",
            "straight",
            "independent",
            0.1,
            aliases=("i", "cfm"),
            fronts=_ALL,
        ),
        MethodSpec(
            "mfm",
            "OT-MFM",
            "geodesic",
            "exact",
            0.1,
            aliases=("otmfm", "metric"),
            fronts=frozenset({"cells"}),
        ),
        MethodSpec(
            "fm",
            "FM",
            "lipman",
            "independent",
            0.0,
            aliases=("lipman",),
            fronts=frozenset({"vectors", "images"}),
        ),
        MethodSpec("vp", "VP-CFM", "vp", "independent", 0.1, aliases=("trig",)),
    )
}
assert tuple(METHODS) == get_args(Method)
_BY_NAME = {alias: s for s in METHODS.values() for alias in (s.name, s.label.lower(), *s.aliases)}


def methods_for(front: str) -> tuple[str, ...]:
    """The methods offered for ``front`` (``"cells"``, ``"vectors"``, ``"images"``, ``"tables"``),
    in the table's order: the command line's choices."""
    return tuple(name for name, s in METHODS.items() if front in s.fronts)


def method_spec(method: str, front: str = "vectors") -> MethodSpec:
    """The method named ``method`` (its name, label or an alias, any case), offered for
    ``front``; otherwise a ``ValueError`` that lists the choices."""
    spec = _BY_NAME.get(str(method).lower())
    if spec is None or front not in spec.fronts:
        where = {
            "cells": "CellFlow",
            "vectors": "FlowModel",
            "images": "ImageFlow",
            "tables": "TabularFlow",
        }[front]
        names = [repr(m) for m in methods_for(front)]
        raise ValueError(
            f"unknown method {method!r}: {where} supports method={', '.join(names[:-1])} or "
            f"{names[-1]}."
        )
    return spec


def canonical_method(method: str, front: str = "vectors") -> str:
    """The canonical name of a method (see :func:`method_spec`)."""
    return method_spec(method, front).name
