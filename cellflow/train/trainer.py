"""The training loop shared by every model: AdamW, warm-up, gradient clipping, EMA,
periodic validation with early stopping, checkpoints to resume from, and a batch worker.

A model hands the :class:`Trainer` three things: its modules, a ``make_batch(generator)``
that draws one training batch (data, pairing, ``t`` and noise) using *only* that
generator, and a ``loss_fn(batch)``. Each step's generator is seeded from ``(seed, step)``
(:func:`step_generator`), so the batch workers (``prefetch > 0``), which draw the next
batches — including their OT couplings — in background threads while the current step
trains, give exactly the same weights as the inline loop, and a resumed run the same
weights as an uninterrupted one. A ``make_batch`` with a ``prepare`` attribute is split
between the threads (``_BatchPool``, :mod:`cellflow.train.batch_workers`): exact OT on points sends
only its GIL-free
solve to a worker, and its tensor work stays in the training thread.

Example
-------
>>> import torch
>>> from cellflow.train.trainer import TrainConfig, Trainer
>>> net = torch.nn.Linear(1, 1)
>>> make = lambda g: torch.randn(32, 1, generator=g)
>>> loss = lambda x: ((net(x) - 2 * x) ** 2).mean()
>>> config = TrainConfig(steps=300, lr=0.05, progress=False)
>>> hist = Trainer({"net": net}, make, loss, config).run(seed=0)
>>> round(net.weight.detach().item(), 1)
2.0
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .._io import torch_save, write_json
from . import distributed
from .batch_workers import _BatchPool, default_prefetch, step_generator, worker_step_threads
from .config import TrainConfig, TrainHistory
from .optim import adamw, warm_ema
from .threads import thread_scope

__all__ = [
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "seed_everything",
    "step_generator",
    "default_prefetch",
    "worker_step_threads",
]  # the last three: from batch_workers; TrainConfig and TrainHistory: from
# train_config; the optimiser and the weight average: cellflow.train.optim


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (weight initialisation, dropout).

    Every training draw (batches, couplings, ``t``, noise) uses the per-step generator of
    :func:`step_generator` instead, derived from the same seed.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, or a clear error when PyTorch cannot use it."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r}, but this PyTorch ({torch.__version__}) sees no CUDA GPU; use "
                "device='cpu', or install a CUDA build of PyTorch on a machine with a GPU."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}, but only {torch.cuda.device_count()} CUDA device(s) are "
                "visible."
            )
    return dev


class Trainer:
    """Runs the optimisation of a set of modules.

    Parameters
    ----------
    modules
        Named modules whose parameters are trained together.
    make_batch
        ``make_batch(generator) -> batch``; must draw all randomness from ``generator``.
    loss_fn
        ``loss_fn(batch) -> scalar tensor``.
    config
        A :class:`TrainConfig`.
    val_fn
        Optional ``val_fn() -> float`` (lower is better), called with the inference
        weights (EMA if enabled) loaded.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        make_batch: Callable[[torch.Generator], Any],
        loss_fn: Callable[[Any], torch.Tensor],
        config: TrainConfig,
        val_fn: Callable[[], float] | None = None,
    ):
        self.modules = dict(modules)
        self.make_batch = make_batch
        self.loss_fn = loss_fn
        self.config = config
        self.val_fn = val_fn
        params = [p for m in self.modules.values() for p in m.parameters()]
        self.optimizer = adamw(params, lr=config.lr, weight_decay=config.weight_decay)
        warm = max(int(config.warmup_steps), 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        self.ema: dict[str, AveragedModel] = {}
        if config.ema_decay is not None:
            self.ema = {
                k: AveragedModel(m, multi_avg_fn=warm_ema(config.ema_decay))
                for k, m in self.modules.items()
            }
        self.step = 0
        self.history = TrainHistory()

    # ------------------------------------------------------------------ weights
    def inference_state(self) -> dict[str, dict]:
        """State dicts of the weights used for inference (the EMA ones when enabled)."""
        if self.ema:
            return {k: copy.deepcopy(e.module.state_dict()) for k, e in self.ema.items()}
        return {k: copy.deepcopy(m.state_dict()) for k, m in self.modules.items()}

    def _swap_in(self, states: dict[str, dict]) -> dict[str, dict]:
        backup = {k: copy.deepcopy(m.state_dict()) for k, m in self.modules.items()}
        for k, m in self.modules.items():
            m.load_state_dict(states[k])
        return backup

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path:
        return Path(self.config.checkpoint_dir) / "checkpoint.pt"

    def save_checkpoint(self, identity: dict | None = None) -> None:
        """Write ``checkpoint.pt`` (weights, optimiser, RNG, losses) and ``checkpoint.json``
        (step, validation losses and ``identity``: the settings a resumed run must share),
        each atomically."""
        path = self._checkpoint_path()
        state = {
            "step": self.step,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "ema": {k: e.state_dict() for k, e in self.ema.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loss": torch.tensor(self.history.loss, dtype=torch.float64),
        }
        torch_save(state, path)
        write_json(
            path.parent / "checkpoint.json",
            {"step": self.step, "val": self.history.val, "identity": identity or {}},
        )

    def load_checkpoint(self, identity: dict | None = None) -> bool:
        """Restore the state written by :meth:`save_checkpoint`; ``False`` when there is none.
        Raises if the checkpoint was written by a run with other ``identity`` settings (another
        seed or method), whose state would silently mix with this run's."""
        path = self._checkpoint_path()
        if not path.exists():
            return False
        meta_path = path.parent / "checkpoint.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        saved = meta.get("identity") or {}
        differ = [
            f"{k}: checkpoint {saved[k]!r}, this run {v!r}"
            for k, v in (identity or {}).items()
            if k in saved and saved[k] != v
        ]
        if differ:
            raise ValueError(
                f"the checkpoint in {path.parent} was written by another run "
                f"({'; '.join(differ)}); "
                "resume with the same settings, or give another checkpoint_dir to start afresh."
            )
        state = torch.load(path, weights_only=True)
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, e in self.ema.items():
            e.load_state_dict(state["ema"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.history.loss = state["loss"].tolist()
        self.history.val = [tuple(v) for v in meta.get("val", [])]
        return True

    # ------------------------------------------------------------------ loop
    def run(
        self, seed: int = 0, *, resume: bool = False, identity: dict | None = None
    ) -> TrainHistory:
        """Train for ``config.steps`` steps (from a checkpoint when ``resume``). ``identity``
        (e.g. method, σ, network) is written with each checkpoint, together with ``seed``, and a
        resumed run must match it. Runs on ``config.threads`` intra-op threads
        (:mod:`cellflow.train.threads`: one unless the user asks), and restores the caller's
        count."""
        with thread_scope(self.config.threads) as n:
            return self._run(seed, resume, identity, n)

    def _run(self, seed: int, resume: bool, identity: dict | None, n_threads: int) -> TrainHistory:
        cfg = self.config
        identity = {"seed": int(seed), **(identity or {})}
        self._identity = identity
        if resume:
            if not cfg.checkpoint_dir:
                raise ValueError(
                    "resume=True needs checkpoint_dir, the folder the checkpoints are written to."
                )
            if not self.load_checkpoint(identity):
                raise FileNotFoundError(
                    f"resume=True but {self._checkpoint_path()} does not exist; train without "
                    "resume to start afresh, or give the checkpoint_dir of the run to continue."
                )
        for m in self.modules.values():
            m.train()
        pool = None
        main = distributed.is_main()
        rank = 0 if cfg.shared_draws else distributed.rank()  # the generator of the step's draws
        if cfg.prefetch and self.step < cfg.steps:
            pool = _BatchPool(
                self.make_batch,
                seed,
                self.step,
                cfg.steps,
                cfg.prefetch,
                cfg.workers,
                rank,
                cfg.group,
            )
        best, best_states, bad = float("inf"), None, 0
        threads = torch.get_num_threads()
        if (
            pool is not None
            and cfg.step_threads
            and all(p.device.type == "cpu" for m in self.modules.values() for p in m.parameters())
        ):
            torch.set_num_threads(min(int(cfg.step_threads), n_threads))
        start = time.perf_counter()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (cfg.progress and main),
            desc="training",
            leave=False,
        )
        first = self.step
        try:
            while self.step < cfg.steps:
                batch = (
                    pool.get()
                    if pool is not None
                    else self.make_batch(step_generator(seed, self.step, rank=rank))
                )
                if self.step == first:
                    # the first batch may include one-off work (numba compiles the exact-OT solver
                    # on first
                    # use, about 10 s): keep it out of the bar's rate, which would show an ETA of
                    # hours
                    bar.unpause()
                loss = self.loss_fn(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss.item()} at step {self.step}; lower lr, set "
                        "grad_clip, "
                        "or check the data for NaN/inf."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(
                        [p for m in self.modules.values() for p in m.parameters()], cfg.grad_clip
                    )
                self.optimizer.step()
                self.scheduler.step()
                for k, e in self.ema.items():
                    e.update_parameters(self.modules[k])
                self.step += 1
                self.history.loss.append(loss.item())
                bar.update(1)
                if self.step % 50 == 0:
                    bar.set_postfix(loss=f"{np.mean(self.history.loss[-50:]):.4g}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and main:
                    self.save_checkpoint(self._identity)
                if self.val_fn is not None and cfg.val_every and self.step % cfg.val_every == 0:
                    value = self._validate()
                    self.history.val.append((self.step, value))
                    if value < best:
                        best, best_states, bad = value, self.inference_state(), 0
                        self.history.best_step = self.step
                    else:
                        bad += 1
                        if cfg.patience is not None and bad >= cfg.patience:
                            self.history.stopped_early = True
                            break
        finally:
            bar.close()
            if pool is not None:
                pool.close()
            torch.set_num_threads(threads)
        if best_states is not None and cfg.patience is not None:
            self._restore_inference(best_states)
        self.history.seconds += time.perf_counter() - start
        for m in self.modules.values():
            m.eval()
        return self.history

    def _validate(self) -> float:
        backup = self._swap_in(self.inference_state()) if self.ema else None
        for m in self.modules.values():
            m.eval()
        try:
            with torch.no_grad():
                return float(self.val_fn())
        finally:
            if backup is not None:
                self._swap_in(backup)
            for m in self.modules.values():
                m.train()

    def _restore_inference(self, states: dict[str, dict]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(states[k])
        for k, e in self.ema.items():
            e.module.load_state_dict(states[k])
