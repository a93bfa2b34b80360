"""Command line: ``cellflow demo``, ``cellflow bench toy``, ``cellflow bench throughput``."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, steps=args.steps, seed=args.seed, progress=not args.quiet)
    return 0


def _bench_toy(args) -> int:
    from .bench.toy import run

    run(steps=args.steps, seeds=args.seeds, methods=args.methods, batch_size=args.batch_size, n_test=args.n_test,
        sigma=args.sigma, sb_sigma=args.sb_sigma, out=args.out)
    return 0


def _bench_throughput(args) -> int:
    from .bench.throughput import run

    run(steps=args.steps, repeats=args.repeats, batch=args.batch_size, threads=args.threads,
        accuracy_steps=args.accuracy_steps, n_test=args.n_test)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cellflow", description="Conditional flow matching for cells and beyond.")
    p.add_argument("--version", action="version", version=f"cellflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train OT-CFM and I-CFM on the embedded 2-D default; write figures and a table")
    d.add_argument("--out", default="cellflow_out", help="output folder (default: cellflow_out)")
    d.add_argument("--steps", type=int, default=3000, help="training steps per model (default 3000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

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
    s.set_defaults(func=_bench_throughput)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"cellflow: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
