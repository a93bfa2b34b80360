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

import shutil
import sys
import time
from pathlib import Path

from .._defaults import BATCH_SIZE, STORE_COPY_BYTES

#: resident memory of a process that has imported cellflow, torch and anndata (GB, measured on
#: Linux), and of a block of velocities and cells being worked on
_BASE_GB, _WORK_GB = 0.5, 0.3
#: bytes per cell that a course holds whatever its width: times, time-point row indices
_PER_CELL = 24


def memory_estimate(n_cells: int, n_cols: int) -> tuple[float, bool]:
    """The peak resident memory (GB) a fit on disk of ``n_cells`` × ``n_cols`` should reach, and
    whether the representation is held in memory (float32) or read a minibatch at a time.

    >>> memory_estimate(1_000_000, 50)
    (1.024, True)
    """
    rep = 4 * n_cells * n_cols
    held = rep <= STORE_COPY_BYTES
    return round(_BASE_GB + _WORK_GB + (held * rep + _PER_CELL * n_cells) / 1e9, 3), held


def time_estimate(model, steps: int, n_cells: int, batch_size: int | None) -> dict[str, float]:
    """Seconds that training ``steps`` steps and one velocity per cell should take, from the time
    of the model's own network on a batch (forward and backward, for a step's 2 × batch cells per
    interval) and on a block of cells (forward)."""
    import torch

    net, dim = model.net, model.course.n_pcs
    batch = int(batch_size or BATCH_SIZE)
    n_pairs = max(1, len(model.course.pairs(model.holdout)))
    x = torch.randn(batch * n_pairs, dim)
    t = torch.rand(batch * n_pairs, 1)

    def timed(fn, repeats=5) -> float:
        fn()  # warm up
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    def step():
        net.zero_grad()
        net(t, x).pow(2).mean().backward()

    block, tb = torch.randn(65536, dim), torch.rand(65536)
    with torch.no_grad():
        per_cell = timed(lambda: net(tb, block), 3) / len(block)
    net.zero_grad()
    # drawing, pairing and the optimiser roughly double a bare forward-backward pass
    return {"train_s": 2.0 * steps * timed(step), "velocity_s": n_cells * per_cell}


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

    say = print if progress else (lambda *a, **k: None)
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
            f"; expected peak memory about {peak:.1f} GB",
            file=sys.stderr,
        )
        model = CellFlow(adata, **model_kwargs)
        est = time_estimate(model, train_kwargs["steps"], n, train_kwargs.get("batch_size"))
        say(
            f"expected time on this machine: training about {_minutes(est['train_s'])}"
            + (f", velocities about {_minutes(est['velocity_s'])}" if velocity else ""),
            file=sys.stderr,
        )
        model.train(progress=progress, **train_kwargs)
        from ..train import distributed

        if not distributed.is_main():  # under torchrun, rank 0 writes the results
            return model
        save_fitted(model, model_dir, replace_model, path_out)
        with atomic_path(path_out) as tmp:
            shutil.copyfile(path_in, tmp)  # on disk, never in memory
            with read_lazy(tmp, mode="r+") as out:
                if velocity:
                    tl.velocity(out, model, genes=False, overwrite=True)
                if growth is not None:
                    tl.growth_rates(out, model, overwrite=True)
                out.uns["cellflow"] = {**record(model), "on_disk": True}
    return model
