"""``cellflow bench ...``: the benchmark commands."""

from __future__ import annotations

import argparse
from typing import get_args

from .._io import write_csv
from .._types import MetricKind, SpeedSection
from ..flow.methods import methods_for
from ..models import CELLFLOW_METHODS
from ._options import bench_defaults

# the methods torchcfm also has, which the speed benchmarks compare
TORCHCFM_METHODS = methods_for("tables")


def _bench_toy(args) -> int:
    from ..bench.toy import run

    run(
        steps=args.steps,
        seeds=args.seeds,
        methods=args.methods,
        batch_size=args.batch_size,
        n_test=args.n_test,
        sigma=args.sigma,
        sb_sigma=args.sb_sigma,
        out=args.out,
    )
    return 0


def _bench_arch(args) -> int:
    from ..bench.arch import run

    run(
        n_cells=args.n_cells,
        seeds=args.seeds,
        metrics=args.metrics,
        metric_eps=args.metric_eps,
        n_dims=args.n_dims,
        whiten=not args.no_whiten,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        progress=not args.quiet,
    )
    return 0


def _bench_throughput(args) -> int:
    from ..bench.throughput import course, run

    if args.course:
        course(repeats=args.repeats, busy=args.busy, **_given(args, "steps", "methods"))
        return 0
    run(
        repeats=args.repeats,
        batch=args.batch_size,
        threads=args.threads,
        accuracy_steps=args.accuracy_steps,
        n_test=args.n_test,
        device=args.device,
        ot_groups=tuple(args.ot_groups),
        busy=args.busy,
        ours_threads=tuple(args.ours_threads),
        **_given(args, "steps", "methods"),
    )
    return 0


def _bench_speed(args) -> int:
    from ..bench.speed import run

    run(
        sections=tuple(args.sections),
        quick=args.quick,
        repeats=args.repeats,
        threads=args.threads,
        accuracy_steps=args.accuracy_steps,
        out=args.out,
        device=args.device,
    )
    return 0


