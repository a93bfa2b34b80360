"""Each benchmark's options are declared once, in its function's signature: the command line
takes its defaults from there (#53)."""

import importlib
import inspect

import pytest

from cellflow.cli import build_parser

#: the functions each `cellflow bench` command may call (``module:function`` when the function
#: is not in the module named like the command)
CALLS = {
    "toy": ["run"],
    "arch": ["run"],
    "throughput": ["run", "course"],
    "speed": ["run"],
    "scale": ["run", "atlas:run"],
    "velocity": ["run"],
    "growth": ["run", "regions"],
    "fates": ["run", "run_multifate", "larry"],
    "tabular": ["run"],
    "images": ["run"],
}
#: options whose name is not the parameter's
RENAMED = {("throughput", "batch_size"): "batch", ("tabular", "threads"): "n_jobs"}
#: options the command line sets itself (a folder or file to write where Python returns a table)
OWN = {("toy", "out"), ("speed", "out"), ("scale", "out")}
REQUIRED = {"velocity": ["in.h5ad", "--time-key", "day", "--reference", "velocity_pca"]}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


@pytest.mark.parametrize("command", sorted(CALLS))
def test_every_option_defaults_to_its_benchmark_functions_default(command):
    """With no options given, each option named like a parameter of the functions the command
    calls holds that parameter's default (read here by importing the function); where those
    functions disagree, it holds None and each function keeps its own."""

    def function(name):
        module, _, name = name.rpartition(":")
        return getattr(importlib.import_module(f"cellflow.bench.{module or command}"), name)

    signatures = [inspect.signature(function(f)).parameters for f in CALLS[command]]
    args = build_parser().parse_args(["bench", command, *REQUIRED.get(command, [])])
    checked = 0
    for dest, value in vars(args).items():
        name = RENAMED.get((command, dest), dest)
        if (command, dest) in OWN:
            continue
        defaults = [
            _plain(p[name].default)
            for p in signatures
            if name in p and p[name].default is not inspect.Parameter.empty
        ]
        if not defaults:
            continue
        checked += 1
        if all(d == defaults[0] for d in defaults):
            assert _plain(value) == defaults[0], (command, dest, value, defaults)
        else:
            assert value is None, (command, dest, value, defaults)
    assert checked >= 3, command


def test_options_left_to_the_function_reach_it_only_when_given(monkeypatch):
    """`cellflow bench fates --larry F` trains for larry()'s own number of steps; `--steps 7`
    reaches it."""
    import pandas as pd

    import cellflow.bench.fates as fates
    from cellflow.cli import main

    seen = []
    monkeypatch.setattr(fates, "larry", lambda file, **kw: seen.append(kw) or pd.DataFrame())
    main(["bench", "fates", "--larry", "x.h5ad"])
    main(["bench", "fates", "--larry", "x.h5ad", "--steps", "7"])
    assert seen == [{"seed": 0, "n_samples": 10}, {"seed": 0, "steps": 7, "n_samples": 10}]


@pytest.mark.parametrize(
    "argv, functions",
    [
        (
            ["fit", "x.h5ad", "--time-key", "day", "--out", "o.h5ad"],
            ["cellflow.cli._jobs:fit_h5ad", "cellflow:CellFlow", "cellflow:CellFlow.train"],
        ),
        (
            ["evaluate", "x.h5ad", "--time-key", "day", "--out", "t.csv"],
            ["cellflow.cli._jobs:evaluate_h5ad", "cellflow:evaluate_holdout"],
        ),
    ],
)
def test_fit_and_evaluate_default_as_the_python_they_call(argv, functions):
    """`cellflow fit` and `cellflow evaluate` with no options train what the Python functions they
    call train at their defaults (``--metric`` and ``--preprocess`` are spelt differently:
    ``"rbf"``/``None`` on the command line for ``None``/``False`` in Python)."""
    args = vars(build_parser().parse_args(argv))
    differ = {"metric": ("rbf", None), "preprocess": (None, False)}
    for target in functions:
        module, _, name = target.partition(":")
        f = importlib.import_module(module)
        for part in name.split("."):
            f = getattr(f, part)
        for k, p in inspect.signature(f).parameters.items():
            if k in args and p.default is not inspect.Parameter.empty:
                if k in differ:
                    assert (args[k], p.default) == differ[k], (target, k)
                else:
                    assert _plain(args[k]) == _plain(p.default), (target, k, args[k], p.default)
