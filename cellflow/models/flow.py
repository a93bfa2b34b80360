r"""`FlowModel`: learn a flow from a source to a target distribution of vectors.

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
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Normal

from .._io import IncompleteModelError, load_weights, read_model_config, write_json
from .._types import Method, Solver
from ..flow.likelihood import log_likelihood
from ..flow.matchers import make_matcher
from ..flow.methods import method_spec
from ..flow.networks import build_network
from ..flow.solvers import FIXED_STEP, Trajectory, integrate_ode, integrate_sde, solver_argument
from ..train.threads import scoped_threads
from ..train.trainer import TrainConfig, TrainHistory, check_device
from ._base import ModelBase
from ._flow_fit import FitMixin, Sampler, as_sampler

__all__ = ["FlowModel", "Sampler", "as_sampler"]

FORMAT_VERSION = 1


class FlowModel(ModelBase, FitMixin):
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
        ``{"kind": "unet", "shape": (1, 8, 8), ...}`` (see :func:`cellflow.flow.networks.build_network`);
        ``hidden``, ``activation``, ``cond_dim`` and ``n_classes`` are then ignored.
    """

    def __init__(
        self,
        dim: int,
        method: Method = "ot",
        sigma: float | None = None,
        *,
        hidden: tuple[int, ...] = (64, 64, 64),
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
        self.method = method_spec(method).name
        self.sigma = float(method_spec(method).sigma if sigma is None else sigma)
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
        :math:`dX = (v_\\theta + \\tfrac{\\sigma^2}{2} s_\\theta)\\,dt + \\sigma\\,dW` (forward in time)."""
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
        return f"FlowModel(dim={self.dim}, method={self.method!r}, sigma={self.sigma}, score={self.score_net is not None})"
