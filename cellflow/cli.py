"""Command line: ``cellflow demo``, ``cellflow fit``, ``cellflow evaluate``, ``cellflow train images|tabular``,
``cellflow bench ...``."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from ._methods import METHODS as CELLFLOW_METHODS


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, steps=args.steps, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    return 0


def _metric_kwargs(args) -> dict:
    """OT-MFM's metric options from ``--metric-eps`` (ignored by the other methods)."""
    return {} if args.metric_eps is None else {"metric": {"eps": args.metric_eps}}


def _add_time_and_metric_options(p: argparse.ArgumentParser) -> None:
    """``--time-scale`` and ``--metric-eps``, shared by ``fit`` and ``evaluate``."""
    from .geodesics import METRIC_EPS

    p.add_argument("--time-scale", default="index", choices=["index", "real"],
                   help="model time of each time point: its index (the paper's protocol, default) or its value")
    p.add_argument("--metric-eps", type=float, default=None,
                   help="OT-MFM only: the metric's floor eps in G = I / (h + eps); larger pulls the paths less "
                        f"towards the cells (default {METRIC_EPS}; the paper used 0.01)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="where the flow trains and integrates: cpu (default), cuda, "
                                                   "cuda:1, ... (minibatch couplings are solved on the CPU)")


def _fit(args) -> int:
    from ._pipeline import fit_h5ad

    adata, model = fit_h5ad(args.input, args.out, time_key=args.time_key, use_rep=args.use_rep, n_pcs=args.n_pcs,
                            whiten=args.whiten, method=args.method, sigma=args.sigma, time_scale=args.time_scale,
                            steps=args.steps,
                            batch_size=args.batch_size, ot_batch_size=args.ot_batch_size, seed=args.seed,
                            model_dir=args.model_dir, velocity=not args.no_velocity, basis=args.basis, overwrite=args.overwrite,
                            global_coupling=args.global_coupling, backed=args.backed, progress=not args.quiet,
                            device=args.device, **_metric_kwargs(args))
    from .distributed import is_main

    if not is_main():
        return 0
    print(f"{model!r}\nwrote {args.out} and the model to {adata.uns['cellflow']['model_dir']}")
    return 0


def _evaluate(args) -> int:
    from ._pipeline import evaluate_h5ad

    _, summary = evaluate_h5ad(args.input, args.out, time_key=args.time_key, methods=args.methods, seeds=args.seeds,
                               use_rep=args.use_rep, n_pcs=args.n_pcs, whiten=not args.no_whiten,
                               held_out=args.held_out, steps=args.steps, batch_size=args.batch_size,
                               max_eval=args.max_eval, progress=not args.quiet, overwrite=args.overwrite,
                               ema_decay=args.ema, sigma=args.sigma, time_scale=args.time_scale,
                               device=args.device, ot_batch_size=args.ot_batch_size, fractions=args.fractions,
                               **_metric_kwargs(args))
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {args.out}")
    return 0


def _bench_toy(args) -> int:
    from .bench.toy import run

    run(steps=args.steps, seeds=args.seeds, methods=args.methods, batch_size=args.batch_size, n_test=args.n_test,
        sigma=args.sigma, sb_sigma=args.sb_sigma, out=args.out)
    return 0


def _bench_throughput(args) -> int:
    from .bench.throughput import run

    run(steps=args.steps, repeats=args.repeats, batch=args.batch_size, threads=args.threads,
        accuracy_steps=args.accuracy_steps, n_test=args.n_test, device=args.device, methods=tuple(args.methods),
        ot_groups=tuple(args.ot_groups))
    return 0


def _bench_speed(args) -> int:
    from .bench.speed import run

    run(sections=tuple(args.sections), quick=args.quick, repeats=args.repeats, threads=args.threads,
        accuracy_steps=args.accuracy_steps, out=args.out, device=args.device)
    return 0


def _bench_scale(args) -> int:
    from .bench.scale import run

    df = run(n_cells=args.n_cells, n_pcs=args.n_pcs, small=args.small, method=args.method, steps=args.steps,
             batch_size=args.batch_size, seed=args.seed, x_cells=args.x_cells, x_genes=args.x_genes,
             x_density=args.x_density)
    if args.out:
        df.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def _bench_velocity(args) -> int:
    from .bench.velocity import run

    run(args.input, args.time_key, args.reference, use_rep=args.use_rep, n_pcs=args.n_pcs,
        whiten=not args.no_whiten, methods=args.methods, seeds=args.seeds, steps=args.steps,
        batch_size=args.batch_size, out=args.out, progress=not args.quiet)
    return 0


