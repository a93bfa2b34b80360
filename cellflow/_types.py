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
#: the unit of ``obs[time_key]`` that a growth prior's rate is given per
#: (:func:`cellflow.pp.score_growth`)
TimeUnit = Literal["minute", "hour", "day", "week"]
#: what ``X`` holds when ``cellflow fit --preprocess`` starts from it: raw counts, values
#: normalised per cell but not logged (TPM, FPKM, CPM), or log-normalised values
Preprocess = Literal["counts", "normalised", "log"]
#: the parts of ``cellflow bench speed`` (:mod:`cellflow.bench.speed`)
SpeedSection = Literal["throughput", "exact_ot", "sinkhorn", "push"]
#: how a :class:`cellflow.CellFlow` treats cells that divide and die (``None``: every cell has
#: one descendant)
Growth = Literal["prior", "learned"]
#: where the spread of fates and pulls comes from (:func:`cellflow.tl.fates`): bootstrap replicates
#: of the model, or single paths of a Schrödinger bridge SDE
FateSpread = Literal["bootstrap", "sde"]
#: where a coupled flow's training pairs come from: one plan between whole time points, or a
#: new plan per minibatch (``CellFlow.train(ot_plan=...)``)
OTPlan = Literal["auto", "whole", "minibatch"]


def whole_number(value, name: str, minimum: int = 1, hint: str = "") -> int:
    """``value`` as an int, refused with a message naming ``name`` unless it is a whole number
    (an int, not a bool, a float such as 2.7 or 2.0, or a string) of at least ``minimum``.

    >>> whole_number(3, "k")
    3
    >>> whole_number(2.7, "n_states")
    Traceback (most recent call last):
    ...
    ValueError: n_states must be a whole number >= 1, got 2.7.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}.{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}.{hint}")
    return int(value)
