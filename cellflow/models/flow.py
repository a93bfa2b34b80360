r"""`FlowModel`: learn a flow from a source to a target distribution of vectors.

The model is the engine behind the image and table generators; what every model shares is in
:mod:`cellflow.models._base`.

Example
-------
>>> import torch
>>> import cellflow as cf
>>> from cellflow.datasets import toy_sample
>>> model = cf.FlowModel(dim=2, method="ot", seed=0)
>>> hist = model.train(lambda n, g: toy_sample("8gaussians", n, generator=g),
...                  lambda n, g: toy_sample("moons", n, generator=g), steps=20, progress=False)
>>> model.push(toy_sample("8gaussians", 10)).shape
torch.Size([10, 2])

**Training** (:meth:`FlowModel.train`, also ``fit``). Minibatches are drawn from the source and
target, coupled by the model's matcher (in batch-worker threads where the coupling allows), and
the network regresses the conditional flow-matching target

.. math:: \mathcal L(\theta) = \mathbb E_{t,\,(x_0,x_1)\sim\pi,\,x_t\sim p_t(\cdot\mid x_0,x_1)}
          \lVert v_\theta(t, x_t) - u_t(x_t \mid x_0, x_1)\rVert^2,

plus, for SB-CFM with a score network, the λ-weighted score regression. :func:`as_sampler`
turns tensors and callables into the samplers it draws from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Normal

from .._defaults import HIDDEN, STEPS
from .._io import IncompleteModelError, load_weights, read_model_config, write_json
from .._types import Method, Solver
from ..flow.likelihood import log_likelihood
from ..flow.matchers import make_matcher
from ..flow.methods import method_spec
from ..flow.networks import build_network
from ..flow.solvers import FIXED_STEP, Trajectory, integrate_ode, integrate_sde, solver_argument
from ..train import distributed
from ..train.config import check_batch_size
from ..train.threads import scoped_threads
from ..train.trainer import TrainConfig, TrainHistory, check_device
from ._base import ModelBase, training_config

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


__all__ = ["FlowModel", "Sampler", "as_sampler"]

FORMAT_VERSION = 1


class FlowModel(ModelBase):
    """A conditional flow-matching model for vectors: one network :math:`v_\\theta(t, x)` and,
    for SB-CFM, an optional score network :math:`s_\\theta(t, x)`.

    Parameters
    ----------
    dim
        Number of features.
    method
        ``"ot"`` (OT-CFM, default), ``"icfm"``, ``"sb"``, ``"fm"`` (from N(0, I) only), ``"vp"``.
    sigma
        Path noise σ (default per method: 0.1, SB 1.0, FM 0).
    hidden, activation
        MLP widths and activation (paper default: three layers of 64, SELU).
    cond_dim, n_classes
        Condition the field on covariates or on class labels of the *target* samples.
    train_score
        Also train a score network (SB only; default True for SB) to sample the SDE.
    seed
        Seeds weight initialisation and every training draw.
    coupling_kwargs
        Passed to the coupling (e.g. ``{"replace": True}``).
    device
        Where the networks train and integrate (``"cpu"``, ``"cuda"``, ...). Batches and their
        couplings are drawn on the CPU by the batch workers, then moved.
    network
        Another network by its config instead of the MLP, e.g.
        ``{"kind": "unet", "shape": (1, 8, 8), ...}`` (see
        :func:`cellflow.flow.networks.build_network`);
        ``hidden``, ``activation``, ``cond_dim`` and ``n_classes`` are then ignored.
    """

    def __init__(
        self,
        dim: int,
        method: Method = "ot",
        sigma: float | None = None,
        *,
        hidden: tuple[int, ...] = HIDDEN,
        activation: str = "selu",
        cond_dim: int = 0,
        n_classes: int = 0,
        train_score: bool | None = None,
        seed: int = 0,
        coupling_kwargs: dict | None = None,
        device: str | torch.device = "cpu",
        network: dict | None = None,
    ):
        self.device = check_device(device)
        spec = method_spec(method)
        self.method = spec.name
        self.sigma = float(spec.sigma if sigma is None else sigma)
        self.coupling_kwargs = dict(coupling_kwargs or {})
        self.matcher = make_matcher(self.method, self.sigma, **self.coupling_kwargs)
        self.seed = int(seed)
        train_score = self.matcher.has_score if train_score is None else bool(train_score)
        if train_score and not self.matcher.has_score:
            raise ValueError("train_score=True needs method='sb' (only the SB path has a score).")
        torch.manual_seed(self.seed)
        if network is not None:
            net_cfg = dict(network)
            net_cfg.setdefault("dim", int(dim))
        else:
            net_cfg = dict(
                dim=int(dim),
                hidden=list(hidden),
                activation=activation,
                cond_dim=cond_dim,
                n_classes=n_classes,
            )
        self.net = build_network(net_cfg).to(self.device)
        if self.dim != int(dim):
            raise ValueError(f"the network has {self.dim} features but dim={dim}.")
        self.score_net = build_network(net_cfg).to(self.device) if train_score else None
        self.history: TrainHistory | None = None
        self.train_config: TrainConfig | None = None
        self._ema_state: dict | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self.net.config["dim"]

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the model (JSON-serialisable)."""
        return {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "method": self.method,
            "sigma": self.sigma,
            "seed": self.seed,
            "net": self.net.config,
            "train_score": self.score_net is not None,
            "coupling_kwargs": self.coupling_kwargs,
        }

    # ------------------------------------------------------------------ inference
    def velocity(self, t: Tensor | float, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned vector field :math:`v_\\theta(t, x)`."""
        return self.net(t, x, cond)

    def score(self, t: Tensor | float, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The learned score :math:`s_\\theta(t, x)` (SB models with a score network)."""
        if self.score_net is None:
            raise ValueError(
                "this model has no score network; build it with method='sb', train_score=True."
            )
        return self.score_net(t, x, cond)

    def _field(self, cond):
        return lambda t, x: self.net(t, x, cond)

    @scoped_threads
    def push(
        self,
        x0: Tensor,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        solver: Solver = "dopri5",
        steps: int | None = None,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        cond: Tensor | None = None,
        n_points: int | None = None,
        return_trajectory: bool = False,
        method: str | None = None,
    ) -> Tensor | Trajectory:
        """Push ``x0`` from time ``t0`` to ``t1`` along the ODE (backwards if ``t1 < t0``), with
        the ODE ``solver`` (:func:`cellflow.flow.solvers.integrate_ode`; ``method=`` is its former
        name).

        ``n_points`` saves that many evenly spaced states; ``return_trajectory`` returns the
        :class:`~cellflow.flow.solvers.Trajectory` (with the NFE) instead of the end points.
        """
        solver = solver_argument(solver, method, "push")
        x0 = torch.as_tensor(x0)
        home = x0.device
        x0 = x0.to(self.device, next(self.net.parameters()).dtype)
        cond = cond.to(self.device) if cond is not None else None
        grid = torch.linspace(t0, t1, n_points, dtype=x0.dtype) if n_points else (t0, t1)
        with torch.no_grad():
            tr = integrate_ode(
                self._field(cond),
                x0,
                grid,
                solver=solver,
                steps=steps,
                atol=atol,
                rtol=rtol,
                save_every_step=bool(return_trajectory and solver in FIXED_STEP and not n_points),
            )
        tr = Trajectory(t=tr.t.to(home), xs=tr.xs.to(home), nfe=tr.nfe)
        return tr if return_trajectory else tr.end

    #: the same method under its former name; every cellflow model moves points with ``push``
    transport = push

    @scoped_threads
    def sample_sde(
        self,
        x0: Tensor,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        steps: int = 100,
        cond: Tensor | None = None,
        seed: int | None = None,
        return_trajectory: bool = False,
    ) -> Tensor | Trajectory:
        """Euler–Maruyama sample of the learned Schrödinger bridge SDE,
        :math:`dX = (v_\\theta + \\tfrac{\\sigma^2}{2} s_\\theta)\\,dt + \\sigma\\,dW` (forward in
        time)."""
        if self.score_net is None:
            raise ValueError("sample_sde needs an SB model with a score network (method='sb').")
        if t1 < t0:
            raise ValueError("sample_sde runs forward in time (t1 > t0).")
        g2 = self.sigma**2
        drift = lambda t, x: self.net(t, x, cond) + 0.5 * g2 * self.score_net(t, x, cond)  # noqa: E731
        x0 = torch.as_tensor(x0)
        home = x0.device
        cond = cond.to(self.device) if cond is not None else None
        gen = torch.Generator(device=self.device).manual_seed(self.seed if seed is None else seed)
        with torch.no_grad():
            tr = integrate_sde(
                drift,
                x0.to(self.device, torch.float32),
                (t0, t1),
                sigma=self.sigma,
                steps=steps,
                generator=gen,
                save_every_step=return_trajectory,
            )
        tr = Trajectory(t=tr.t.to(home), xs=tr.xs.to(home), nfe=tr.nfe)
        return tr if return_trajectory else tr.end

    @scoped_threads
    def log_likelihood(
        self, x1: Tensor, base_log_prob: Callable[[Tensor], Tensor] | None = None, **kwargs
    ) -> Tensor:
        """Log-density of ``x1`` at t = 1 when the flow starts from ``base_log_prob`` at t = 0
        (default: standard normal). Keyword arguments go to
        :func:`cellflow.flow.likelihood.log_likelihood`."""
        if base_log_prob is None:
            base_log_prob = lambda x: Normal(0.0, 1.0).log_prob(x).reshape(x.shape[0], -1).sum(1)  # noqa: E731
        x1 = torch.as_tensor(x1).to(self.device, torch.float32)
        return log_likelihood(lambda t, x: self.net(t, x), x1, base_log_prob, **kwargs)

    # ------------------------------------------------------------------ persistence
    def _write_files(self, folder: Path) -> None:
        """``model.pt`` and ``config.json`` into ``folder`` (the temporary folder of a save)."""
        torch.save({k: m.state_dict() for k, m in self.modules.items()}, folder / "model.pt")
        cfg = self.config
        if self.history is not None:
            cfg["history"] = {
                "steps": self.history.steps,
                "seconds": self.history.seconds,
                "final_loss": self.history.loss[-1] if self.history.loss else None,
            }
        write_json(folder / "config.json", cfg)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "FlowModel":
        """Load a model saved by :meth:`save` (``torch.load(..., weights_only=True)``) onto
        ``device``; a damaged folder is refused with the file that is wrong."""
        cfg = read_model_config(path, cls.__name__)
        if cfg.get("class") != cls.__name__:
            raise ValueError(
                f"{path} holds a {cfg.get('class') or cfg.get('class_')}, not a {cls.__name__}."
            )
        try:
            net = cfg["net"]
            model = cls(
                net["dim"],
                cfg["method"],
                cfg["sigma"],
                network=net,
                train_score=cfg["train_score"],
                seed=cfg["seed"],
                coupling_kwargs=cfg.get("coupling_kwargs"),
                device=device,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise IncompleteModelError(
                f"{path} does not hold a complete cellflow {cls.__name__}: its config.json "
                f"is not one that save() writes ({type(e).__name__}: {e})."
            ) from None
        state = load_weights(path, "model.pt", model.device, cls.__name__)
        for k, m in model.modules.items():
            try:
                m.load_state_dict(state[k])
            except (KeyError, RuntimeError) as e:
                raise IncompleteModelError(
                    f"{path} does not hold a complete cellflow {cls.__name__}: model.pt does "
                    f"not match the network config.json describes ({str(e).splitlines()[0]})."
                ) from None
            m.eval()
        return model

    def __repr__(self) -> str:
        return (
            f"FlowModel(dim={self.dim}, method={self.method!r}, sigma={self.sigma}, "
            f"score={self.score_net is not None})"
        )

    # ------------------------------------------------------------------ training
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
                    f"source samples {tuple(x0.shape[1:])} and target samples "
                    f"{tuple(x1.shape[1:])} must "
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
                        f"the {name} sampler returned NaN or inf "
                        f"({int((~torch.isfinite(x)).sum())} "
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
        loss = self._squared_error("net", s.t, s.x_t, s.u_t, cond=cond).mean()
        if self.score_net is not None:
            score, lam = self.matcher.score_target(s)
            lam = lam.reshape(-1, *([1] * (score.dim() - 1)))
            serr = self._squared_error("score_net", s.t, s.x_t, score, weight=lam, cond=cond)
            loss = loss + serr.mean()
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
        val_fn: Callable[["FlowModel"], float] | None = None,
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
        lr, weight_decay, grad_clip, ema_decay, warmup_steps, val_every, patience, progress
            See :class:`cellflow.train.trainer.TrainConfig`.
        prefetch, workers, group, checkpoint_dir, checkpoint_every, threads
            See :class:`cellflow.train.trainer.TrainConfig` (``threads=None``: one torch thread
            unless you set more, :mod:`cellflow.train.threads`). ``prefetch=None`` (default): 4
            batches ahead for exact OT couplings, else inline
            (:func:`cellflow.train.trainer.default_prefetch`);
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
            pairs, instead of each rank coupling its own batch (see
            :mod:`cellflow.train.distributed`).
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
