"""``cellflow train images``: train an :class:`~cellflow.images.ImageFlow` and write the model,
sample grids and a metrics JSON to a folder."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

from .._io import check_output_folder, write_json
from ..train import distributed

__all__ = ["train_images", "score_digits"]


def _peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024**3 if sys.platform == "darwin" else 1024**2)


def score_digits(
    flow,
    *,
    nfe=(10, 20, 100),
    dopri5: bool = True,
    n_per_class: int = 100,
    guidance: float = 1.0,
    seed: int = 0,
    classifier=None,
) -> list[dict]:
    """Score a class-conditional digits model: for Euler at each NFE (and dopri5), the
    accuracy of a classifier trained on real digits on the samples, divided by its accuracy on
    the real test digits, and the Fréchet distance in the classifier's feature space to the
    real training digits. The row of the real test digits is a reference, not a floor: they come
    from other writers and are few (297), which inflates their Fréchet distance."""
    from . import frechet_distance, load_images, train_digits_classifier

    x_train, y_train, _ = load_images("digits", split="train")
    x_test, y_test, _ = load_images("digits", split="test")
    clf = classifier or train_digits_classifier(x_train, y_train, seed=seed)
    acc_real = clf.accuracy(x_test, y_test)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    rows = [
        {
            "solver": "real test digits",
            "nfe": 0,
            "accuracy": acc_real,
            "accuracy_ratio": 1.0,
            "frechet": frechet_distance(x_train, x_test, clf.features),
            "seconds": 0.0,
        }
    ]
    runs = [("euler", k) for k in nfe] + ([("dopri5", None)] if dopri5 else [])
    for solver, steps in runs:
        t = time.perf_counter()
        imgs, n_eval = flow.sample(
            labels=labels,
            guidance=guidance,
            solver=solver,
            steps=steps or 0,
            seed=seed,
            return_nfe=True,
        )
        sec = time.perf_counter() - t
        acc = clf.accuracy(imgs, labels)
        rows.append(
            {
                "solver": solver,
                "nfe": n_eval,
                "accuracy": acc,
                "accuracy_ratio": acc / acc_real,
                "frechet": frechet_distance(x_train, imgs, clf.features),
                "seconds": sec,
            }
        )
    return rows


def train_images(
    dataset: str,
    out: str | Path,
    *,
    method: str = "ot",
    sigma: float = 0.0,
    preset: str | None = None,
    channels: int | None = None,
    steps: int = 5000,
    batch_size: int = 128,
    lr: float | None = None,
    warmup_steps: int | None = None,
    ema_decay: float | None = -1.0,
    guidance: float = 1.0,
    nfe=(10, 20, 100),
    dopri5: bool = True,
    conditional: bool = True,
    seed: int = 0,
    resume: bool = False,
    checkpoint_every: int = 1000,
    device: str = "cpu",
    data_dir: str | None = None,
    random_data: int = 0,
    global_coupling: bool = False,
    grid_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Train, save, sample and score (see :mod:`cellflow.cli`, ``cellflow train images``).

    ``lr`` and ``ema_decay`` default per preset: 1e-3 and 0.999 for ``digits``, torchcfm's
    2e-4 and 0.9999 for ``cifar10`` (``ema_decay=None``: no EMA).

    ``random_data=N`` replaces the data by N random CIFAR-shaped images (3×32×32, 10 random
    labels): a check that the full recipe runs, reporting steps/s and memory.

    ``samples.png`` is sampled with ``grid_steps`` Euler steps (default 100; 10 with
    ``random_data``, where a glance suffices).
    """
    from . import ImageFlow, load_images, save_image_grid

    if grid_steps is not None and grid_steps < 1:  # checked before training, not after
        raise ValueError(f"grid_steps must be at least 1, got {grid_steps}.")
    out = check_output_folder(out)
    if (out / "model" / "model.pt").exists() and not resume:
        raise FileExistsError(
            f"{out} already holds a trained model; choose another --out or pass --resume."
        )
    out.mkdir(parents=True, exist_ok=True)
    if random_data:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(random_data, 3, 32, 32, generator=g) * 2 - 1
        y, classes = torch.randint(10, (random_data,), generator=g), [str(i) for i in range(10)]
    else:
        x, y, classes = load_images(dataset, data_dir=data_dir, split="train")
    if not conditional:
        y = None
    n_classes = len(classes) if y is not None else 0
    preset = preset or ("digits" if x.shape[-1] <= 16 else "cifar10")
    network = {"channels": channels} if channels else None
    flow = ImageFlow(
        tuple(x.shape[1:]),
        n_classes,
        method=method,
        sigma=sigma,
        preset=preset,
        network=network,
        seed=seed,
        device=device,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    lr = lr if lr is not None else (1e-3 if preset == "digits" else 2e-4)
    if ema_decay is not None and ema_decay < 0:
        ema_decay = 0.999 if preset == "digits" else 0.9999
    warmup = warmup_steps if warmup_steps is not None else min(5000, max(steps // 20, 1))
    hist = flow.train(
        x,
        y,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup,
        ema_decay=ema_decay,
        checkpoint_dir=str(out / "checkpoints"),
        checkpoint_every=checkpoint_every,
        resume=resume,
        global_coupling=global_coupling,
        progress=progress,
    )
    if not distributed.is_main():  # under torchrun, rank 0 writes the results
        return {}
    flow.save(out / "model", overwrite=True)
    trained = max(hist.steps, 1)
    metrics = {
        "dataset": "random CIFAR-shaped" if random_data else str(dataset),
        "method": flow.model.method,
        "sigma": flow.model.sigma,
        "preset": preset,
        "parameters": sum(p.numel() for p in flow.net.parameters()),
        "steps": hist.steps,
        "batch_size": batch_size,
        "train_seconds": hist.seconds,
        "steps_per_second": trained / hist.seconds if hist.seconds else None,
        "device": device,
        "peak_rss_gb": _peak_rss_gb(),
    }
    if device.startswith("cuda"):
        metrics["cuda_peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    per_class = 2 if random_data else 10  # a recipe check only needs a glance
    if grid_steps is None:
        grid_steps = 10 if random_data else 100
    labels = torch.arange(n_classes).repeat_interleave(per_class) if n_classes else None
    grid = flow.sample(
        10 * per_class if labels is None else None,
        labels=labels,
        guidance=guidance,
        solver="euler",
        steps=grid_steps,
        seed=seed,
    )
    save_image_grid(grid, out / "samples.png", nrow=10)
    if str(dataset) == "digits" and not random_data and n_classes:
        metrics["digits"] = score_digits(flow, nfe=nfe, dopri5=dopri5, guidance=guidance, seed=seed)
    write_json(out / "metrics.json", metrics)
    return metrics
