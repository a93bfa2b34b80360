"""The training glue that every model shares, written once: the settings of a run
(:func:`training_config`), the run itself with its seed, its distributed wrappers and the weight
average copied back (:func:`run_training`), and the module a loss calls (:func:`module_in_training`).

A model brings what is its own, its batches and its loss; :class:`cellflow.FlowModel` and
:class:`cellflow.CellFlow` (and through ``FlowModel`` the image and table generators) hand them
to these functions.
"""

from __future__ import annotations

from typing import Callable

from ..train.distributed import training_wrappers
from ..train.threads import resolve_threads
from ..train.trainer import (
    TrainConfig,
    Trainer,
    TrainHistory,
    default_prefetch,
    seed_everything,
    worker_step_threads,
)

__all__ = ["training_config", "run_training", "module_in_training"]


def training_config(
    coupling,
    *,
    prefetch: int | None,
    workers: int,
    threads: int | None,
    global_coupling: bool,
    **fields,
) -> TrainConfig:
    """A :class:`~cellflow.train.trainer.TrainConfig` for a model whose batches are coupled by
    ``coupling``: ``prefetch=None`` takes the coupling's default
    (:func:`~cellflow.train.batch_workers.default_prefetch`), and the step gets the threads that
    the batch workers leave (:func:`~cellflow.train.batch_workers.worker_step_threads`).
    ``global_coupling`` draws the same rows on every rank (``shared_draws``); ``fields`` are the
    other settings (steps, lr, ...)."""
    if prefetch is None:
        prefetch = default_prefetch(coupling)
    step_threads = worker_step_threads(coupling, prefetch, workers, resolve_threads(threads))
    return TrainConfig(
        prefetch=prefetch,
        workers=workers,
        threads=threads,
        shared_draws=global_coupling,
        step_threads=step_threads,
        **fields,
    )


def run_training(
    owner,
    modules: dict,
    make_batch: Callable,
    loss_fn: Callable,
    cfg: TrainConfig,
    *,
    val_fn: Callable[[], float] | None = None,
    resume: bool = False,
    identity: dict | None = None,
) -> tuple[TrainHistory, dict | None]:
    """Train ``modules`` (``{"net": ..., "score_net": ...}``) of ``owner`` from ``owner.seed``:
    every random generator is seeded, the loss sees the distributed wrappers while the run lasts
    (:func:`module_in_training`), and afterwards the modules hold the weight average when
    ``cfg.ema_decay`` asks for one. Returns the history and that average's state (or ``None``).
    ``resume`` continues from ``cfg.checkpoint_dir``, refusing a checkpoint whose ``identity``
    (method, σ, ...) differs."""
    seed_everything(owner.seed)
    trainer = Trainer(modules, make_batch, loss_fn, cfg, val_fn=val_fn)
    with training_wrappers(owner, tuple(modules)):
        history = trainer.run(seed=owner.seed, resume=resume, identity=identity)
    state = trainer.inference_state() if trainer.ema else None
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state[name])
    return history, state


def module_in_training(owner, name: str):
    """The module ``owner.<name>`` as a loss must call it: its DDP wrapper while
    :func:`run_training` trains distributed, else the module itself."""
    return (getattr(owner, "_train_modules", None) or {}).get(name, getattr(owner, name))
