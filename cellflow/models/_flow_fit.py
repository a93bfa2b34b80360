r"""How a :class:`~cellflow.models.flow.FlowModel` learns: minibatches drawn from the source and
target, coupled by the model's matcher (in batch-worker threads where the coupling allows), and
the conditional flow-matching regression

.. math:: \mathcal L(\theta) = \mathbb E_{t,\,(x_0,x_1)\sim\pi,\,x_t\sim p_t(\cdot\mid x_0,x_1)}
          \lVert v_\theta(t, x_t) - u_t(x_t \mid x_0, x_1)\rVert^2,

plus, for SB-CFM with a score network, the λ-weighted score regression. :class:`FitMixin` holds
:meth:`~cellflow.models.flow.FlowModel.train` (also ``fit``) and its loss; :func:`as_sampler` turns tensors and
callables into the samplers it draws from.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._defaults import STEPS
from ..train import distributed
from ..train.config import check_batch_size
from ..train.trainer import (
    TrainConfig,
    TrainHistory,
)
from ._base import training_config

__all__ = ["FitMixin", "Sampler", "as_sampler"]

Sampler = Callable[[int, torch.Generator], Tensor]


def as_sampler(data: Tensor | Sampler, name: str) -> tuple[Sampler, int | None]:
    """Turn a tensor (rows drawn with replacement) or a callable ``f(n, generator)`` into a
    sampler returning ``(samples, row_indices)`` for a tensor and ``(samples, conditions or
    None)`` for a callable (which may return ``samples`` or ``(samples, conditions)``)."""
    if callable(data) and not isinstance(data, Tensor):

        def draw(n, g):
            out = data(n, g)
            return out if isinstance(out, tuple) else (out, None)

        return draw, None
    x = torch.as_tensor(data)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (n_samples, ...) with n_samples > 0, got {tuple(x.shape)}."
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; remove or impute them first.")
    x = x.float() if not x.is_floating_point() else x

    def sample(n, g):
        idx = torch.randint(x.shape[0], (n,), generator=g)
        return x[idx], idx

    return sample, x.shape[0]


class FitMixin:
    """Training for :class:`~cellflow.models.flow.FlowModel` (which sets ``net``, ``score_net``,
    ``matcher``, ``seed``, ``dim`` and ``modules``)."""

    def _make_batch_fn(
        self,
        source,
        target,
        batch_size: int,
        ot_batch_size: int | None,
        target_cond: Tensor | None,
        couple_within_labels: bool = True,
        global_coupling: bool = False,
    ):
        draw0, n0 = as_sampler(source, "source")
        draw1, n1 = as_sampler(target, "target")
        if target_cond is not None:
            target_cond = torch.as_tensor(target_cond)
            if n1 is None or target_cond.shape[0] != n1:
                raise ValueError("target_cond needs a target tensor with one condition per row.")
        # a global coupling draws and couples the batch of all ranks, then keeps this rank's share
        world, share = distributed.coupling_group(global_coupling)
        m = max(batch_size, ot_batch_size or batch_size) * world
        matcher = self.matcher
        within = couple_within_labels and self.net.config.get("n_classes", 0) > 0

        def draw(g: torch.Generator):
            x0, _ = draw0(m, g)
            x1, extra = draw1(m, g)
            if x0.shape[1:] != x1.shape[1:] or x0[0].numel() != self.dim:
                raise ValueError(
                    f"source samples {tuple(x0.shape[1:])} and target samples {tuple(x1.shape[1:])} must "
                    f"have the model's {self.dim} features."
                )
            # conditions of the target rows: looked up by row index for a tensor target, or
            # returned by a callable target along with its samples
            cond1 = (
                extra if n1 is None else (target_cond[extra] if target_cond is not None else None)
            )
            for name, x, n in (("source", x0, n0), ("target", x1, n1)):
                # tensors are checked once by as_sampler; a callable's draws, here
                if n is None and x.is_floating_point() and not torch.isfinite(x).all():
                    raise ValueError(
                        f"the {name} sampler returned NaN or inf ({int((~torch.isfinite(x)).sum())} "
                        f"values in a draw of {len(x)}); fix the {name} data or sampler."
                    )
            return x0, x1, cond1

        def finish(s, cond1):
            if world > 1:
                s = distributed.rank_share(s, batch_size, share)
            return s, (cond1[s.i1] if cond1 is not None else None)

        def couple(x0, x1, cond1, g):
            s = matcher.sample(
                x0, x1, n=batch_size * world, groups=cond1 if within else None, generator=g
            )
            return finish(s, cond1)

        def prepare(g: torch.Generator):
            # the training thread draws the batch and the path; a worker only solves the
            # assignment (GIL-free), so the two do not take turns on the GIL for tensor work
            x0, x1, cond1 = draw(g)
            parts = matcher.defer_sample(x0, x1, n=batch_size * world, generator=g)
            if parts is None:  # e.g. batches of unequal size: the whole coupling in the worker
                return (lambda: couple(x0, x1, cond1, g)), (lambda batch: batch)
            solve, finish_sample = parts
            return solve, (lambda result: finish(finish_sample(result), cond1))

        defers = getattr(matcher.coupling, "defers", None)
        split = not within and defers is not None and defers(self.dim)

        def make_batch(g: torch.Generator):
            if split:  # inline: the same two parts, the same draws
                solve, complete = prepare(g)
                return complete(solve())
            return couple(*draw(g), g)

        if split:
            make_batch.prepare = prepare

        return make_batch

    def loss(self, batch) -> Tensor:
        """Flow-matching loss (plus the weighted score loss for SB with a score network)."""
        s, cond = batch
        if s.x_t.device != self.device:
            s = type(s)(**{k: v.to(self.device, non_blocking=True) for k, v in vars(s).items()})
            cond = cond.to(self.device) if cond is not None else None
        v = self._in_training("net")(s.t, s.x_t, cond)
        loss = (v - s.u_t).pow(2).mean()
        if self.score_net is not None:
            score, lam = self.matcher.score_target(s)
            lam = lam.reshape(-1, *([1] * (score.dim() - 1)))
            st = self._in_training("score_net")(s.t, s.x_t, cond)
            loss = loss + (lam * st - lam * score).pow(2).mean()
        return loss

    def train(
        self,
        source: Tensor | Sampler,
        target: Tensor | Sampler,
        *,
        steps: int = STEPS,
        batch_size: int = 256,
        ot_batch_size: int | None = None,
        target_cond: Tensor | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        grad_clip: float | None = None,
        ema_decay: float | None = None,
        warmup_steps: int = 0,
        val_fn: Callable[[FitMixin], float] | None = None,
        val_every: int = 0,
        patience: int | None = None,
        prefetch: int | None = None,
        workers: int = 2,
        group: int = TrainConfig.group,
        progress: bool = True,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        couple_within_labels: bool = True,
        global_coupling: bool = False,
        threads: int | None = None,
    ) -> TrainHistory:
        """Train the flow from ``source`` to ``target``.

        Parameters
        ----------
        source, target
            Tensors of samples (minibatches are drawn with replacement), or callables
            ``f(n, generator) -> Tensor`` that draw fresh samples; a target callable may also
            return ``(samples, conditions)``, whose conditions follow the pairing.
        steps, batch_size
            Optimiser steps and pairs per step.
        ot_batch_size
            Couple minibatches of this size, then train on ``batch_size`` of the pairs.
        target_cond
            Per-row labels or covariates of ``target`` (needs ``n_classes`` or ``cond_dim``);
            they follow their rows through the pairing.
        lr, weight_decay, grad_clip, ema_decay, warmup_steps, val_every, patience, prefetch, workers, group, progress, checkpoint_dir, checkpoint_every, threads
            See :class:`cellflow.train.trainer.TrainConfig` (``threads=None``: one torch thread
            unless you set more, :mod:`cellflow.train.threads`). ``prefetch=None`` (default): 4 batches
            ahead for exact OT couplings, else inline (:func:`cellflow.train.trainer.default_prefetch`);
            exact OT on up to 16 features sends the solves of ``group`` steps to a worker as one
            task, two groups ahead.
        val_fn
            ``val_fn(model) -> float`` (lower is better), for validation and early stopping.
        resume
            Continue from the checkpoint in ``checkpoint_dir``.
        couple_within_labels
            With class labels (``n_classes``) and an OT or SB coupling, couple each class's
            target rows with their own slice of the source batch (default; see ``groups`` in
            :meth:`cellflow.flow.matchers.FlowMatcher.sample`).
        global_coupling
            Distributed training only: couple one global batch of ``world_size × batch_size``
            rows (drawn alike on every rank), each rank training on its own share of the
            pairs, instead of each rank coupling its own batch (see :mod:`cellflow.train.distributed`).
        """
        batch_size = check_batch_size(batch_size)
        if ot_batch_size is not None:
            ot_batch_size = check_batch_size(ot_batch_size, "ot_batch_size")
        cfg = training_config(
            self.matcher.coupling,
            prefetch=prefetch,
            workers=workers,
            threads=threads,
            global_coupling=global_coupling,
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            ema_decay=ema_decay,
            warmup_steps=warmup_steps,
            val_every=val_every,
            patience=patience,
            group=group,
            progress=progress,
            checkpoint_every=checkpoint_every,
            checkpoint_dir=checkpoint_dir,
        )
        make_batch = self._make_batch_fn(
            source,
            target,
            batch_size,
            ot_batch_size,
            target_cond,
            couple_within_labels,
            global_coupling,
        )
        self.history, self._ema_state = self._run_training(
            make_batch,
            self.loss,
            cfg,
            val_fn=(lambda: val_fn(self)) if val_fn is not None else None,
            resume=resume,
            identity={"method": self.method, "sigma": float(self.sigma)},
        )
        self.train_config = cfg
        return self.history

    #: the same method under its former name: every cellflow model trains with ``train``
    fit = train