def _train_tabular(args) -> int:
    from .tabular._run import train_tabular

    m = train_tabular(args.data, args.out, label=args.label, method=args.method, steps=args.steps,
                      batch_size=args.batch_size, test_fraction=args.test_fraction, n_samples=args.n_samples,
                      missing=args.missing, seed=args.seed, resume=args.resume, checkpoint_every=args.checkpoint_every,
                      global_coupling=args.global_coupling, progress=not args.quiet)
    if not m:  # a rank other than 0 under torchrun
        return 0
    line = f"mean column W1 {m['w1_mean']:.3f}, correlation distance {m['correlation_distance']:.4f}"
    if "ml_efficiency" in m:
        line += f", ML efficiency {m['ml_efficiency']['ratio']:.3f}"
    print(f"{line}\nwrote {args.out}/model, samples.csv, metrics.json")
    return 0


def _train_images(args) -> int:
    from .images._run import train_images

    m = train_images(args.dataset, args.out, method=args.method, sigma=args.sigma, preset=args.preset,
                     channels=args.channels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     warmup_steps=args.warmup, ema_decay=-1.0 if args.ema is None else (None if args.ema <= 0 else args.ema), guidance=args.guidance,
                     nfe=tuple(args.nfe), dopri5=not args.no_dopri5, conditional=not args.unconditional,
                     seed=args.seed, resume=args.resume, checkpoint_every=args.checkpoint_every, device=args.device,
                     data_dir=args.data_dir, random_data=args.random_data, global_coupling=args.global_coupling,
                     grid_steps=args.grid_steps, progress=not args.quiet)
    if not m:  # a rank other than 0 under torchrun
        return 0
    print(f"{m['parameters'] / 1e6:.1f}M parameters, {m['steps']} steps at {m['steps_per_second']:.2f} steps/s, "
          f"peak RSS {m['peak_rss_gb']:.2f} GB" + (f", CUDA peak {m['cuda_peak_memory_gb']:.2f} GB"
                                                    if "cuda_peak_memory_gb" in m else ""))
    for r in m.get("digits", []):
        print(f"  {r['solver']:<17} NFE {r['nfe']:>5.0f}  classifier accuracy {r['accuracy']:.3f} "
              f"(ratio {r['accuracy_ratio']:.3f})  Frechet {r['frechet']:.3f}")
    print(f"wrote {args.out}/model, samples.png, metrics.json")
    return 0


def _bench_tabular(args) -> int:
    from .bench.tabular import run

    run(tuple(args.tables), methods=tuple(args.methods), steps=args.steps, seeds=tuple(args.seeds),
        peer=not args.no_peer, n_jobs=args.threads, peer_duplicate_k=args.peer_duplicate_k, out=args.out)
    return 0


def _bench_images(args) -> int:
    from .bench.images import run

    run(tuple(args.methods), steps=args.steps, batch_size=args.batch_size, nfe=tuple(args.nfe), seed=args.seed,
        progress=not args.quiet, out=args.out)
    return 0


