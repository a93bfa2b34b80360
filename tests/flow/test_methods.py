"""The method table is the one place a method is defined: matchers, CellFlow, the evaluation's
labels and the command line's choices all read it."""

import argparse

import pytest

import cellflow as cf
from cellflow.cli import build_parser
from cellflow.couplings import ExactOT, IndependentCoupling, SinkhornOT
from cellflow.flow.methods import METHODS, method_spec, methods_for
from cellflow.flow.paths import BrownianBridgePath, LipmanPath, StraightPath, VPPath


def _choices(*path):
    p = build_parser()
    for name in path:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def test_every_matcher_is_built_from_its_row():
    paths = {
        "straight": StraightPath,
        "geodesic": StraightPath,
        "brownian_bridge": BrownianBridgePath,
        "lipman": LipmanPath,
        "vp": VPPath,
    }
    couplings = {"exact": ExactOT, "sinkhorn": SinkhornOT, "independent": IndependentCoupling}
    for name, spec in METHODS.items():
        front = "cells" if "vectors" not in spec.fronts else "vectors"
        m = cf.make_matcher(name, front=front)
        assert type(m.path) is paths[spec.path] and type(m.coupling) is couplings[spec.coupling], (
            name
        )
        assert m.path.sigma == pytest.approx(spec.sigma) or spec.sigma == 0.0
        assert m.name == spec.label and m.has_score == spec.has_score
        for alias in spec.aliases:
            assert method_spec(alias, front).name == name


def test_the_command_line_offers_what_the_table_offers():
    for path, dest, front in (
        (("fit",), "method", "cells"),
        (("evaluate",), "methods", "cells"),
        (("train", "tabular"), "method", "tables"),
        (("train", "images"), "method", "images"),
    ):
        action = next(a for a in _choices(*path)._actions if a.dest == dest)
        assert tuple(action.choices) == methods_for(front), path


def test_cellflow_and_the_evaluation_read_labels_and_scores_from_the_table():
    assert methods_for("cells") == ("ot", "sb", "icfm", "mfm")
    with pytest.raises(ValueError, match="unknown method 'fm': CellFlow supports"):
        method_spec("fm", "cells")
    with pytest.raises(ValueError, match="unknown method 'mfm': FlowModel supports"):
        cf.FlowModel(2, method="mfm")
    assert cf.FlowModel(2, method="SB-CFM").score_net is not None


def test_the_command_line_and_the_python_api_share_their_defaults():
    """``cellflow fit`` and ``CellFlow``/``CellFlow.train``, ``cellflow evaluate`` and
    ``evaluate_holdout``: each option the two share has the same default, read from one place."""
    import inspect

    from cellflow import _defaults as D

    def defaults(*functions):
        out = {}
        for f in functions:
            out.update(
                {
                    k: p.default
                    for k, p in inspect.signature(f).parameters.items()
                    if p.default is not inspect.Parameter.empty
                }
            )
        return out

    def cli(command):
        return {a.dest: a.default for a in _choices(command)._actions if a.dest != "help"}

    fit_api = defaults(cf.CellFlow.__init__, cf.CellFlow.train)
    fit_cli = cli("fit")
    shared = {
        "use_rep",
        "n_pcs",
        "whiten",
        "method",
        "sigma",
        "time_scale",
        "steps",
        "batch_size",
        "ot_batch_size",
        "seed",
        "per_interval",
        "device",
    }
    assert {k: fit_cli[k] for k in shared} == {k: fit_api[k] for k in shared}
    assert fit_cli["ema"] == fit_api["ema_decay"] == D.MODEL_EMA_DECAY
    ev_api, ev_cli = defaults(cf.evaluate_holdout), cli("evaluate")
    shared = {
        "use_rep",
        "n_pcs",
        "whiten",
        "held_out",
        "steps",
        "batch_size",
        "sigma",
        "time_scale",
        "per_interval",
        "max_eval",
        "fractions",
        "device",
    }
    assert {k: ev_cli[k] for k in shared} == {k: ev_api[k] for k in shared}
    assert tuple(ev_cli["methods"]) == tuple(ev_api["methods"]) and tuple(ev_cli["seeds"]) == tuple(
        ev_api["seeds"]
    )
    assert ev_cli["ema"] == ev_api["ema_decay"] is None
    assert (fit_api["whiten"], ev_api["whiten"]) == (D.MODEL_WHITEN, D.BENCHMARK_WHITEN)
