"""``cellflow train images|tabular``: flow matching beyond cells."""

from __future__ import annotations

from ..flow.methods import methods_for
from ._options import add_global_coupling


def _train_tabular(args) -> int:
    from ..tabular._run import train_tabular

    m = train_tabular(
        args.data,
        args.out,
        label=args.label,
        method=args.method,
        steps=args.steps,
        batch_size=args.batch_size,
        test_fraction=args.test_fraction,
        n_samples=args.n_samples,
        missing=args.missing,
        seed=args.seed,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        global_coupling=args.global_coupling,
        progress=not args.quiet,
    )
    if not m:  # a rank other than 0 under torchrun
        return 0
    line = (
        f"mean column W1 {m['w1_mean']:.3f}, correlation distance {m['correlation_distance']:.4f}"
    )
    if "ml_efficiency" in m:
        line += f", ML efficiency {m['ml_efficiency']['ratio']:.3f}"
    print(f"{line}\nwrote {args.out}/model, samples.csv, metrics.json")
    return 0


def _train_images(args) -> int:
    from ..images._run import train_images

    m = train_images(
        args.dataset,
        args.out,
        method=args.method,
        sigma=args.sigma,
        preset=args.preset,
        channels=args.channels,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        ema_decay=-1.0 if args.ema is None else (None if args.ema <= 0 else args.ema),
        guidance=args.guidance,
        nfe=tuple(args.nfe),
        dopri5=not args.no_dopri5,
        conditional=not args.unconditional,
        seed=args.seed,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        data_dir=args.data_dir,
        random_data=args.random_data,
        global_coupling=args.global_coupling,
        grid_steps=args.grid_steps,
        progress=not args.quiet,
    )
    if not m:  # a rank other than 0 under torchrun
        return 0
    print(
        f"{m['parameters'] / 1e6:.1f}M parameters, {m['steps']} steps at "
        f"{m['steps_per_second']:.2f} steps/s, "
        f"peak RSS {m['peak_rss_gb']:.2f} GB"
        + (f", CUDA peak {m['cuda_peak_memory_gb']:.2f} GB" if "cuda_peak_memory_gb" in m else "")
    )
    for r in m.get("digits", []):
        print(
            f"  {r['solver']:<17} NFE {r['nfe']:>5.0f}  classifier accuracy {r['accuracy']:.3f} "
            f"(ratio {r['accuracy_ratio']:.3f})  Frechet {r['frechet']:.3f}"
        )
    print(f"wrote {args.out}/model, samples.png, metrics.json")
    return 0


def add_commands(sub) -> None:
    """Add ``train`` and its subcommands to the subparsers ``sub``."""
    tr = sub.add_parser("train", help="flow matching beyond cells: images or tables")
    trsub = tr.add_subparsers(dest="kind", required=True)
    ta = trsub.add_parser(
        "tabular",
        help="a generator of table rows (CSV or iris/wine/breast_cancer)",
        description="Train a TabularFlow; write model/, samples.csv (same columns and dtypes) and "
        "metrics.json (column W1/KS, correlation distance, ML efficiency with --label) "
        "to --out. Resumes from --out/checkpoints with --resume.",
    )
    ta.add_argument("data", metavar="CSV_OR_NAME")
    ta.add_argument("--out", required=True, metavar="DIR")
    ta.add_argument(
        "--label", default=None, help="class column to condition on (and to score ML efficiency)"
    )
    ta.add_argument("--method", default="icfm", choices=methods_for("tables"))
    ta.add_argument("--steps", type=int, default=5000)
    ta.add_argument("--batch-size", type=int, default=256)
    ta.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="held-out rows for ML efficiency (default 0.2)",
    )
    ta.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="rows to generate (default: as many as trained on)",
    )
    ta.add_argument("--missing", default="error", choices=["error", "impute"])
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--checkpoint-every", type=int, default=500)
    ta.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    add_global_coupling(ta)
    ta.add_argument("--quiet", action="store_true", help="no progress bar")
    ta.set_defaults(func=_train_tabular)
    ti = trsub.add_parser(
        "images",
        help="a UNet image generator (digits, cifar10, a folder, .npy/.pt)",
        description="Train an ImageFlow (class-conditional when labels exist); write model/, "
        "samples.png and metrics.json (steps/s, memory; on digits the accuracy of a "
        "classifier on the samples and the Frechet distance in its features, at each "
        "Euler NFE and with dopri5) to --out. Resumes with --resume.",
    )
    ti.add_argument(
        "--dataset",
        default="digits",
        help="digits (embedded), cifar10 (needs --data-dir), a folder of "
        "images, or a .npy/.npz/.pt file (default digits)",
    )
    ti.add_argument("--out", required=True, metavar="DIR")
    ti.add_argument(
        "--data-dir",
        default=None,
        help="folder holding cifar-10-batches-py/ (or $CELLFLOW_DATA_DIR)",
    )
    ti.add_argument("--method", default="ot", choices=methods_for("images"))
    ti.add_argument("--sigma", type=float, default=0.0)
    ti.add_argument(
        "--preset",
        default=None,
        choices=["digits", "cifar10"],
        help="UNet size (default by image size)",
    )
    ti.add_argument("--channels", type=int, default=None, help="override the preset's base width")
    ti.add_argument("--steps", type=int, default=5000)
    ti.add_argument("--batch-size", type=int, default=128)
    ti.add_argument(
        "--lr", type=float, default=None, help="default 1e-3 (digits preset), 2e-4 (cifar10 preset)"
    )
    ti.add_argument(
        "--warmup", type=int, default=None, help="lr warm-up steps (default min(5000, steps/20))"
    )
    ti.add_argument(
        "--ema",
        type=float,
        default=None,
        help="EMA decay, 0: off (default 0.999 digits, 0.9999 cifar10)",
    )
    ti.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance weight for sampling"
    )
    ti.add_argument(
        "--nfe", type=int, nargs="+", default=[10, 20, 100], help="Euler steps to score (digits)"
    )
    ti.add_argument("--no-dopri5", action="store_true", help="do not score dopri5 sampling")
    ti.add_argument(
        "--grid-steps",
        type=int,
        default=None,
        metavar="N",
        help="Euler steps for samples.png (default 100; 10 with --random-data)",
    )
    ti.add_argument("--unconditional", action="store_true", help="ignore the labels")
    ti.add_argument(
        "--random-data",
        type=int,
        default=0,
        metavar="N",
        help="train on N random CIFAR-shaped images instead (a recipe check: steps/s and memory)",
    )
    ti.add_argument("--seed", type=int, default=0)
    ti.add_argument("--checkpoint-every", type=int, default=1000)
    ti.add_argument("--resume", action="store_true")
    ti.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    add_global_coupling(ti)
    ti.add_argument("--quiet", action="store_true")
    ti.set_defaults(func=_train_images)