def _add_global_coupling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--global-coupling", action="store_true",
                        help="under torchrun: couple one global batch of all ranks' rows (default: each rank its own)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellflow", description="Conditional flow matching for cells and beyond.")
    p.add_argument("--version", action="version", version=f"cellflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the whole single-cell pipeline on the embedded simulated time course",
                       description="Simulate a branching time course, run scanpy preprocessing, fit OT-CFM, run "
                                   "the held-out evaluation, export velocities, and write figures, a results "
                                   ".h5ad and the table to --out. No download; a few minutes on 2 CPU cores.")
    d.add_argument("--out", default="cellflow_out", help="output folder (default: cellflow_out)")
    d.add_argument("--steps", type=int, default=1500, help="training steps per model (default 1500)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    f = sub.add_parser("fit", help="fit a flow to an .h5ad time course and write velocities",
                       description="Train a CellFlow on IN.h5ad, save the model next to OUT.h5ad (or --model-dir), "
                                   "and write OUT.h5ad with obsm['velocity_<rep>'] (and layers['velocity'], "
                                   "obsm['velocity_umap'] when PCs / a UMAP are present).")
    f.add_argument("input", metavar="IN.h5ad")
    f.add_argument("--time-key", required=True, help="obs column with each cell's sampling time")
    f.add_argument("--out", required=True, metavar="OUT.h5ad")
    f.add_argument("--use-rep", default="X_pca", help="obsm key of the representation (default X_pca), or X for the "
                                                       "expression matrix itself (dense, sparse or, with --backed, on disk)")
    f.add_argument("--backed", action="store_true", help="leave X on disk and read the rows each step draws "
                                                        "(with --use-rep X, for files larger than memory)")
    f.add_argument("--n-pcs", type=int, default=None, help="leading columns of the representation to use (default all)")
    f.add_argument("--whiten", action="store_true", help="standardise each component (the paper's 5-PC setting)")
    f.add_argument("--method", default="ot", choices=list(CELLFLOW_METHODS))
    f.add_argument("--sigma", type=float, default=None,
                   help="path noise in the standardised units the network sees (default: the method's, see CellFlow)")
    f.add_argument("--steps", type=int, default=2000)
    _add_time_and_metric_options(f)
    f.add_argument("--batch-size", type=int, default=512, help="cells per time point per step")
    f.add_argument("--ot-batch-size", type=int, default=None,
                   help="cells per time point for the minibatch coupling (default: --batch-size)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--model-dir", default=None, help="where to save the model (default OUT_model/)")
    f.add_argument("--basis", default="umap", help="embedding to project velocities on, if present and not the representation itself (default umap)")
    f.add_argument("--no-velocity", action="store_true", help="do not write velocities")
    f.add_argument("--overwrite", action="store_true")
    _add_global_coupling(f)
    _add_device(f)
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_fit)

    e = sub.add_parser("evaluate", help="leave-one-time-point-out benchmark (Tong et al. 2024 protocol)",
                       description="For each intermediate time point: train without it, push the previous time "
                                   "point's cells forward with 100 Euler steps, score W1/W2/MMD against the held-out "
                                   "cells; with the previous-time-point and McCann baselines. Writes a tidy CSV.")
    e.add_argument("input", metavar="IN.h5ad")
    e.add_argument("--time-key", required=True)
    e.add_argument("--out", required=True, metavar="TABLE.csv")
    e.add_argument("--methods", nargs="+", default=["ot", "sb", "icfm"], choices=list(CELLFLOW_METHODS))
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--use-rep", default="X_pca")
    e.add_argument("--n-pcs", type=int, default=5, help="leading PCs (default 5, the paper's setting)")
    e.add_argument("--no-whiten", action="store_true", help="use the PCs unwhitened (the paper's 50/100-PC setting)")
    e.add_argument("--held-out", type=float, nargs="+", default=None, help="times to hold out (default all intermediate)")
    e.add_argument("--steps", type=int, default=2000)
    _add_time_and_metric_options(e)
    e.add_argument("--batch-size", type=int, default=512)
    e.add_argument("--ot-batch-size", type=int, default=None,
                   help="cells per time point for the minibatch coupling, from whose plan --batch-size pairs are "
                        "drawn (default: --batch-size, the paper's protocol)")
    e.add_argument("--ema", type=float, default=None, help="EMA decay of the weights (default none)")
    e.add_argument("--sigma", type=float, default=None,
                   help="path noise of OT-CFM and I-CFM in the standardised units the network sees (default: "
                        "CellFlow's; SB-CFM keeps its own)")
    e.add_argument("--max-eval", type=int, default=4000, help="cells per side for exact W1/W2 (seeded subsample)")
    e.add_argument("--fractions", type=float, nargs="+", default=None, metavar="F",
                   help="also push each flow to these fractions of the merged held-out interval and report the "
                        "best (columns best_fraction, w1_best_fraction): a diagnostic of the pace, "
                        "e.g. 0.3 0.4 0.5 0.6 0.7")
    e.add_argument("--overwrite", action="store_true")
    _add_device(e)
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_evaluate)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    t = bsub.add_parser("toy", help="the paper's 2-D benchmark: W2 and NPE over seeds")
    t.add_argument("--steps", type=int, default=20000)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--methods", nargs="+", default=["icfm", "ot", "sb", "fm"])
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--n-test", type=int, default=2000, help="test samples per side for W2 (up to 10000)")
    t.add_argument("--sigma", type=float, default=0.1, help="sigma of I-CFM and OT-CFM")
    t.add_argument("--sb-sigma", type=float, default=0.5)
    t.add_argument("--out", default="bench_out", help="folder for toy.csv and toy_summary.csv")
    t.set_defaults(func=_bench_toy)
    s = bsub.add_parser("throughput", help="training steps/s, ours next to torchcfm (if installed)")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--accuracy-steps", type=int, default=0, help="also train this long and report W2 and NFE")
    s.add_argument("--n-test", type=int, default=2000)
    s.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the networks train")
    s.add_argument("--methods", nargs="+", choices=["ot", "icfm", "sb"], default=["ot", "icfm", "sb"])
    s.add_argument("--ot-groups", nargs="+", type=int, default=[], metavar="G",
                   help="also time our OT-CFM with its worker tasks solving G steps each (default 16)")
    s.set_defaults(func=_bench_throughput)
    from .bench.speed import SECTIONS

    sp = bsub.add_parser("speed", help="training steps/s, exact OT and Sinkhorn at n=4096, pushing 100k cells; "
                                       "next to POT and torchcfm, written to JSON")
    sp.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    sp.add_argument("--quick", action="store_true", help="small problems, for a smoke run")
    sp.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the median is reported)")
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--accuracy-steps", type=int, default=0,
                    help="also train the throughput models this long and report W2 and dopri5 NFE")
    sp.add_argument("--out", default="speed.json", help="JSON file for all tables")
    sp.add_argument("--device", default="cpu",
                    help="cpu (default) or cuda: where our networks and our Sinkhorn run (exact OT stays on the CPU)")
    sp.set_defaults(func=_bench_speed)
    sc = bsub.add_parser("scale", help="a synthetic million-cell time course: step time vs number of cells, "
                                       "velocities of all cells, peak memory")
    sc.add_argument("--n-cells", type=int, default=1_000_000)
    sc.add_argument("--n-pcs", type=int, default=50)
    sc.add_argument("--small", type=int, default=10_000, help="cells of the comparison run")
    sc.add_argument("--method", choices=["ot", "sb", "icfm"], default="ot")
    sc.add_argument("--steps", type=int, default=50)
    sc.add_argument("--batch-size", type=int, default=512)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--x-cells", type=int, default=200_000,
                    help="first train on a sparse X of this many cells (use_rep='X'), in memory and backed on "
                         "disk; 0 skips it")
    sc.add_argument("--x-genes", type=int, default=2000)
    sc.add_argument("--x-density", type=float, default=0.05, help="fraction of non-zero entries of X")
    sc.add_argument("--out", default=None, help="CSV of the table")
    sc.set_defaults(func=_bench_scale)
    v = bsub.add_parser("velocity", help="cosine between the learned velocity and a reference velocity in obsm")
    v.add_argument("input", metavar="IN.h5ad")
    v.add_argument("--time-key", required=True)
    v.add_argument("--reference", required=True, help="obsm key of the reference velocity (e.g. velocity_pca)")
    v.add_argument("--use-rep", default="X_pca")
    v.add_argument("--n-pcs", type=int, default=5)
    v.add_argument("--no-whiten", action="store_true")
    v.add_argument("--methods", nargs="+", default=["ot", "icfm"], choices=list(CELLFLOW_METHODS))
    v.add_argument("--seeds", type=int, nargs="+", default=[0])
    v.add_argument("--steps", type=int, default=2000)
    v.add_argument("--batch-size", type=int, default=512)
    v.add_argument("--out", default=None, metavar="TABLE.csv")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=_bench_velocity)
    bt = bsub.add_parser("tabular", help="TabularFlow next to ForestDiffusion (if installed) on the same splits",
                         description="Machine-learning efficiency, per-column W1 and KS, correlation distance and "
                                     "wall time, for our generators and ForestDiffusion (flow mode) in one run.")
    bt.add_argument("--tables", nargs="+", default=["wine", "breast_cancer"], help="embedded names or CSV paths")
    bt.add_argument("--methods", nargs="+", default=["icfm", "ot"], choices=["ot", "sb", "icfm"])
    bt.add_argument("--steps", type=int, default=5000)
    bt.add_argument("--seeds", type=int, nargs="+", default=[0])
    bt.add_argument("--threads", type=int, default=2, help="n_jobs of ForestDiffusion (default 2)")
    bt.add_argument("--no-peer", action="store_true", help="skip ForestDiffusion")
    bt.add_argument("--peer-duplicate-k", type=int, default=100,
                    help="ForestDiffusion's noise duplication (its default 100; lower it for large tables)")
    bt.add_argument("--out", default=None, metavar="RESULTS.json")
    bt.set_defaults(func=_bench_tabular)

    bi = bsub.add_parser("images", help="class-conditional digits: OT-CFM next to I-CFM at fixed Euler NFE and dopri5",
                         description="Train each method on the digits with the same seed and steps; score the accuracy "
                                     "of a classifier trained on real digits on the samples, and the Frechet distance "
                                     "in its features, at each Euler NFE and with dopri5.")
    bi.add_argument("--methods", nargs="+", default=["ot", "icfm"], choices=["ot", "icfm", "fm"])
    bi.add_argument("--steps", type=int, default=3000)
    bi.add_argument("--batch-size", type=int, default=128)
    bi.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 100])
    bi.add_argument("--seed", type=int, default=0)
    bi.add_argument("--out", default=None, metavar="RESULTS.json")
    bi.add_argument("--quiet", action="store_true")
    bi.set_defaults(func=_bench_images)

    tr = sub.add_parser("train", help="flow matching beyond cells: images or tables")
    trsub = tr.add_subparsers(dest="kind", required=True)
    ta = trsub.add_parser("tabular", help="a generator of table rows (CSV or iris/wine/breast_cancer)",
                          description="Train a TabularFlow; write model/, samples.csv (same columns and dtypes) and "
                                      "metrics.json (column W1/KS, correlation distance, ML efficiency with --label) "
                                      "to --out. Resumes from --out/checkpoints with --resume.")
    ta.add_argument("data", metavar="CSV_OR_NAME")
    ta.add_argument("--out", required=True, metavar="DIR")
    ta.add_argument("--label", default=None, help="class column to condition on (and to score ML efficiency)")
    ta.add_argument("--method", default="icfm", choices=["ot", "sb", "icfm"])
    ta.add_argument("--steps", type=int, default=5000)
    ta.add_argument("--batch-size", type=int, default=256)
    ta.add_argument("--test-fraction", type=float, default=0.2, help="held-out rows for ML efficiency (default 0.2)")
    ta.add_argument("--n-samples", type=int, default=None, help="rows to generate (default: as many as trained on)")
    ta.add_argument("--missing", default="error", choices=["error", "impute"])
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--checkpoint-every", type=int, default=500)
    ta.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    _add_global_coupling(ta)
    ta.add_argument("--quiet", action="store_true", help="no progress bar")
    ta.set_defaults(func=_train_tabular)
    ti = trsub.add_parser("images", help="a UNet image generator (digits, cifar10, a folder, .npy/.pt)",
                          description="Train an ImageFlow (class-conditional when labels exist); write model/, "
                                      "samples.png and metrics.json (steps/s, memory; on digits the accuracy of a "
                                      "classifier on the samples and the Frechet distance in its features, at each "
                                      "Euler NFE and with dopri5) to --out. Resumes with --resume.")
    ti.add_argument("--dataset", default="digits", help="digits (embedded), cifar10 (needs --data-dir), a folder of "
                                                        "images, or a .npy/.npz/.pt file (default digits)")
    ti.add_argument("--out", required=True, metavar="DIR")
    ti.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (or $CELLFLOW_DATA_DIR)")
    ti.add_argument("--method", default="ot", choices=["ot", "icfm", "fm"])
    ti.add_argument("--sigma", type=float, default=0.0)
    ti.add_argument("--preset", default=None, choices=["digits", "cifar10"], help="UNet size (default by image size)")
    ti.add_argument("--channels", type=int, default=None, help="override the preset's base width")
    ti.add_argument("--steps", type=int, default=5000)
    ti.add_argument("--batch-size", type=int, default=128)
    ti.add_argument("--lr", type=float, default=None, help="default 1e-3 (digits preset), 2e-4 (cifar10 preset)")
    ti.add_argument("--warmup", type=int, default=None, help="lr warm-up steps (default min(5000, steps/20))")
    ti.add_argument("--ema", type=float, default=None, help="EMA decay, 0: off (default 0.999 digits, 0.9999 cifar10)")
    ti.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight for sampling")
    ti.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 100], help="Euler steps to score (digits)")
    ti.add_argument("--no-dopri5", action="store_true", help="do not score dopri5 sampling")
    ti.add_argument("--grid-steps", type=int, default=None, metavar="N",
                    help="Euler steps for samples.png (default 100; 10 with --random-data)")
    ti.add_argument("--unconditional", action="store_true", help="ignore the labels")
    ti.add_argument("--random-data", type=int, default=0, metavar="N",
                    help="train on N random CIFAR-shaped images instead (a recipe check: steps/s and memory)")
    ti.add_argument("--seed", type=int, default=0)
    ti.add_argument("--checkpoint-every", type=int, default=1000)
    ti.add_argument("--resume", action="store_true")
    ti.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    _add_global_coupling(ti)
    ti.add_argument("--quiet", action="store_true")
    ti.set_defaults(func=_train_images)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "fit"):  # under torchrun: join the process group (see cellflow.distributed)
        from .distributed import init_from_env

        init_from_env(getattr(args, "device", "cpu"))
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as e:
        print(f"cellflow: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