def _bench_scale(args) -> int:
    common = dict(
        n_pcs=args.n_pcs, method=args.method, seed=args.seed, **_given(args, "steps", "batch_size")
    )
    if args.cells is not None:  # the atlas on disk
        from ..bench.atlas import run as atlas

        df = atlas(
            cells=args.cells,
            n_times=args.n_times,
            keep=args.keep,
            fates=not args.no_fates,
            progress=not args.quiet,
            **common,
        )
    else:
        from ..bench.scale import run

        df = run(
            n_cells=args.n_cells,
            small=args.small,
            x_cells=args.x_cells,
            x_genes=args.x_genes,
            x_density=args.x_density,
            **common,
        )
    if args.out:
        write_csv(df, args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def _bench_velocity(args) -> int:
    from ..bench.velocity import run

    run(
        args.input,
        args.time_key,
        args.reference,
        use_rep=args.use_rep,
        n_pcs=args.n_pcs,
        whiten=args.whiten,
        methods=args.methods,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        progress=not args.quiet,
    )
    return 0


def _bench_tabular(args) -> int:
    from ..bench.tabular import run

    run(
        tuple(args.tables),
        methods=tuple(args.methods),
        steps=args.steps,
        seeds=tuple(args.seeds),
        peer=not args.no_peer,
        n_jobs=args.threads,
        peer_duplicate_k=args.peer_duplicate_k,
        out=args.out,
    )
    return 0


def _bench_images(args) -> int:
    from ..bench.images import run

    run(
        tuple(args.methods),
        steps=args.steps,
        batch_size=args.batch_size,
        nfe=tuple(args.nfe),
        seed=args.seed,
        progress=not args.quiet,
        out=args.out,
    )
    return 0


def _bench_growth(args) -> int:
    from ..bench.growth import regions, run, summarize

    if args.regions:
        table, cells = regions(
            args.regions, args.time_key, seed=args.seeds[0], **_given(args, "steps")
        )
        print(
            f"learned growth per {args.time_key} (rows) and region (columns), log per unit of time"
        )
        print(table.to_string())
        print("cells per time and region")
        print(cells.to_string())
        return 0

    df = run(
        args.seeds,
        n_cells=args.n_cells,
        held_out=args.held_out,
        **_given(args, "steps"),
        moscot_python=args.moscot_python,
        out=args.out,
        progress=not args.quiet,
    )
    return _print_summary(summarize(df), args.out)


def _print_summary(table, out) -> int:
    """A seeded benchmark's summary table, and where its rows were written."""
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if out:
        print(f"wrote {out}")
    return 0


def _bench_fates(args) -> int:
    from ..bench.fates import larry, run, run_multifate, summarize

    if args.larry:
        print(
            larry(args.larry, seed=args.seeds[0], **_given(args, "steps", "n_samples")).to_string()
        )
        return 0
    if args.fates < 2:
        raise SystemExit(f"cellflow bench fates: --fates must be at least 2, got {args.fates}.")
    if args.fates > 2:
        df = run_multifate(
            args.seeds,
            n_fates=args.fates,
            n_cells=args.n_cells,
            **_given(args, "steps", "n_samples"),
            moscot_python=args.moscot_python,
            out=args.out,
            progress=not args.quiet,
        )
        return _print_summary(summarize(df), args.out)
    df = run(
        args.seeds,
        n_cells=args.n_cells,
        sb_bootstrap=args.sb_bootstrap,
        cellrank=args.cellrank,
        moscot_python=args.moscot_python,
        out=args.out,
        progress=not args.quiet,
        **_given(args, "steps", "n_samples"),
    )
    return _print_summary(summarize(df), args.out)


def _given(args, *names: str) -> dict:
    """The options among ``names`` that were given (not ``None``): options whose default differs
    between the functions a command may call are left to each function's own default."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _add_toy(bsub) -> None:
    D = bench_defaults("toy")
    t = bsub.add_parser("toy", help="the paper's 2-D benchmark: W2 and NPE over seeds")
    t.add_argument("--steps", type=int, default=D["steps"])
    t.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    t.add_argument("--methods", nargs="+", default=D["methods"])
    t.add_argument("--batch-size", type=int, default=D["batch_size"])
    t.add_argument(
        "--n-test", type=int, default=D["n_test"], help="test samples per side for W2 (up to 10000)"
    )
    t.add_argument("--sigma", type=float, default=D["sigma"], help="sigma of I-CFM and OT-CFM")
    t.add_argument("--sb-sigma", type=float, default=D["sb_sigma"])
    t.add_argument("--out", default="bench_out", help="folder for toy.csv and toy_summary.csv")
    t.set_defaults(func=_bench_toy)


def _add_arch(bsub) -> None:
    D = bench_defaults("arch")
    a = bsub.add_parser(
        "arch",
        help="OT-MFM against OT-CFM on the arch, where straight paths leave the data",
        description="Hold out the middle of three time points along a half circle "
        "(cellflow.datasets.arch_time_course) and score OT-CFM and OT-MFM with each "
        "metric by the paper's protocol, with the baselines.",
    )
    a.add_argument("--n-cells", type=int, default=D["n_cells"], help="cells per time point")
    a.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    a.add_argument("--metrics", nargs="+", default=D["metrics"], choices=get_args(MetricKind))
    a.add_argument(
        "--metric-eps",
        type=float,
        default=D["metric_eps"],
        help="the metrics' floor eps in G = I / (h + eps) (default 0.1; the MFM paper's 0.01 "
        "pulls harder)",
    )
    a.add_argument(
        "--n-dims",
        type=int,
        default=D["n_dims"],
        help="embed the arch in this many dimensions (a random rotation; N(0, 0.1^2) in the "
        "added ones)",
    )
    a.add_argument(
        "--no-whiten",
        action="store_true",
        help="the protocol's unwhitened setting (sigma 1.0 from 20 dimensions, W1 in the data's "
        "units)",
    )
    a.add_argument("--steps", type=int, default=D["steps"])
    a.add_argument("--batch-size", type=int, default=D["batch_size"])
    a.add_argument("--out", default=D["out"], help="folder for arch.csv and arch_summary.csv")
    a.add_argument(
        "--quiet", action="store_true", help="no progress bars (the summary is still printed)"
    )
    a.set_defaults(func=_bench_arch)


def _add_throughput(bsub) -> None:
    D, C = bench_defaults("throughput"), bench_defaults("throughput", "course")
    s = bsub.add_parser("throughput", help="training steps/s, ours next to torchcfm (if installed)")
    s.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"(default {D['steps']}, or {C['steps']} with --course)",
    )
    s.add_argument("--repeats", type=int, default=D["repeats"])
    s.add_argument("--batch-size", type=int, default=D["batch"])
    s.add_argument("--threads", type=int, default=D["threads"])
    s.add_argument(
        "--accuracy-steps",
        type=int,
        default=D["accuracy_steps"],
        help="also train this long and report W2 and NFE",
    )
    s.add_argument("--n-test", type=int, default=D["n_test"])
    s.add_argument(
        "--device", default=D["device"], help="cpu (default) or cuda: where the networks train"
    )
    s.add_argument(
        "--methods",
        nargs="+",
        choices=TORCHCFM_METHODS,
        default=None,
        help=f"(default {' '.join(D['methods'])}, or {' '.join(C['methods'])} with --course)",
    )
    s.add_argument(
        "--ot-groups",
        nargs="+",
        type=int,
        default=D["ot_groups"],
        metavar="G",
        help="also time our OT-CFM with its worker tasks solving G steps each (default 16)",
    )
    s.add_argument(
        "--busy",
        type=int,
        default=D["busy"],
        metavar="N",
        help="also time every contender beside N CPU-bound processes, in turns with the runs alone",
    )
    s.add_argument(
        "--ours-threads",
        nargs="+",
        type=int,
        default=D["ours_threads"],
        metavar="T",
        help="also time ours on T torch threads (default: cellflow.train.threads' policy, one "
        "thread)",
    )
    s.add_argument(
        "--course",
        action="store_true",
        help="time CellFlow at its defaults on a simulated 50-PC time course instead (whole "
        "plans and minibatch plans; --steps, --repeats, --methods and --busy apply)",
    )
    s.set_defaults(func=_bench_throughput)


def _add_speed(bsub) -> None:
    D = bench_defaults("speed")
    sp = bsub.add_parser(
        "speed",
        help="training steps/s, exact OT and Sinkhorn at n=4096, pushing 100k cells; "
        "next to POT and torchcfm, written to JSON",
    )
    sp.add_argument("--sections", nargs="+", choices=get_args(SpeedSection), default=D["sections"])
    sp.add_argument("--quick", action="store_true", help="small problems, for a smoke run")
    sp.add_argument(
        "--repeats",
        type=int,
        default=D["repeats"],
        help="timed runs per figure (the median is reported)",
    )
    sp.add_argument("--threads", type=int, default=D["threads"])
    sp.add_argument(
        "--accuracy-steps",
        type=int,
        default=D["accuracy_steps"],
        help="also train the throughput models this long and report W2 and dopri5 NFE",
    )
    sp.add_argument("--out", default="speed.json", help="JSON file for all tables")
    sp.add_argument(
        "--device",
        default=D["device"],
        help="cpu (default) or cuda: where our networks and our Sinkhorn run (exact OT stays on "
        "the CPU)",
    )
    sp.set_defaults(func=_bench_speed)


def _add_scale(bsub) -> None:
    D, A = bench_defaults("scale"), bench_defaults("atlas")
    sc = bsub.add_parser(
        "scale",
        help="a synthetic million-cell time course: step time vs number of cells, "
        "velocities of all cells, peak memory; with --cells, an atlas written to disk and "
        "read from it, to fates",
    )
    sc.add_argument(
        "--cells",
        type=int,
        default=None,
        help="write a synthetic atlas of this many cells to an .h5ad (lineages, branches, "
        "clusters; cellflow.bench.atlas) and read it on demand: build, train, velocities of "
        "every cell into the file, fates of the first time point, each stage's time and peak "
        "memory",
    )
    sc.add_argument("--n-times", type=int, default=A["n_times"], help="time points (--cells)")
    sc.add_argument(
        "--keep",
        default=None,
        help="with --cells: write the atlas to this .h5ad and keep it; an existing one is reused",
    )
    sc.add_argument("--no-fates", action="store_true", help="with --cells: skip the fates")
    sc.add_argument("--quiet", action="store_true", help="no progress bars")
    sc.add_argument("--n-cells", type=int, default=D["n_cells"])
    sc.add_argument("--n-pcs", type=int, default=D["n_pcs"])
    sc.add_argument("--small", type=int, default=D["small"], help="cells of the comparison run")
    sc.add_argument("--method", choices=TORCHCFM_METHODS, default=D["method"])
    sc.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"(default {D['steps']}, or {A['steps']} with --cells)",
    )
    sc.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"(default {D['batch_size']}, or {A['batch_size']} with --cells)",
    )
    sc.add_argument("--seed", type=int, default=D["seed"])
    sc.add_argument(
        "--x-cells",
        type=int,
        default=D["x_cells"],
        help="first train on a sparse X of this many cells (use_rep='X'), in memory and backed on "
        "disk; 0 skips it",
    )
    sc.add_argument("--x-genes", type=int, default=D["x_genes"])
    sc.add_argument(
        "--x-density", type=float, default=D["x_density"], help="fraction of non-zero entries of X"
    )
    sc.add_argument("--out", default=None, help="CSV of the table")
    sc.set_defaults(func=_bench_scale)


def _add_velocity(bsub) -> None:
    D = bench_defaults("velocity")
    v = bsub.add_parser(
        "velocity", help="cosine between the learned velocity and a reference velocity in obsm"
    )
    v.add_argument("input", metavar="IN.h5ad")
    v.add_argument("--time-key", required=True)
    v.add_argument(
        "--reference", required=True, help="obsm key of the reference velocity (e.g. velocity_pca)"
    )
    v.add_argument("--use-rep", default=D["use_rep"])
    v.add_argument(
        "--n-pcs",
        type=int,
        default=D["n_pcs"],
        help="leading PCs (default 5, or every column of a narrower representation such as a "
        "2-D layout)",
    )
    v.add_argument(
        "--whiten",
        action=argparse.BooleanOptionalAction,
        default=D["whiten"],
        help="standardise each PC (default); --no-whiten: the PCs as they are",
    )
    v.add_argument("--methods", nargs="+", default=D["methods"], choices=list(CELLFLOW_METHODS))
    v.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    v.add_argument("--steps", type=int, default=D["steps"])
    v.add_argument("--batch-size", type=int, default=D["batch_size"])
    v.add_argument("--out", default=D["out"], metavar="TABLE.csv")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=_bench_velocity)


def _add_growth(bsub) -> None:
    D = bench_defaults("growth")
    g = bsub.add_parser(
        "growth",
        help="growth-aware flows on a course with known growth, next to balanced OT-CFM and moscot",
    )
    g.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    g.add_argument("--steps", type=int, default=D["steps"], help="training steps of every model")
    g.add_argument("--n-cells", type=int, default=D["n_cells"], help="cells sequenced per day")
    g.add_argument(
        "--held-out",
        type=float,
        nargs="*",
        default=D["held_out"],
        help="days held out, one model each, for the mass-weighted W1 (none: skip)",
    )
    g.add_argument(
        "--moscot-python",
        default=D["moscot_python"],
        help="the python of an environment with moscot 0.5.2 (pip install moscot): runs moscot's "
        "TemporalProblem on the same data (default: no moscot)",
    )
    g.add_argument(
        "--regions",
        default=None,
        metavar="IN.h5ad",
        help="instead: learn growth on a real file (no genes needed) and print its mean per time "
        "point and region (k-means on the benchmark's 5 whitened PCs)",
    )
    g.add_argument("--time-key", default="day", help="with --regions: the obs time column")
    g.add_argument("--out", default=D["out"], metavar="TABLE.csv")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_bench_growth)


def _add_fates(bsub) -> None:
    D, M = bench_defaults("fates"), bench_defaults("fates", "run_multifate")
    L = bench_defaults("fates", "larry")
    fa = bsub.add_parser(
        "fates",
        help="terminal states, calibrated fates and driver genes without labels, next to CellRank",
    )
    fa.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    fa.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"training steps of every model (default {D['steps']}; {M['steps']} with --fates 3 "
        f"or more; {L['steps']} with --larry, tutorial 04's)",
    )
    fa.add_argument("--n-cells", type=int, default=D["n_cells"], help="cells sequenced per day")
    fa.add_argument(
        "--fates",
        type=int,
        default=2,
        help="fates of the simulated course: 2 (simulated_differentiation, with uncertainty, "
        "drivers and CellRank; default) or more (simulated_multifate: fates scored against the "
        "true probabilities of every fate)",
    )
    fa.add_argument(
        "--n-samples", type=int, default=D["n_samples"], help="answers per cell for the spread"
    )
    fa.add_argument(
        "--sb-bootstrap",
        action=argparse.BooleanOptionalAction,
        default=D["sb_bootstrap"],
        help="bootstrap replicates of SB-CFM too (default; n-samples more trainings of the slower "
        "model); --no-sb-bootstrap: its SDE paths only",
    )
    fa.add_argument(
        "--cellrank",
        action=argparse.BooleanOptionalAction,
        default=D["cellrank"],
        help="CellRank 2's GPCCA and lineage drivers beside (default; --no-cellrank: skip)",
    )
    fa.add_argument(
        "--moscot-python",
        default=D["moscot_python"],
        metavar="PY",
        help="the python of an environment with moscot 0.5.2 (pip install moscot): its "
        "TemporalProblem's fates at eps 1e-3, 1e-2, 0.1 and 1 beside (default: no moscot)",
    )
    fa.add_argument(
        "--larry",
        default=None,
        metavar="weinreb_larry.h5ad",
        help="instead: the LARRY protocol of tutorial 04 on this file (terminal states without "
        "labels, neutrophil-vs-monocyte AUROC against clonal fates, entropy of mixed clones)",
    )
    fa.add_argument("--out", default=D["out"], metavar="TABLE.csv")
    fa.add_argument("--quiet", action="store_true")
    fa.set_defaults(func=_bench_fates)


def _add_tabular(bsub) -> None:
    D = bench_defaults("tabular")
    bt = bsub.add_parser(
        "tabular",
        help="TabularFlow next to ForestDiffusion (if installed) on the same splits",
        description="Machine-learning efficiency, per-column W1 and KS, correlation distance and "
        "wall time, for our generators and ForestDiffusion (flow mode) in one run.",
    )
    bt.add_argument("--tables", nargs="+", default=D["tables"], help="embedded names or CSV paths")
    bt.add_argument("--methods", nargs="+", default=D["methods"], choices=methods_for("tables"))
    bt.add_argument("--steps", type=int, default=D["steps"])
    bt.add_argument("--seeds", type=int, nargs="+", default=D["seeds"])
    bt.add_argument(
        "--threads", type=int, default=D["n_jobs"], help="n_jobs of ForestDiffusion (default 2)"
    )
    bt.add_argument("--no-peer", action="store_true", help="skip ForestDiffusion")
    bt.add_argument(
        "--peer-duplicate-k",
        type=int,
        default=D["peer_duplicate_k"],
        help="ForestDiffusion's noise duplication (its default 100; lower it for large tables)",
    )
    bt.add_argument("--out", default=D["out"], metavar="RESULTS.json")
    bt.set_defaults(func=_bench_tabular)


def _add_images(bsub) -> None:
    D = bench_defaults("images")
    bi = bsub.add_parser(
        "images",
        help="class-conditional digits: OT-CFM next to I-CFM at fixed Euler NFE and dopri5",
        description="Train each method on the digits with the same seed and steps; score the "
        "accuracy of a classifier trained on real digits on the samples, and the Frechet distance "
        "in its features, at each Euler NFE and with dopri5.",
    )
    bi.add_argument("--methods", nargs="+", default=D["methods"], choices=methods_for("images"))
    bi.add_argument("--steps", type=int, default=D["steps"])
    bi.add_argument("--batch-size", type=int, default=D["batch_size"])
    bi.add_argument("--nfe", type=int, nargs="+", default=D["nfe"])
    bi.add_argument("--seed", type=int, default=D["seed"])
    bi.add_argument("--out", default=D["out"], metavar="RESULTS.json")
    bi.add_argument("--quiet", action="store_true")
    bi.set_defaults(func=_bench_images)


def add_commands(sub) -> None:
    """Add ``bench`` and its subcommands to the subparsers ``sub``; every option's default is
    its benchmark function's (:func:`cellflow.cli._options.bench_defaults`)."""
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    for add in (
        _add_toy,
        _add_arch,
        _add_throughput,
        _add_speed,
        _add_scale,
        _add_velocity,
        _add_growth,
        _add_fates,
        _add_tabular,
        _add_images,
    ):
        add(bsub)
