"""Data-parallel training with torch DistributedDataParallel, launched by ``torchrun``.

Every model (:class:`~cellflow.FlowModel`, :class:`~cellflow.CellFlow`, and through them
``ImageFlow`` and ``TabularFlow``) trains data-parallel when a process group is initialised:

- each rank draws its own minibatch from the generator of ``(seed, step, rank)`` and couples
  it by itself (the per-rank OT batch), so ranks never wait for each other's OT solves;
- or, with ``global_coupling=True`` (``FlowModel.train``, ``CellFlow.train``), every rank draws
  the same global batch of ``world_size × batch_size`` rows from the generator of
  ``(seed, step)``, solves the one coupling of that batch and keeps its own share of the pairs
  (:func:`rank_share`). The ranks exchange nothing but gradients: each repeats the global
  solve, which costs between ``world_size**2`` and ``world_size**3`` times a per-rank exact
  OT solve, so it suits few ranks or a coupling that is cheap next to the network (large images on
  GPUs);
- the networks are wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which
  averages the gradients, so every rank holds the same weights after every step;
- only rank 0 shows progress and writes checkpoints and results.

The command line initialises the group itself from torchrun's environment::

    # one machine, 2 CPU processes (gloo)
    torchrun --nproc_per_node 2 -m cellflow train images --dataset digits --out run
    # 2 nodes with 8 GPUs each (NCCL): run on every node, with its --node_rank
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m cellflow train images --dataset cifar10 --device cuda --out
        run

From Python, call :func:`init_from_env` at the top of the script that ``torchrun`` starts.
The effective batch is ``batch_size × world size``; scale the learning rate to match if needed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import distributed as dist
from torch import nn

__all__ = [
    "init_from_env",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "wrap_modules",
    "coupling_group",
    "rank_share",
]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and without a process group)."""
    return rank() == 0


def init_from_env(device: str = "cpu") -> bool:
    """Initialise the process group from torchrun's variables (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``...): NCCL for CUDA devices, gloo for the CPU. Returns
    whether training is distributed. Does nothing outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return is_distributed()


def wrap_modules(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """DistributedDataParallel wrappers of the modules when distributed, else the modules.

    The wrappers share their parameters with the modules; call the wrappers in the loss (so the
    gradients are averaged across ranks) and keep optimisers, EMA and state dicts on the modules.
    """
    if not is_distributed():
        return dict(modules)
    out = {}
    for k, m in modules.items():
        p = next(m.parameters())
        ids = [p.device.index] if p.device.type == "cuda" else None
        out[k] = nn.parallel.DistributedDataParallel(m, device_ids=ids)
    return out


def coupling_group(global_coupling: bool) -> tuple[int, int]:
    """``(world, rank)`` of a coupling: how many ranks' rows one coupling covers, and this
    rank's share of them; ``(1, 0)`` for per-rank coupling (``global_coupling=False``)."""
    return (world_size(), rank()) if global_coupling else (1, 0)


def rank_share(sample, size: int, rank_: int | None = None):
    """Rows ``[r·size, (r+1)·size)`` of a global batch (any dataclass of per-row tensors, such
    as :class:`cellflow.flow.matchers.MatchedSample`): the share of rank ``r`` (default: this
    process's rank). The shares of all ranks partition the global batch."""
    r = rank() if rank_ is None else int(rank_)
    sl = slice(r * size, (r + 1) * size)
    return type(sample)(**{k: v[sl] for k, v in vars(sample).items()})


@contextmanager
def training_wrappers(owner, names: tuple[str, ...]):
    """Within the block, ``owner._train_modules[name]`` is the DDP wrapper (or the module)."""
    mods = {n: getattr(owner, n) for n in names if getattr(owner, n, None) is not None}
    owner._train_modules = wrap_modules(mods)
    try:
        yield owner._train_modules
    finally:
        owner._train_modules = {}
