"""The options of cellflow's functions, typed once as :data:`typing.Literal`, so that signatures,
checks and command-line choices read the same list (``typing.get_args(Solver)``)."""

from __future__ import annotations

from typing import Literal

#: a flow-matching method by its canonical name (:mod:`cellflow.flow.methods` holds what each is)
Method = Literal["ot", "sb", "icfm", "mfm", "fm", "vp"]
#: an ODE solver of torchdiffeq (:func:`cellflow.flow.solvers.integrate_ode`)
Solver = Literal["euler", "midpoint", "rk4", "dopri5", "dopri8", "bosh3", "adaptive_heun"]
#: how measured times become model time (:class:`cellflow.CellFlow`)
TimeScale = Literal["index", "real"]
#: OT-MFM's data metric (:func:`cellflow.flow.riemannian_metrics.fit_metric`)
MetricKind = Literal["rbf", "land"]
#: which shipped marker gene sets to score (:func:`cellflow.pp.score_growth`)
Organism = Literal["human", "mouse"]
#: how a :class:`cellflow.CellFlow` treats cells that divide and die (``None``: every cell has
#: one descendant)
Growth = Literal["prior", "learned"]
#: where the spread of fates and pulls comes from (:func:`cellflow.tl.fates`): bootstrap replicates
#: of the model, or single paths of a Schrödinger bridge SDE
FateSpread = Literal["bootstrap", "sde"]
