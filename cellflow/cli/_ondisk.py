"""``cellflow fit --on-disk``: fit a time course too large to load, and write its velocities.

The input is read on demand (:func:`cellflow.read_lazy`): its time column, and its
representation a block of cells at a time (held in memory, in float32, only when it is at most
:data:`~cellflow._defaults.STORE_COPY_BYTES`; above that each step reads the rows it draws).
Before any work a line says what the run will hold in memory, and once the model is built how
long training and the velocities should take (timed on the network itself). After training the
input is copied beside ``OUT`` (byte for byte, on disk), the velocities and the fit's record are
written into the copy a block of cells at a time, and the copy is moved over ``OUT`` whole: the
input is never changed, and ``OUT`` is written whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .._defaults import BATCH_SIZE, STORE_COPY_BYTES

#: resident memory of a process that has imported cellflow, torch and anndata (GB, measured on
#: Linux), and of a block of velocities and cells being worked on
_BASE_GB, _WORK_GB = 0.5, 0.45
#: bytes per cell that a course holds whatever its width: times, time-point row indices
_PER_CELL = 24


def memory_estimate(n_cells: int, n_cols: int) -> tuple[float, bool]:
    """The peak resident memory (GB) a fit on disk of ``n_cells`` × ``n_cols`` should reach, and
    whether the representation is held in memory (float32) or read a minibatch at a time.

    >>> memory_estimate(1_000_000, 50)
    (1.174, True)
    """
    rep = 4 * n_cells * n_cols
    held = rep <= STORE_COPY_BYTES
    return round(_BASE_GB + _WORK_GB + (held * rep + _PER_CELL * n_cells) / 1e9, 3), held


def time_estimate(model, adata, steps: int, batch_size: int | None) -> dict[str, float]:
    """Seconds that training ``steps`` steps and writing every cell's velocity should take, from
    timing the real pieces once: each interval's draws from the store (from the file when it is
    read on demand) and its minibatch coupling, the network's forward and backward pass on a
    step's batch (drawing and learning overlap where batches are drawn ahead), and, for the
    velocities, one block of cells read from ``adata``, its velocity
    and its digest (the check that the file is the one trained on)."""
    import hashlib

    import torch

    from ..course.store import representation_blocks
    from ..train.batch_workers import default_prefetch

    course, net = model.course, model.net
    sizes, pairs = course.sizes(), course.pairs(model.holdout)
    batch = int(batch_size or min(BATCH_SIZE, *sizes))
    g = torch.Generator().manual_seed(0)

    def timed(fn, repeats: int = 3) -> float:
        fn()  # warm up
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    def interval(i, j):  # one interval's share of a step: its draws and its coupling
        x0 = course.store.draw(i, torch.randint(sizes[i], (batch,), generator=g))
        x1 = course.store.draw(j, torch.randint(sizes[j], (batch,), generator=g))
        model.matcher.sample(x0, x1, n=batch, generator=g)

    some = pairs[:: max(1, len(pairs) // 3)]
    per_interval = sum(timed(lambda p=p: interval(*p)) for p in some) / len(some)
    # (every draw here from its own generator: the training that follows is not touched)
    x = torch.randn(batch * len(pairs), course.n_pcs, generator=g)
    t = torch.rand(batch * len(pairs), generator=g)

    def learn():
        net.zero_grad()
        net(t, x).pow(2).mean().backward()

    draws, learning = len(pairs) * per_interval, timed(learn)
    # with exact OT the batch workers (2) draw ahead while the step learns: the work is shared
    # by the cores there are (cellflow.train.batch_workers)
    cores = min(os.cpu_count() or 1, 3) if default_prefetch(model.matcher.coupling) else 1
    per_step = max((draws + learning) / cores, learning)
    net.zero_grad()
    t0 = time.perf_counter()
    _, block = next(representation_blocks(adata, course.use_rep, course.n_pcs))
    read = time.perf_counter() - t0
    times = np.full(len(block), float(course.times[0]))
    t0 = time.perf_counter()
    model.velocity(block, times)
    hashlib.sha1(np.ascontiguousarray(block, dtype=np.float64).tobytes())
    # each block is read twice (the check, the velocities) and its velocities written
    per_cell = (time.perf_counter() - t0 + 3 * read) / len(block)
    return {"train_s": steps * per_step, "velocity_s": adata.n_obs * per_cell}


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def fit_on_disk(
    path_in: Path,
    path_out: Path,
    model_dir: Path,
    replace_model: bool,
    *,
    model_kwargs: dict,
    train_kwargs: dict,
    velocity: bool,
    growth,
    record,
    progress: bool,
):
    """Build, train and save a :class:`cellflow.CellFlow` on ``path_in`` read on demand, then
    write ``path_out`` (module docstring); the caller has checked every output. ``record(model)``
    is the fit's ``uns["cellflow"]``."""
    from .. import tl
    from .._io import atomic_path
    from ..course.ondisk import read_lazy
    from ..models.cells import CellFlow
    from ._jobs import save_fitted

    def say(line: str) -> None:  # shown with or without progress bars
        print(line, file=sys.stderr, flush=True)

    with read_lazy(path_in) as adata:
        use_rep = model_kwargs["use_rep"]
        if use_rep not in adata.obsm:
            keys = ", ".join(adata.obsm) or "nothing"
            raise KeyError(
                f"{path_in} has no obsm[{use_rep!r}] (obsm holds: {keys}); --on-disk reads a "
                "representation in obsm (for X itself use --backed)."
            )
        n, d = adata.obsm[use_rep].shape
        d = model_kwargs.get("n_pcs") or d
        peak, held = memory_estimate(n, d)
        say(
            f"{n:,} cells × {d} columns of obsm[{use_rep!r}] ({4 * n * d / 1e9:.2f} GB in "
            f"float32), {'held in memory' if held else 'read from the file a minibatch at a time'}"
            f"; expected peak memory about {peak:.1f} GB"
        )
        model = CellFlow(adata, **model_kwargs)
        est = time_estimate(model, adata, train_kwargs["steps"], train_kwargs.get("batch_size"))
        say(
            f"expected time on this machine: training about {_minutes(est['train_s'])}"
            + (f", velocities about {_minutes(est['velocity_s'])}" if velocity else "")
        )
        t0 = time.perf_counter()
        model.train(progress=progress, **train_kwargs)
        trained = time.perf_counter() - t0
        from ..train import distributed

        if not distributed.is_main():  # under torchrun, rank 0 writes the results
            return model
        save_fitted(model, model_dir, replace_model, path_out)
        with atomic_path(path_out) as tmp:
            t0 = time.perf_counter()
            shutil.copyfile(path_in, tmp)  # on disk, never in memory
            copied = time.perf_counter() - t0
            with read_lazy(tmp, mode="r+") as out:
                t0 = time.perf_counter()
                if velocity:
                    tl.velocity(out, model, genes=False, overwrite=True)
                    say(
                        f"trained in {_minutes(trained)}, copied the input in "
                        f"{_minutes(copied)}, velocities in {_minutes(time.perf_counter() - t0)}"
                    )
                if growth is not None:
                    tl.growth_rates(out, model, overwrite=True)
                out.uns["cellflow"] = {**record(model), "on_disk": True}
    return model
