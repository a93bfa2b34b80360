"""How many CPU threads torch uses while cellflow trains and integrates: one, unless you ask.

cellflow's networks are small (an MLP of three layers of 64 on a few thousand cells per step),
so each torch operation is short. With several intra-op threads, every operation ends at a
barrier where the threads wait for each other. On an idle machine that costs little. When
another process holds one of the cores (a Jupyter kernel, a second analysis, CI), the thread
that lost its core makes every barrier wait a scheduler slice, and training collapses, while
one thread runs as fast as on an idle machine (measured in the method guide, "Threads", with
``cellflow bench throughput --busy 1``).

So training (:class:`cellflow.train.trainer.Trainer`, and with it every model's ``fit``/``train``)
and inference (pushes, velocities, sampling) run on **one** intra-op thread by default, and
restore the caller's setting afterwards, also after an exception. What the user set is kept:

- an explicit ``threads=N`` (to ``fit``, ``train`` or :func:`set_threads`);
- otherwise ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in the environment;
- otherwise a ``torch.set_num_threads`` call made after cellflow was imported (any value
  other than the one torch had then).

The thread count changes how floating-point sums are split, so weights trained with 1 and 2
threads differ in the last bits; one seed gives the same weights, bit for bit, for one thread
setting, and the policy picks the same setting every time.

Example
-------
>>> import torch
>>> from cellflow.train.threads import thread_scope
>>> before = torch.get_num_threads()
>>> with thread_scope():
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager

import torch

__all__ = ["resolve_threads", "set_threads", "thread_scope", "scoped_threads"]

_TORCH_AT_IMPORT = torch.get_num_threads()
_DEFAULT: int | None = None


def set_threads(threads: int | None) -> None:
    """Set the thread count cellflow uses when none is passed (``None``: the policy above)."""
    global _DEFAULT
    _DEFAULT = _check(threads)


def _check(threads) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"threads must be a whole number >= 1 or None (cellflow's policy), got {threads!r}."
        )
    return threads


def resolve_threads(threads: int | None = None) -> int:
    """The intra-op thread count for cellflow's work: ``threads`` if given, else
    :func:`set_threads`'s, else the user's environment or ``torch.set_num_threads`` setting,
    else 1."""
    threads = _check(threads)
    if threads is not None:
        return threads
    if _DEFAULT is not None:
        return _DEFAULT
    current = torch.get_num_threads()
    if (
        os.environ.get("OMP_NUM_THREADS")
        or os.environ.get("MKL_NUM_THREADS")
        or current != _TORCH_AT_IMPORT
    ):
        return current
    return 1


@contextmanager
def thread_scope(threads: int | None = None):
    """Run the block on :func:`resolve_threads` threads; the caller's count is restored after."""
    before = torch.get_num_threads()
    n = resolve_threads(threads)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def scoped_threads(method):
    """Decorate a model method so that it runs in :func:`thread_scope` of its ``threads=``
    keyword if it has one, else of the model's ``threads`` attribute (``None``: the policy)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with thread_scope(kwargs.get("threads", getattr(self, "threads", None))):
            return method(self, *args, **kwargs)

    return wrapper
