"""``cellflow demo``, ``cellflow fit`` and ``cellflow evaluate``: the single-cell commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from .. import _defaults as D
from .._types import OTPlan
from ..models import CELLFLOW_METHODS
from ._jobs import PREPROCESS_GENES, PREPROCESS_PCS
from ._options import (
    add_device,
    add_global_coupling,
    add_growth_options,
    add_time_and_metric_options,
    growth_kwargs,
    metric_kwargs,
)


def _demo(args) -> int:
    from ._demo import run_demo

    run_demo(
        args.out,
        steps=args.steps,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    return 0


def _fit(args) -> int:
    from ._jobs import fit_h5ad

    adata, model = fit_h5ad(
        args.input,
        args.out,
        time_key=args.time_key,
        use_rep=args.use_rep,
        n_pcs=args.n_pcs,
        whiten=args.whiten,
        method=args.method,
        sigma=args.sigma,
        time_scale=args.time_scale,
        steps=args.steps,
        batch_size=args.batch_size,
        ot_batch_size=args.ot_batch_size,
        ot_plan=args.ot_plan,
        seed=args.seed,
        model_dir=args.model_dir,
        velocity=not args.no_velocity,
        basis=args.basis,
        overwrite=args.overwrite,
        global_coupling=args.global_coupling,
        backed=args.backed,
        on_disk=args.on_disk,
        progress=not args.quiet,
        device=args.device,
        ema_decay=args.ema,
        per_interval=args.per_interval,
        preprocess=args.preprocess or False,
        gene_velocity=not args.no_gene_velocity,
        flag="--overwrite",
        preprocess_flag="--preprocess",
        score_growth=args.score_growth,
        time_unit=args.time_unit,
        gene_symbols=args.gene_symbols,
        **growth_kwargs(args),
        **metric_kwargs(args),
    )
    from ..train.distributed import is_main

    if not is_main():
        return 0
    where = args.model_dir or Path(args.out).with_name(Path(args.out).stem + "_model")
    print(f"{model!r}\nwrote {args.out} and the model to {where}")
    return 0


def _evaluate(args) -> int:
    from ._jobs import evaluate_h5ad

    _, summary = evaluate_h5ad(
        args.input,
        args.out,
        time_key=args.time_key,
        methods=args.methods,
        seeds=args.seeds,
        use_rep=args.use_rep,
        n_pcs=args.n_pcs,
        whiten=args.whiten,
        held_out=args.held_out,
        steps=args.steps,
        batch_size=args.batch_size,
        max_eval=args.max_eval,
        progress=not args.quiet,
        overwrite=args.overwrite,
        resume=args.resume,
        flag="--overwrite",
        resume_flag="--resume",
        ema_decay=args.ema,
        sigma=args.sigma,
        time_scale=args.time_scale,
        device=args.device,
        ot_batch_size=args.ot_batch_size,
        ot_plan=args.ot_plan,
        fractions=args.fractions,
        per_interval=args.per_interval,
        **growth_kwargs(args),
        **metric_kwargs(args),
    )
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {args.out}")
    return 0


def _add_demo(sub) -> None:
    d = sub.add_parser(
        "demo",
        help="the whole single-cell pipeline on the embedded simulated time course",
        description="Simulate a branching time course, run scanpy preprocessing, fit OT-CFM, run "
        "the held-out evaluation, export velocities, and write figures, a results "
        ".h5ad and the table to --out. No download; a few minutes on 2 CPU cores.",
    )
    d.add_argument("--out", default="cellflow_out", help="output folder (default: cellflow_out)")
    d.add_argument(
        "--steps", type=int, default=1500, help="training steps per model (default 1500)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    d.add_argument(
        "--quiet", action="store_true", help="no progress bars (results are still printed)"
    )
    d.set_defaults(func=_demo)


def _add_fit(sub) -> None:
    f = sub.add_parser(
        "fit",
        help="fit a flow to an .h5ad time course and write velocities",
        description="Train a CellFlow on IN.h5ad, save the model next to OUT.h5ad (or "
        "--model-dir), "
        "and write OUT.h5ad with obsm['velocity_<rep>'] (and layers['velocity'], "
        "obsm['velocity_umap'] when PCs / a UMAP are present).",
    )
    f.add_argument("input", metavar="IN.h5ad")
    f.add_argument("--time-key", required=True, help="obs column with each cell's sampling time")
    f.add_argument("--out", required=True, metavar="OUT.h5ad")
    f.add_argument(
        "--use-rep",
        default=D.USE_REP,
        help="obsm key of the representation, or X for the "
        "expression matrix itself (dense, sparse or, with --backed, on disk)",
    )
    f.add_argument(
        "--backed",
        action="store_true",
        help="leave X on disk and read the rows each step draws "
        "(with --use-rep X, for files larger than memory)",
    )
    f.add_argument(
        "--on-disk",
        action="store_true",
        help="never load IN: read its times and the representation from the file as they are "
        "needed, and write OUT as a copy of IN with the velocities added a block of cells at a "
        "time (atlases of millions of cells; obsm representations; no gene velocities, no "
        "projection onto --basis); says the expected peak memory and time before it starts",
    )
    f.add_argument(
        "--n-pcs",
        type=int,
        default=None,
        help="leading columns of the representation to use (default all)",
    )
    f.add_argument(
        "--whiten",
        action=argparse.BooleanOptionalAction,
        default=D.MODEL_WHITEN,
        help="standardise each component (the paper's 5-PC setting; default: --no-whiten)",
    )
    f.add_argument("--method", default="ot", choices=list(CELLFLOW_METHODS))
    f.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="path noise in the standardised units the network sees (default: the method's, see "
        "CellFlow)",
    )
    f.add_argument("--steps", type=int, default=D.STEPS)
    f.add_argument(
        "--ema",
        type=float,
        default=D.MODEL_EMA_DECAY,
        help=f"EMA decay of the weights, which the fitted flow uses (default {D.MODEL_EMA_DECAY}; "
        "0: the last "
        "weights); it keeps paths over several days on the measured cells",
    )
    add_time_and_metric_options(f)
    add_growth_options(f, score=True)
    f.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"cells per time point per step (default: {D.BATCH_SIZE}, or the smallest trained "
        "time "
        "point's cells if fewer)",
    )
    f.add_argument(
        "--ot-batch-size",
        type=int,
        default=None,
        help="cells per time point for the minibatch coupling (default: --batch-size)",
    )
    f.add_argument(
        "--ot-plan",
        choices=get_args(OTPlan),
        default=D.OT_PLAN,
        help="where OT-CFM/SB-CFM pairs come from: one plan between whole time points, solved "
        "once, or a plan per minibatch (default auto: whole where every interval's plan has at "
        f"most {D.WHOLE_PLAN_ENTRIES:,} entries, source x target cells)",
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--model-dir", default=None, help="where to save the model (default OUT_model/)")
    f.add_argument(
        "--basis",
        default="umap",
        help="embedding to project velocities on, if present and not the representation itself "
        "(default umap)",
    )
    f.add_argument(
        "--preprocess",
        nargs="?",
        const="counts",
        default=None,
        choices=["counts", "normalised", "log"],
        metavar="KIND",
        help="compute the PCs from X first: KIND is what X holds, counts (the default: "
        "normalize_total, log1p), normalised (TPM, FPKM: log1p) or log (log-normalised: used "
        f"as it is); then highly_variable_genes ({PREPROCESS_GENES}) and pca ({PREPROCESS_PCS} "
        "PCs). X before is kept in layers['counts'] or layers['normalised'], the choices in "
        "uns['cellflow']['preprocess']",
    )
    f.add_argument("--no-velocity", action="store_true", help="do not write velocities")
    f.add_argument(
        "--no-gene-velocity",
        action="store_true",
        help="write the velocity in the representation (obsm) and the embedding only, not the "
        "dense "
        "cells x genes layers['velocity'] (4 bytes per cell and gene)",
    )
    f.add_argument("--overwrite", action="store_true")
    add_global_coupling(f)
    add_device(f)
    f.add_argument(
        "--quiet", action="store_true", help="no progress bars (results are still printed)"
    )
    f.set_defaults(func=_fit)


def _add_evaluate(sub) -> None:
    e = sub.add_parser(
        "evaluate",
        help="leave-one-time-point-out benchmark (Tong et al. 2024 protocol)",
        description="For each intermediate time point: train without it, push the previous time "
        "point's cells forward with 100 Euler steps, score W1/W2/MMD against the held-out "
        "cells; with the previous-time-point and McCann baselines. Writes a tidy CSV.",
    )
    e.add_argument("input", metavar="IN.h5ad")
    e.add_argument("--time-key", required=True)
    e.add_argument("--out", required=True, metavar="TABLE.csv")
    e.add_argument(
        "--methods", nargs="+", default=list(D.BENCHMARK_METHODS), choices=list(CELLFLOW_METHODS)
    )
    e.add_argument("--seeds", type=int, nargs="+", default=list(D.BENCHMARK_SEEDS))
    e.add_argument("--use-rep", default=D.USE_REP)
    e.add_argument(
        "--n-pcs",
        type=int,
        default=None,
        help="leading PCs (default 5, the paper's setting, or every column of a narrower "
        "representation "
        "such as a 2-D layout)",
    )
    e.add_argument(
        "--whiten",
        action=argparse.BooleanOptionalAction,
        default=D.BENCHMARK_WHITEN,
        help="standardise each PC (default, the paper's 5-PC setting); --no-whiten: the PCs as "
        "they are "
        "(the paper's 50/100-PC setting)",
    )
    e.add_argument(
        "--held-out",
        type=float,
        nargs="+",
        default=None,
        help="times to hold out (default all intermediate)",
    )
    e.add_argument("--steps", type=int, default=D.STEPS)
    add_time_and_metric_options(e)
    add_growth_options(e)
    e.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"cells per time point per step (default: {D.BATCH_SIZE}, or the smallest trained "
        "time "
        "point's cells if fewer)",
    )
    e.add_argument(
        "--ot-batch-size",
        type=int,
        default=None,
        help="cells per time point for the minibatch coupling, from whose plan --batch-size pairs "
        "are "
        "drawn (default: --batch-size, the paper's protocol)",
    )
    e.add_argument(
        "--ot-plan",
        choices=get_args(OTPlan),
        default=D.BENCHMARK_OT_PLAN,
        help="where OT-CFM/SB-CFM pairs come from (default minibatch: a plan per minibatch, the "
        "paper's protocol; auto: one plan between whole time points where it fits, as "
        "cellflow fit trains)",
    )
    e.add_argument(
        "--ema",
        type=float,
        default=None,
        help="EMA decay of the weights (default none: the paper's protocol; cellflow fit uses "
        "0.999)",
    )
    e.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="path noise of OT-CFM and I-CFM in the standardised units the network sees (default: "
        "CellFlow's; SB-CFM keeps its own)",
    )
    e.add_argument(
        "--max-eval",
        type=int,
        default=D.MAX_EVAL,
        help="cells per side for exact W1/W2 (seeded subsample)",
    )
    e.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=None,
        metavar="F",
        help="also push each flow to these fractions of the merged held-out interval and report "
        "the "
        "best (columns best_fraction, w1_best_fraction): a diagnostic of the pace, "
        "e.g. 0.3 0.4 0.5 0.6 0.7",
    )
    e.add_argument("--overwrite", action="store_true", help="replace TABLE.csv if it exists")
    e.add_argument(
        "--resume",
        action="store_true",
        help="continue the run that wrote TABLE.csv (the table is rewritten after each model, with "
        "its "
        "settings in TABLE.settings.json): train only the models it lacks",
    )
    add_device(e)
    e.add_argument(
        "--quiet", action="store_true", help="no progress bars (results are still printed)"
    )
    e.set_defaults(func=_evaluate)


def add_commands(sub) -> None:
    """Add ``demo``, ``fit`` and ``evaluate`` to the subparsers ``sub``."""
    for add in (_add_demo, _add_fit, _add_evaluate):
        add(sub)
