"""What every cellflow model shares, written once: :class:`ModelBase`, the base of
:class:`cellflow.FlowModel` and :class:`cellflow.CellFlow` (and, through ``FlowModel``, of the
image and table generators), and the training glue it uses: the settings of a run
(:func:`training_config`), the run itself with its seed, its distributed wrappers and the weight
average copied back (:meth:`ModelBase._run_training`), and the module a loss calls
(:meth:`ModelBase._in_training`).

A model brings what is its own, its batches, its loss and the files it saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .._io import model_folder
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

__all__ = ["ModelBase", "training_config"]


class ModelBase:
    """The base of every cellflow model: its networks by name (:attr:`modules`: ``net`` and, for a
    model that learns a score, ``score_net``), training through :meth:`_run_training`, and
    :meth:`save`, which writes the folder whole or not at all. A model sets ``net``,
    ``score_net`` (and ``growth_net``) and ``seed``, and writes its files in
    :meth:`_write_files`."""

    net = None
    score_net = None
    growth_net = None
    seed: int = 0

    @property
    def modules(self) -> dict:
        """The trained networks by name: ``{"net": ...}``, plus ``"score_net"`` and
        ``"growth_net"`` when there are."""
        names = ("net", "score_net", "growth_net")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def _in_training(self, name: str):
        """The network ``name`` as a loss must call it: its DDP wrapper while
        :meth:`_run_training` trains distributed, else the network itself."""
        return (getattr(self, "_train_modules", None) or {}).get(name, getattr(self, name))

    def _squared_error(self, name: str, t, x, target, *, weight=None, cond=None):
        r"""The flow-matching regression of every model, element by element: the network
        ``name`` at :math:`(t, x)` against ``target``, :math:`(f_\theta(t, x) - u)^2` for the
        velocity (and growth); with ``weight`` :math:`\lambda` (one per pair), the [SF]2M score
        loss :math:`(\lambda s_\theta - \lambda \nabla\log p_t)^2`, whose weight keeps the
        score's scale, which diverges at the ends of the bridge, out of the gradient. Each model
        reduces it over its pairs (:class:`FlowModel`: the mean; :class:`CellFlow`: each
        interval's mean, summed)."""
        net = self._in_training(name)
        out = net(t, x) if cond is None else net(t, x, cond)
        if weight is not None:
            out, target = weight * out, weight * target
        return (out - target).pow(2)

    def _run_training(
        self,
        make_batch: Callable,
        loss_fn: Callable,
        cfg: TrainConfig,
        *,
        val_fn: Callable[[], float] | None = None,
        resume: bool = False,
        identity: dict | None = None,
    ) -> tuple[TrainHistory, dict | None]:
        """Train :attr:`modules` from ``self.seed``: every random generator is seeded, the loss
        sees the distributed wrappers while the run lasts (:meth:`_in_training`), and afterwards
        the modules hold the weight average when ``cfg.ema_decay`` asks for one. Returns the
        history and that average's state (or ``None``). ``resume`` continues from
        ``cfg.checkpoint_dir``, refusing a checkpoint whose ``identity`` (method, σ, ...)
        differs."""
        modules = self.modules
        seed_everything(self.seed)
        trainer = Trainer(modules, make_batch, loss_fn, cfg, val_fn=val_fn)
        with training_wrappers(self, tuple(modules)):
            history = trainer.run(seed=self.seed, resume=resume, identity=identity)
        state = trainer.inference_state() if trainer.ema else None
        if state is not None:
            for name, module in modules.items():
                module.load_state_dict(state[name])
        return history, state

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the model to the folder ``path``: ``config.json`` (settings, and for a
        :class:`~cellflow.CellFlow` the fingerprint of its data) and the networks' state dicts,
        which load with ``torch.load(..., weights_only=True)``. The folder is written whole
        beside ``path`` and moved into place (:func:`cellflow._io.model_folder`): one that
        holds a model is replaced only with ``overwrite=True``, with no file of the old model
        left; one that holds other files is never replaced."""
        with model_folder(path, overwrite) as tmp:
            self._write_files(tmp)

    def _write_files(self, folder: Path) -> None:
        raise NotImplementedError


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
