r"""`ImageFlow`: class-conditional image generation with conditional flow matching and a UNet.

The flow runs from :math:`x_0 \sim \mathcal N(0, I)` to images :math:`x_1` (scaled to
[-1, 1]); OT-CFM pairs each minibatch of noise with the images by exact OT on their pixels.
With labels, a fraction ``cond_drop`` of the training labels is replaced by "no label", so
the same network gives the conditional field :math:`v(t, x \mid y)` and the unconditional
:math:`v(t, x)`; classifier-free guidance with weight :math:`w` integrates

.. math:: \tilde v = v(t, x) + w\,\big(v(t, x \mid y) - v(t, x)\big)

(``guidance=1`` is the conditional field itself).

Example
-------
>>> from cellflow.images import ImageFlow, load_images
>>> x, y, _ = load_images("digits")
>>> flow = ImageFlow((1, 8, 8), n_classes=10, network={"channels": 16}, seed=0)
>>> hist = flow.train(x, y, steps=2, batch_size=16, progress=False)
>>> flow.sample(4, labels=[0, 1, 2, 3], steps=2).shape
torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_path, model_folder, read_model_config, write_json
from ..flow.solvers import integrate_ode
from ..flow.unet import CIFAR10_RECIPE, DIGITS_RECIPE
from ..models.flow import FlowModel
from ..train.threads import scoped_threads
from ..train.trainer import TrainHistory

__all__ = ["ImageFlow", "PRESETS", "save_image_grid"]

PRESETS = {"digits": DIGITS_RECIPE, "cifar10": CIFAR10_RECIPE}


class ImageFlow:
    """A UNet flow-matching model for images.

    Parameters
    ----------
    shape
        ``(channels, height, width)``.
    n_classes
        Number of classes for class-conditional generation (0: unconditional).
    method, sigma
        Flow matcher (``"ot"``: OT-CFM, default; ``"icfm"``; ``"fm"``) and path noise
        (default 0, as in torchcfm's CIFAR-10 recipe).
    preset
        UNet size: ``"digits"`` (32 channels, 1.6M parameters) or ``"cifar10"`` (torchcfm's
        recipe: 128 channels, multipliers 1,2,2,2, attention at 16×16, 35.7M parameters).
    network
        Overrides of the preset's UNet settings (see :class:`cellflow.flow.unet.UNet`).
    cond_drop
        Probability of dropping a training label to "no label" (classifier-free guidance).
    seed, device
        Seed of weights and training draws; where the network trains and samples.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        n_classes: int = 0,
        *,
        method: str = "ot",
        sigma: float = 0.0,
        preset: str = "digits",
        network: dict | None = None,
        cond_drop: float = 0.1,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}.")
        if not 0 <= cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {cond_drop}.")
        self.shape = tuple(int(s) for s in shape)
        self.n_classes = int(n_classes)
        self.cond_drop = float(cond_drop)
        cfg = {
            **PRESETS[preset],
            **(network or {}),
            "kind": "unet",
            "shape": list(self.shape),
            "n_classes": self.n_classes,
        }
        self.model = FlowModel(
            math.prod(self.shape), method, sigma, network=cfg, seed=seed, device=device
        )
        self.preset = preset

    @property
    def net(self) -> torch.nn.Module:
        return self.model.net

    # ------------------------------------------------------------------ training
    def _target(self, images: Tensor, labels: Tensor | None):
        images = torch.as_tensor(images, dtype=torch.float32)
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(
                f"images have shape {tuple(images.shape[1:])}, the model {self.shape}."
            )
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf values.")
        if self.n_classes and labels is None:
            raise ValueError(f"this model is conditioned on {self.n_classes} classes: pass labels.")
        if labels is not None:
            labels = torch.as_tensor(labels).long()
            if labels.shape != (images.shape[0],):
                raise ValueError(
                    f"need one label per image: {tuple(labels.shape)} labels for {images.shape[0]} "
                    "images."
                )
            if not self.n_classes:
                raise ValueError(
                    "labels were given but the model is unconditional; build it with n_classes=..."
                )
            if labels.min() < 0 or labels.max() >= self.n_classes:
                raise ValueError(f"labels must lie in 0..{self.n_classes - 1}.")
        null, drop = self.n_classes, self.cond_drop

        def draw(n, g):
            idx = torch.randint(images.shape[0], (n,), generator=g)
            if labels is None:
                return images[idx]
            y = labels[idx].clone()
            y[torch.rand(n, generator=g) < drop] = null
            return images[idx], y

        return draw

    def train(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        *,
        steps: int = 5000,
        batch_size: int = 128,
        lr: float = 2e-4,
        warmup_steps: int = 500,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = 0.9999,
        progress: bool = True,
        **fit_kwargs,
    ) -> TrainHistory:
        """Train on ``images`` (N, C, H, W) in [-1, 1] (and their ``labels``); images outside
        that range (8-bit pixels in [0, 255], say) are refused with the rescaling to apply.

        The defaults follow torchcfm's CIFAR-10 recipe (Adam-type lr 2e-4 with warm-up,
        gradient clipping 1.0, EMA 0.9999; the EMA is warmed up, see
        :func:`cellflow.train.optim.warm_ema`). Other keyword arguments (``checkpoint_dir``,
        ``checkpoint_every``, ``resume``, ``weight_decay``...) go to
        :meth:`cellflow.FlowModel.train`.
        """
        images = torch.as_tensor(images)
        if len(images) == 0:
            raise ValueError(
                f"images is empty (shape {tuple(images.shape)}): give at least one image of "
                f"shape {tuple(self.shape)}."
            )
        if images.numel():
            lo, hi = float(images.min()), float(images.max())
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("images contain NaN or inf.")
            if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
                hint = (
                    " They look like 8-bit pixels: pass images.float() / 127.5 - 1."
                    if lo >= 0 and hi <= 255
                    else " Rescale them to [-1, 1] first."
                )
                raise ValueError(
                    f"images must be in [-1, 1] (the range samples come back in), got values in "
                    f"[{lo:g}, {hi:g}].{hint}"
                )
        shape = self.shape
        source = lambda n, g: torch.randn(n, *shape, generator=g)  # noqa: E731
        fit_kwargs.setdefault("weight_decay", 0.0)
        return self.model.train(
            source,
            self._target(images, labels),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            warmup_steps=warmup_steps,
            grad_clip=grad_clip,
            ema_decay=ema_decay,
            progress=progress,
            **fit_kwargs,
        )

    # ------------------------------------------------------------------ sampling
    def field(self, labels: Tensor | None = None, guidance: float = 1.0):
        """The (guided) vector field ``f(t, x)`` for a batch with these labels."""
        net = self.model.net
        if labels is None or guidance == 1.0:
            return lambda t, x: net(t, x, labels)
        null = torch.full_like(labels, self.n_classes)
        both = torch.cat([labels, null])

        def guided(t, x):
            vc, vu = net(t, torch.cat([x, x]), both).chunk(2)
            return vu + guidance * (vc - vu)

        return guided

    @scoped_threads
    def sample(
        self,
        n: int | None = None,
        labels=None,
        *,
        guidance: float = 1.0,
        solver: str = "euler",
        steps: int = 100,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        seed: int | None = None,
        batch_size: int = 1000,
        return_nfe: bool = False,
    ):
        """Generate images (in [-1, 1], clipped).

        Parameters
        ----------
        labels
            Class of each image, or one class for all (conditional models; default: the
            classes in turn, ``0, 1, …``). ``None`` with an unconditional model.
        guidance
            Classifier-free guidance weight ``w`` (1: plain conditional).
        solver, steps, atol, rtol
            ``"euler"``, ``"midpoint"``, ``"rk4"`` with ``steps`` (NFE = steps × stages), or
            ``"dopri5"`` with tolerances (adaptive NFE).
        return_nfe
            Also return the number of field evaluations per batch (mean over batches).
        """
        if labels is not None and not self.n_classes:
            raise ValueError("labels were given but the model is unconditional.")
        if self.n_classes:
            if labels is None:
                n = self.n_classes if n is None else int(n)
                labels = torch.arange(n) % self.n_classes
            else:
                labels = torch.as_tensor(labels).long().reshape(-1)
                if labels.numel() == 1 and n is not None:
                    labels = labels.expand(int(n))
                if labels.min() < 0 or labels.max() >= self.n_classes:
                    raise ValueError(f"labels must lie in 0..{self.n_classes - 1}.")
            n = labels.numel()
        elif n is None:
            raise ValueError("pass n, the number of images to sample.")
        self.net.eval()
        dev = self.model.device
        g = torch.Generator().manual_seed(self.model.seed if seed is None else int(seed))
        x0 = torch.randn(n, *self.shape, generator=g)
        out, nfes = [], []
        with torch.no_grad():
            for s in range(0, n, batch_size):
                y = labels[s : s + batch_size].to(dev) if labels is not None else None
                tr = integrate_ode(
                    self.field(y, guidance),
                    x0[s : s + batch_size].to(dev),
                    (0.0, 1.0),
                    solver=solver,
                    steps=None if solver == "dopri5" else steps,
                    atol=atol,
                    rtol=rtol,
                )
                out.append(tr.end.clamp(-1, 1).cpu())
                nfes.append(tr.nfe)
        images = torch.cat(out)
        return (images, float(np.mean(nfes))) if return_nfe else images

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write ``model.pt``, ``config.json`` and ``images.json`` to the folder ``path``."""
        with model_folder(path, overwrite) as tmp:
            self.model._write_files(tmp)
            write_json(
                tmp / "images.json",
                {
                    "shape": list(self.shape),
                    "n_classes": self.n_classes,
                    "cond_drop": self.cond_drop,
                    "preset": self.preset,
                },
            )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "ImageFlow":
        """Load a model written by :meth:`save`."""
        path = Path(path)
        read_model_config(path, "ImageFlow")  # readable, and every file as it was saved
        if not (path / "images.json").exists():
            raise FileNotFoundError(
                f"no images.json in {path}: is it a folder written by ImageFlow.save?"
            )
        meta = json.loads((path / "images.json").read_text())
        self = cls.__new__(cls)
        self.shape, self.n_classes = tuple(meta["shape"]), int(meta["n_classes"])
        self.cond_drop, self.preset = float(meta["cond_drop"]), meta["preset"]
        self.model = FlowModel.load(path, device=device)
        return self

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return (
            f"ImageFlow(shape={self.shape}, n_classes={self.n_classes}, "
            f"method={self.model.method!r}, "
            f"sigma={self.model.sigma}, {n / 1e6:.1f}M parameters)"
        )


def save_image_grid(images: Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid (``nrow`` images per row)."""
    import matplotlib.pyplot as plt

    x = ((torch.as_tensor(images).clamp(-1, 1) + 1) / 2).cpu().numpy()
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    grid = np.ones((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = x[
            i
        ].transpose(1, 2, 0)
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        if c == 1:
            plt.imsave(tmp, grid[..., 0], cmap="gray", vmin=0, vmax=1, format=fmt)
        else:
            plt.imsave(tmp, grid, format=fmt)
