"""Command line: ``cellflow demo``, ``cellflow fit``, ``cellflow evaluate``, ``cellflow train
images|tabular``,
``cellflow bench ...``.

Each command's arguments and handler live beside the others of its kind: ``_cells.py`` (demo, fit,
evaluate), ``_bench.py`` and ``_train.py``; options that several commands share, in ``_options.py``.
"""

from __future__ import annotations

import argparse
import pickle
import sys

from .. import __version__
from . import _bench, _cells, _train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cellflow", description="Conditional flow matching for cells and beyond."
    )
    p.add_argument("--version", action="version", version=f"cellflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _cells.add_commands(sub)
    _bench.add_commands(sub)
    _train.add_commands(sub)
    _show_defaults(p)
    return p


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _parsers(child)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """End every option's help with its default, as ``argparse.ArgumentDefaultsHelpFormatter``
    would, also for options without a help text; on/off switches that are off by default and
    options whose help already says what the default means are left as they are."""
    for p in _parsers(parser):
        for action in p._actions:
            d = action.default
            if (
                not action.option_strings
                or d is None
                or d is False
                or d == argparse.SUPPRESS
                or "default" in (action.help or "").lower()
                or action.help == argparse.SUPPRESS
            ):
                continue
            shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)
            action.help = f"{action.help or ''} (default: {shown.replace('%', '%%')})".lstrip()


def _interrupted(args, argv: list[str]) -> int:
    """Ctrl-C: one line, no traceback, exit status 130 (128 + SIGINT) and, for ``evaluate``,
    the command that continues (its table holds every row finished; the row in hand is
    dropped whole, since the table is rewritten atomically after each row)."""
    import shlex

    msg = "cellflow: interrupted."
    if args.command == "evaluate":
        again = list(argv) + ([] if "--resume" in argv else ["--resume"])
        msg += (
            f" {args.out} holds the rows finished so far; continue with:\n  cellflow "
            + " ".join(shlex.quote(a) for a in again)
        )
    print(msg, file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command in (
        "train",
        "fit",
    ):  # under torchrun: join the process group (see cellflow.train.distributed)
        from ..train.distributed import init_from_env

        init_from_env(getattr(args, "device", "cpu"))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted(args, argv)
    except OSError as e:  # one line that names the path and the problem, never a bare errno
        if e.strerror and e.errno is not None:
            where = f"{e.filename}: " if e.filename else ""
            msg = f"{where}{e.strerror}" + (f" (-> {e.filename2})" if e.filename2 else "")
        else:
            msg = e.args[0] if e.args else str(e)
        print(f"cellflow: error: {msg}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, pickle.UnpicklingError) as e:
        # UnpicklingError: a file that is not plain tensors (or a CIFAR batch), refused unread
        print(f"cellflow: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
