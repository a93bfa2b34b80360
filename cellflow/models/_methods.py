"""What :class:`cellflow.CellFlow` adds to the method table (:mod:`cellflow.flow.methods`): its
methods, and the path noise σ each gets when none is given.
The measurements behind each default are in the method guide (``tutorials/choosing_a_method.md``,
sections "σ" and "The weight average")."""

from __future__ import annotations

from ..flow.methods import MethodSpec, method_spec, methods_for

__all__ = ["METHODS", "cellflow_spec", "default_sigma"]

METHODS = methods_for("cells")
#: on this many unwhitened dimensions or more, exact-OT methods take σ = HIGH_DIM_SIGMA
HIGH_DIM_SIGMA, HIGH_DIM = 1.0, 20
#: OT-MFM's σ on whitened PCs, where its metric is fitted in units of one standard deviation
MFM_WHITENED_SIGMA = 0.3


def cellflow_spec(method: str) -> MethodSpec:
    """The table's entry of a CellFlow method: ``"ot"``, ``"sb"``, ``"icfm"`` or ``"mfm"`` (or one
    of their other names, e.g. ``"OT-MFM"``, ``"metric"``)."""
    return method_spec(method, "cells")


def default_sigma(method: str, whiten: bool, n_dims: int) -> float:
    """The path noise σ used when none is given, in the standardised units the network sees.

    - the method's own (:mod:`cellflow.flow.methods`: SB-CFM 1.0, OT-CFM and I-CFM 0.1), except:
    - exact-OT methods (OT-CFM, OT-MFM) on ``n_dims >= 20`` *unwhitened* dimensions (the
      paper's 50/100-PC setting): σ = 1.0. The standardisation then divides all PCs by one
      scalar, so the trailing PCs span only a fraction of a unit, and a wider path predicts
      held-out cells better;
    - OT-MFM on whitened PCs: σ = 0.3.

    Both exceptions were measured on EB and Cite (method guide, section "σ"); between 5 and 50
    dimensions the threshold is not measured.
    """
    spec = cellflow_spec(method)
    if spec.coupling == "exact" and not whiten and n_dims >= HIGH_DIM:
        return HIGH_DIM_SIGMA
    if spec.geodesic and whiten:
        return MFM_WHITENED_SIGMA
    return float(spec.sigma)
