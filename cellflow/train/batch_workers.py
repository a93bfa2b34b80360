"""Batch workers: the batches of the coming training steps, drawn ahead in threads.

Each step's batch is drawn from its own generator, seeded from ``(seed, step)``
(:func:`step_generator`), so a batch does not depend on which thread drew it: the weights
equal those of the inline loop. :class:`cellflow.train.trainer.Trainer` uses :class:`_BatchPool`
with ``prefetch > 0``; :func:`default_prefetch` and :func:`worker_step_threads` pick how many
batches go ahead and how many threads the step keeps.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

__all__ = ["step_generator", "default_prefetch", "worker_step_threads"]


def default_prefetch(coupling) -> int:
    """Batches to draw ahead in worker threads by default: 4 when the coupling's plan is CPU
    solver work that releases the GIL (``coupling.solves_on_cpu``, exact OT), which then runs
    in parallel with the step; else 0 (inline), since the workers' torch work would only
    compete with the step for the cores and the GIL (``tutorials/speed_history.md``). A batch
    function split between the threads (exact OT on
    points) keeps at least two groups of :attr:`TrainConfig.group` steps queued instead."""
    return 4 if getattr(coupling, "solves_on_cpu", False) else 0


def worker_step_threads(
    coupling, prefetch: int, workers: int, total: int | None = None
) -> int | None:
    """Intra-op threads for the step while batch workers draw batches with ``coupling``: the
    cores the workers leave (at least 1) when its plan is CPU solver work
    (``coupling.solves_on_cpu``, exact OT), else ``None`` (unchanged), as for inline
    training. ``total``: the threads the run has (default: torch's current count). Leaving the
    workers their core
    is faster on 2 cores (``cellflow bench throughput``)."""
    if not (prefetch and getattr(coupling, "solves_on_cpu", False)):
        return None
    return max(1, (torch.get_num_threads() if total is None else int(total)) - max(1, workers))


def step_generator(
    seed: int, step: int, device: str | torch.device = "cpu", rank: int = 0
) -> torch.Generator:
    """The generator of one training step: seeded from ``(seed, step)`` alone, so a batch
    does not depend on which thread drew it, nor on how many were drawn ahead, and a run
    resumed at step k draws exactly what the uninterrupted run drew. In distributed training,
    rank ``r > 0`` draws from ``(seed, step, r)``: its own minibatch."""
    entropy = [int(seed), int(step)] + ([int(rank)] if rank else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


class _BatchPool:
    """Draws the batches of the coming steps in worker threads (the OT solvers and torch
    release the GIL), handing them out in step order.

    A batch function with a ``prepare`` attribute is split: ``prepare(generator)`` runs in
    the training thread when the step is queued and returns ``(job, finish)``; ``job()`` runs
    in a worker and ``finish(job())`` in the training thread when the step comes, and equals
    ``make_batch(generator)``. Only GIL-free work (an assignment solve) then leaves the
    training thread: tensor work in a worker would take turns with the step on the GIL.
    The jobs of ``group`` consecutive steps go to a worker as one task, through the jobs'
    ``together(jobs)`` where they have one (one compiled call for all of them), so that the
    worker wakes and takes the GIL once per ``group`` steps; ``depth`` steps (at least two
    groups) are kept queued.
    """

    def __init__(
        self,
        make_batch: Callable,
        seed: int,
        first: int,
        last: int,
        depth: int,
        workers: int,
        rank: int = 0,
        group: int = 1,
    ):
        self.make_batch, self.seed, self.last, self.rank = make_batch, seed, last, rank
        self.prepare = getattr(make_batch, "prepare", None)
        self.group = max(1, int(group)) if self.prepare is not None else 1
        # grouped: at least two groups queued, so that one is solved while the other is used
        self.depth = max(1, depth) if self.group == 1 else max(depth, 2 * self.group)
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="cellflow-batch"
        )
        self.pending: deque = (
            deque()
        )  # (future, index in its task's results or None, finish or None)
        self.next = first
        try:
            self._fill()
        except BaseException:
            self.close()
            raise

    def _fill(self):
        while (
            self.next < self.last
            and len(self.pending) + min(self.group, self.last - self.next) <= self.depth
        ):
            self._submit()

    def _submit(self):
        if self.prepare is None:
            g = step_generator(self.seed, self.next, rank=self.rank)
            self.pending.append((self.pool.submit(self.make_batch, g), None, None))
            self.next += 1
            return
        parts = []
        while self.next < self.last and len(parts) < self.group:
            parts.append(self.prepare(step_generator(self.seed, self.next, rank=self.rank)))
            self.next += 1
        jobs = [job for job, _ in parts]
        together = getattr(jobs[0], "together", None)
        if (
            len(jobs) > 1
            and together is not None
            and all(getattr(j, "together", None) == together for j in jobs)
        ):
            fut = self.pool.submit(together, jobs)
        else:
            fut = self.pool.submit(lambda: [job() for job in jobs])
        self.pending.extend((fut, k, finish) for k, (_, finish) in enumerate(parts))

    def get(self):
        fut, k, finish = self.pending.popleft()
        self._fill()
        result = fut.result()
        return result if finish is None else finish(result[k])

    def close(self):
        for f, _, _ in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
