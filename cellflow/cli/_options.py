"""Command-line options that several commands share: where a model trains (``--device``), how
ranks couple under ``torchrun`` (``--global-coupling``), model time and one network per interval,
and OT-MFM's metric, with the parsers that turn them into keyword arguments."""

from __future__ import annotations

import argparse
from typing import get_args

from .._defaults import TIME_SCALE
from .._types import MetricKind, TimeScale


def metric_kwargs(args) -> dict:
    """OT-MFM's metric options from ``--metric``, ``--metric-eps`` and ``--metric-gamma`` (ignored
    by the other methods)."""
    metric = {} if args.metric == "rbf" else {"kind": args.metric}
    if args.metric_eps is not None:
        metric["eps"] = args.metric_eps
    if args.metric_gamma is not None:
        if args.metric != "land":
            raise SystemExit("--metric-gamma is the LAND metric's kernel width; add --metric land.")
        metric["gamma"] = args.metric_gamma
    return {"metric": metric} if metric else {}


def _gamma(text: str) -> float | str:
    """``--metric-gamma``: a positive number or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'auto', got {text!r}"
        ) from None


def add_time_and_metric_options(p: argparse.ArgumentParser) -> None:
    """``--time-scale``, ``--per-interval`` and the OT-MFM metric options, shared by ``fit`` and
    ``evaluate``."""
    from .._defaults import LAND_GAMMA, METRIC_EPS

    p.add_argument(
        "--time-scale",
        default=TIME_SCALE,
        choices=get_args(TimeScale),
        help="model time of each time point: its index (the paper's protocol, default) or its "
        "value",
    )
    p.add_argument(
        "--per-interval",
        action="store_true",
        help="one network per interval between consecutive time points instead of one shared "
        "network: "
        "fits each interval more closely, and pushes over several intervals drift less",
    )
    p.add_argument(
        "--metric-eps",
        type=float,
        default=None,
        help="OT-MFM only: the metric's floor eps in G = I / (h + eps); larger pulls the paths "
        "less "
        f"towards the cells (default {METRIC_EPS}; the paper used 0.01)",
    )
    p.add_argument(
        "--metric",
        default="rbf",
        choices=get_args(MetricKind),
        help="OT-MFM only: the data metric, rbf (a density of Gaussian bumps, default) or land "
        "(the "
        "local spread of the cells along each feature, so paths also follow the directions in "
        "which nearby cells extend)",
    )
    p.add_argument(
        "--metric-gamma",
        type=_gamma,
        default=None,
        help="OT-MFM with --metric land only: the kernel width in standardised units (default "
        f"{LAND_GAMMA}: "
        "the median distance between neighbouring cells of each pair of time points)",
    )


def add_growth_options(p: argparse.ArgumentParser, score: bool = False) -> None:
    """``--growth``, ``--growth-key`` and ``--tau-a`` (and, for ``fit``, ``--score-growth``), with
    the defaults of :class:`cellflow.CellFlow`."""
    from .._defaults import GROWTH_TAU
    from .._types import Growth, Organism, TimeUnit

    p.add_argument(
        "--growth",
        default=None,
        choices=get_args(Growth),
        help="cells divide and die: prior (each cell grows at the rate in --growth-key) or learned "
        "(from how the time points' compositions change, starting from --growth-key if given); "
        "default: none, every cell has one descendant",
    )
    p.add_argument(
        "--growth-key",
        default=None,
        help="obs column of each cell's prior growth rate per unit of time, log scale "
        "(cf.pp.score_growth writes growth_prior)",
    )
    p.add_argument(
        "--tau-a",
        "--tau",  # its name before 0.1.1
        dest="tau_a",
        type=float,
        default=None,
        help="with --growth learned: how closely each interval's plan keeps the prior masses, in "
        f"(0, 1] (1: exactly; default {GROWTH_TAU})",
    )
    if score:
        p.add_argument(
            "--score-growth",
            default=None,
            choices=get_args(Organism),
            metavar="ORGANISM",
            help="score proliferation and apoptosis genes of X (log-normalised) for this organism "
            "(human or mouse) into obs['growth_prior'] first, and use it as --growth-key",
        )
        p.add_argument(
            "--gene-symbols",
            default=None,
            metavar="COLUMN",
            help="with --score-growth: the var column of gene symbols, when var_names are IDs "
            "(e.g. Ensembl)",
        )
        p.add_argument(
            "--time-unit",
            default="day",
            choices=get_args(TimeUnit),
            help="with --score-growth: the unit of --time-key, so that the rates are per that "
            "unit (the published curves are per day; default: day)",
        )


def growth_kwargs(args) -> dict:
    """``growth``, ``growth_key`` and ``tau_a`` from the options (nothing without ``--growth``)."""
    key = args.growth_key
    if getattr(args, "score_growth", None) and key is None:
        key = "growth_prior"
    if args.growth is None:
        if getattr(args, "score_growth", None):
            raise SystemExit(
                "--score-growth writes a growth prior for a growth-aware model: add --growth "
                "prior (cells grow at that rate) or --growth learned (learned from it)."
            )
        if key is not None:
            raise SystemExit("--growth-key needs --growth prior or --growth learned.")
        if args.tau_a is not None:
            raise SystemExit("--tau-a relaxes the plan of --growth learned; add --growth learned.")
        return {}
    if args.tau_a is not None and args.growth != "learned":
        raise SystemExit(
            f"--tau-a relaxes the plan of --growth learned; --growth {args.growth} uses the prior "
            "exactly. Drop --tau-a, or use --growth learned."
        )
    return dict(growth=args.growth, growth_key=key, tau_a=args.tau_a)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="cpu",
        help="where the flow trains and integrates: cpu (default), cuda, "
        "cuda:1, ... (minibatch couplings are solved on the CPU)",
    )


def add_global_coupling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--global-coupling",
        action="store_true",
        help="under torchrun: couple one global batch of all ranks' rows (default: each rank its "
        "own)",
    )


def bench_defaults(module: str, function: str = "run") -> dict:
    """The keyword defaults of ``cellflow.bench.<module>.<function>``, read from its source.

    A benchmark's signature is the one place its defaults are declared; its command-line options
    take them from here, so the two cannot disagree. The source is parsed rather than imported
    because building the parser must not load torch. A default may be a literal, a module-level
    constant of the benchmark bound to one (or to ``get_args`` of an option type), or a name
    imported from ``cellflow._defaults``; a parameter whose default is anything else is left out,
    so an option that asks for it stops the parser from being built (a test builds it) instead of
    disagreeing silently. Tuples come back as lists (what ``nargs`` gives).

    >>> bench_defaults("growth")["seeds"]
    [0, 1, 2, 3, 4]
    """
    import ast
    from pathlib import Path

    from .. import _defaults, _types

    path = Path(__file__).resolve().parent.parent / "bench" / f"{module}.py"
    tree = ast.parse(path.read_text())
    names: dict = {}
    home = {"_defaults": _defaults, "_types": _types}

    def constant(node):  # a literal, or get_args(<an option type of cellflow._types>)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "get_args"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in names
        ):
            return get_args(names[node.args[0].id])
        return ast.literal_eval(node)

    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in home and node.level == 2:
            names.update(
                {a.asname or a.name: getattr(home[node.module], a.name) for a in node.names}
            )
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    names[target.id] = constant(node.value)
                except ValueError:
                    pass
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    args = func.args
    pairs = list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]

    out = {}
    for a, d in pairs:
        if isinstance(d, ast.Name) and d.id in names:
            v = names[d.id]
        else:
            try:
                v = constant(d)
            except ValueError:
                continue  # not a literal: no option may take it (the parser then fails to build)
        out[a.arg] = list(v) if isinstance(v, tuple) else v
    return out
