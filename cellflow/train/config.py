"""Training settings and the record of a run: :class:`TrainConfig` and :class:`TrainHistory`.

:class:`cellflow.train.trainer.Trainer` takes the one and returns the other; every model's ``train``
or ``fit`` forwards its optimisation keywords into a :class:`TrainConfig` (both are re-exported
from :mod:`cellflow.train.trainer`).

Example
-------
>>> from cellflow.train.config import TrainConfig
>>> TrainConfig(steps=500, ema_decay=0.999).lr
0.001
>>> TrainConfig(ema_decay=1.5)
Traceback (most recent call last):
...
ValueError: ema_decay must be in (0, 1), got 1.5.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

from .._defaults import STEPS

__all__ = ["TrainConfig", "TrainHistory", "check_batch_size", "check_steps"]


def _whole(value) -> bool:
    """A whole number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """``batch_size`` as an int >= 1, or a ``ValueError`` that names the argument."""
    if not _whole(batch_size) or batch_size < 1:
        raise ValueError(
            f"{name} must be a whole number >= 1 (cells drawn per time point per step), "
            f"got {batch_size!r}."
        )
    return int(batch_size)


def check_steps(steps) -> int:
    """``steps`` as an int >= 1: an untrained network's answers are noise."""
    if not _whole(steps) or steps < 1:
        raise ValueError(
            f"steps must be a whole number >= 1 (an untrained network's answers are noise), "
            f"got {steps!r}."
        )
    return int(steps)


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes
    ----------
    steps
        Number of optimiser steps.
    lr, weight_decay
        AdamW learning rate and weight decay.
    grad_clip
        Clip the gradient norm to this value (``None``: no clipping).
    ema_decay
        Keep an exponential moving average of the weights with this decay (``None``: off),
        warmed up as in :func:`cellflow.train.optim.warm_ema`; the averaged weights are used for
        inference and
        validation.
    warmup_steps
        Linear learning-rate warm-up from 0.
    val_every
        Run the validation function every this many steps (0: never).
    patience
        Early stopping: stop after this many validations without improvement and
        restore the best weights (``None``: never stop early).
    prefetch
        Number of batches drawn ahead by worker threads (0: inline, in the training thread).
    workers
        Number of worker threads drawing batches (their OT solves run in parallel).
    group
        Batch functions split between the threads (exact OT on points): the solves of this
        many consecutive steps go to a worker as one task, one compiled call
        (:meth:`cellflow.couplings.PointsSolve.together`), so the worker wakes and takes
        the GIL once per ``group`` steps; ``prefetch`` is then at least two groups. The
        batches, and so the weights, are the same for every value.
    step_threads
        Torch intra-op threads while batch workers run and the modules are on the CPU
        (``None``: unchanged); restored afterwards. Models whose workers solve exact OT set
        it to ``max(1, threads - workers)``
        (:func:`cellflow.train.batch_workers.worker_step_threads`), so that the solves
        get cores of their own instead of sharing them with the step's thread pool.
    threads
        Torch intra-op threads for the whole run (``None``: :mod:`cellflow.train.threads`' policy,
        one
        thread unless ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` says otherwise).
    progress
        Show a tqdm progress bar.
    shared_draws
        Distributed training: every rank draws from the generator of ``(seed, step)`` (the
        same global batch) instead of ``(seed, step, rank)``, for a global coupling whose
        batch function keeps the rank's own share (:func:`cellflow.train.distributed.rank_share`).
    checkpoint_every, checkpoint_dir
        Write a checkpoint every this many steps to this folder;
        :meth:`cellflow.train.trainer.Trainer.run` with ``resume=True``
        continues from it.
    """

    steps: int = STEPS
    lr: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip: float | None = None
    ema_decay: float | None = None
    warmup_steps: int = 0
    val_every: int = 0
    patience: int | None = None
    prefetch: int = 0
    workers: int = 1
    group: int = 16
    step_threads: int | None = None
    threads: int | None = None
    progress: bool = True
    shared_draws: bool = False
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None

    def __post_init__(self):
        check_steps(self.steps)
        if self.group < 1:
            raise ValueError(f"group must be >= 1 (steps per worker task), got {self.group}.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}.")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError("checkpoint_every needs a checkpoint_dir.")


@dataclass
class TrainHistory:
    """What happened during training: the loss every step, validations, time."""

    loss: list[float] = field(default_factory=list)
    val: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict:
        return asdict(self)

    def __repr__(self) -> str:  # the losses are in .loss; printing them all helps no one
        if not self.loss:
            return "TrainHistory(steps=0)"
        tail = self.loss[-min(50, len(self.loss)) :]
        extra = f", best_step={self.best_step}" if self.best_step is not None else ""
        extra += ", stopped_early=True" if self.stopped_early else ""
        return (
            f"TrainHistory(steps={self.steps}, loss first={self.loss[0]:.4g}, "
            f"last 50 mean={sum(tail) / len(tail):.4g}, seconds={self.seconds:.1f}{extra})"
        )
