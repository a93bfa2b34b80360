"""``cellflow bench speed``: how fast the engine is, next to POT and torchcfm in the same run.

Four sections, each figure the median of ``repeats`` timed runs on ``threads`` torch threads:

``throughput``
    Training steps/s on 8gaussians → moons (batch 256, MLP 3×64), OT-CFM and I-CFM, ours and
    torchcfm 1.0.7's (see :mod:`cellflow.bench.throughput`), with the two ratios that matter:
    our OT-CFM over torchcfm's, and our OT-CFM over our own I-CFM (the floor).
``exact_ot``
    One exact plan between ``n`` × ``n`` standard normal points in ``d`` dimensions (uniform
    weights): our :class:`~cellflow.couplings.ExactOT` (the auction of
    :mod:`cellflow.couplings.assignment`) and with ``auction=False`` (the network simplex on near
    pairs
    with pricing), POT's network simplex without the iteration cap, and torchcfm's
    ``OTPlanSampler`` (POT capped at 100,000 iterations). Each plan's cost is reported
    relative to the uncapped optimum.
``sinkhorn``
    One balanced entropic plan on raw squared Euclidean costs at ``eps`` (SB-CFM with σ = 1
    uses ε = 2σ² = 2), ``d = 2`` and ``d = 50``: our :func:`~cellflow.couplings.sinkhorn_log`
    and POT's ``ot.sinkhorn`` with its defaults, with the L1 marginal error of each and the
    fraction of the plain kernel ``exp(-C/ε)`` that underflows in float32.
``push``
    Pushing ``n_cells`` cells across one interval with 100 Euler steps, through the default
    3×64 network, in 5 and 50 dimensions.

Example
-------
``cellflow bench speed --out speed.json`` (about 5 minutes on 2 cores; ``--quick`` for a
smaller smoke run).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, get_args

import numpy as np
import pandas as pd
import torch

from .._io import write_json
from .._types import SpeedSection

SECTIONS = get_args(SpeedSection)


def _time_in_turns(
    jobs: dict[str, tuple[Callable[[], object], int]],
) -> dict[str, tuple[float, object]]:
    """Run each ``name: (fn, repeats)`` job its number of times, the jobs taking turns so that
    slow phases of a shared machine hit them alike; the median seconds and last output of each.
    Library warnings (POT's, torchcfm's) are silenced: the tables report the outcome."""
    import warnings

    times: dict[str, list[float]] = {name: [] for name in jobs}
    outputs: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(max(reps for _, reps in jobs.values())):
            for name, (fn, reps) in jobs.items():
                if r < reps:
                    t0 = time.perf_counter()
                    outputs[name] = fn()
                    times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), outputs[name]) for name in jobs}


def _points(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.5


def exact_ot(n: int = 4096, d: int = 50, repeats: int = 3) -> pd.DataFrame:
    """Exact OT at a large batch: ours, POT uncapped and torchcfm's capped plan."""
    import ot

    from ..couplings import ExactOT

    x0, x1 = _points(n, d)
    C = ot.dist(x0, x1)
    a = np.full(n, 1.0 / n)
    solvers = {
        "cellflow ExactOT": lambda: (
            ExactOT().plan(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
        ),
        "cellflow ExactOT(auction=False)": lambda: (
            ExactOT(auction=False).plan(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
        ),
        "POT emd, uncapped": lambda: ot.emd(a, a, C, numItermax=2**31 - 1),
    }
    try:
        from torchcfm.optimal_transport import OTPlanSampler

        sampler = OTPlanSampler(method="exact")
        solvers["torchcfm 1.0.7 (emd capped at 1e5)"] = lambda: sampler.get_map(
            torch.from_numpy(x0), torch.from_numpy(x1)
        )
    except ImportError:
        pass
    timed = _time_in_turns({name: (fn, repeats) for name, fn in solvers.items()})
    rows, optimum = [], None
    for name, (seconds, P) in timed.items():
        P = np.asarray(P)
        cost = float((P * C).sum() / P.sum())
        if name.startswith("POT"):
            optimum = cost
        rows.append(
            dict(
                solver=name,
                n=n,
                d=d,
                seconds=seconds,
                marginal_error=float(
                    np.abs(P.sum(1) / P.sum() - a).sum() + np.abs(P.sum(0) / P.sum() - a).sum()
                ),
                cost=cost,
            )
        )
    df = pd.DataFrame(rows)
    df["cost_over_optimum"] = df["cost"] / optimum - 1.0
    return df


def sinkhorn(
    n: int = 4096,
    dims: tuple[int, ...] = (2, 50),
    eps: float = 2.0,
    repeats: int = 3,
    device: str = "cpu",
) -> pd.DataFrame:
    """Balanced Sinkhorn on raw costs: ours (on ``device``, its first run untimed there) and
    POT's default ``ot.sinkhorn`` (on the CPU, run once)."""
    import ot

    from ..couplings import sinkhorn_log, squared_distances
    from .throughput import _sync

    rows = []
    for d in dims:
        x0, x1 = _points(n, d)
        C = squared_distances(torch.from_numpy(x0), torch.from_numpy(x1))
        a = torch.full((n,), 1.0 / n, dtype=torch.float64)
        underflow = float((torch.exp(-C.float() / eps) == 0).double().mean())
        a_dev, C_dev = a.to(device), C.to(device)

        def ours():
            P = sinkhorn_log(a_dev, a_dev, C_dev, eps)
            _sync(device)
            return P.cpu()

        if device != "cpu":
            ours()  # CUDA context, kernels and caching allocator warmed up
        jobs = {
            "cellflow sinkhorn_log" + (f" ({device})" if device != "cpu" else ""): (ours, repeats),
            "POT ot.sinkhorn (defaults)": (
                lambda: torch.from_numpy(ot.sinkhorn(a.numpy(), a.numpy(), C.numpy(), eps)),
                1,
            ),
        }
        for name, (seconds, P) in _time_in_turns(jobs).items():
            reps = jobs[name][1]
            err = float((P.sum(1) - a).abs().sum() + (P.sum(0) - a).abs().sum())
            rows.append(
                dict(
                    solver=name,
                    device=device if name.startswith("cellflow") else "cpu",
                    n=n,
                    d=d,
                    eps=eps,
                    seconds=seconds,
                    runs=reps,
                    marginal_error=err,
                    finite=bool(torch.isfinite(P).all()),
                    kernel_underflow_f32=underflow,
                )
            )
    return pd.DataFrame(rows)


def push(
    n_cells: int = 100_000,
    dims: tuple[int, ...] = (5, 50),
    steps: int = 100,
    repeats: int = 3,
    device: str = "cpu",
) -> pd.DataFrame:
    """Time to push ``n_cells`` (from and back to the CPU) across one interval with ``steps``
    Euler steps on ``device``."""
    from ..models.flow import FlowModel

    rows = []
    for d in dims:
        model = FlowModel(d, "ot", seed=0, device=device)
        x = torch.randn(n_cells, d)
        if device != "cpu":
            model.push(x[:1000], 0.0, 1.0, solver="euler", steps=steps)  # warm-up
        timed = _time_in_turns(
            {"push": (lambda: model.push(x, 0.0, 1.0, solver="euler", steps=steps), repeats)}
        )
        seconds = timed["push"][0]
        rows.append(
            dict(
                device=device,
                n_cells=n_cells,
                d=d,
                euler_steps=steps,
                seconds=seconds,
                cells_per_s=n_cells / seconds,
            )
        )
    return pd.DataFrame(rows)


def throughput(
    steps: int = 1000,
    repeats: int = 3,
    accuracy_steps: int = 0,
    threads: int = 2,
    device: str = "cpu",
) -> pd.DataFrame:
    """Training steps/s, with our OT-CFM's ratio to torchcfm's OT-CFM and to our I-CFM."""
    from .throughput import run as run_throughput

    df = run_throughput(
        steps=steps,
        repeats=repeats,
        threads=threads,
        accuracy_steps=accuracy_steps,
        verbose=False,
        device=device,
    )
    rate = {(r.library, r.method): r.steps_per_s for r in df.itertuples()}
    ours_ot = rate[("cellflow", "OT-CFM")]
    df["ours_ot_over_this"] = [ours_ot / r for r in df["steps_per_s"]]
    return df


def run(
    *,
    sections: tuple[str, ...] = SECTIONS,
    quick: bool = False,
    repeats: int = 3,
    threads: int = 2,
    accuracy_steps: int = 0,
    out: str | None = None,
    verbose: bool = True,
    device: str = "cpu",
) -> dict[str, pd.DataFrame]:
    """Run the chosen sections, print a table for each and write them to ``out`` as JSON.

    ``device="cuda"`` runs our networks (``throughput``, ``push``) and our Sinkhorn on the GPU;
    exact OT is CPU work (POT's network simplex) and ignores it.
    ``quick`` shrinks every problem (n = 1024, 10k cells, 200 training steps) for a smoke run.
    ``accuracy_steps > 0`` also trains each throughput model that long and adds its W2 and its
    dopri5 NFE (OT-CFM's straighter paths need fewer evaluations than I-CFM's).
    """
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}.")
    torch.set_num_threads(threads)
    n = 1024 if quick else 4096
    jobs = {
        "throughput": lambda: throughput(
            steps=200 if quick else 1000,
            repeats=repeats,
            threads=threads,
            accuracy_steps=accuracy_steps,
            device=device,
        ),
        "exact_ot": lambda: exact_ot(n=n, repeats=repeats),
        "sinkhorn": lambda: sinkhorn(n=n, repeats=repeats, device=device),
        "push": lambda: push(n_cells=10_000 if quick else 100_000, repeats=repeats, device=device),
    }
    results = {}
    for name in SECTIONS:
        if name not in sections:
            continue
        results[name] = df = jobs[name]()
        if verbose:
            print(f"\n== {name} (median of {repeats} runs, {threads} threads)", flush=True)
            print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    if out:
        payload = dict(
            config=dict(
                quick=quick,
                repeats=repeats,
                threads=threads,
                accuracy_steps=accuracy_steps,
                torch=torch.__version__,
                device=device,
                gpu=torch.cuda.get_device_name() if device.startswith("cuda") else None,
            ),
            **{k: v.to_dict(orient="records") for k, v in results.items()},
        )
        write_json(out, payload)
        if verbose:
            print(f"\nwrote {out}")
    return results
