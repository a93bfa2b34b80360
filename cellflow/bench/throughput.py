"""Training throughput of OT-CFM, I-CFM and SB-CFM, ours next to torchcfm 1.0.7 in the same run.

8gaussians→moons, batch 256, MLP 3×64 SELU, Adam(W) lr 1e-3, ``threads`` torch threads.
SB-CFM trains the flow only (no score network) with an entropic coupling at ε = 2σ² = 2 on
both sides (torchcfm's ``SchrodingerBridgeConditionalFlowMatcher(sigma=1, ot_method="sinkhorn")``;
its default coupling would be exact OT).
Each figure is the median of ``repeats`` timed runs of ``steps`` steps. Every contender first
runs 20 untimed steps; the timed runs are then interleaved (one of each per round), so that a
change in the shared machine's load does not fall on one contender only. With
``accuracy_steps > 0`` both libraries also train that long, and the table adds W2 on
``n_test`` held-out samples and the dopri5 NFE (both models integrated by the same
torchdiffeq solver, atol = rtol = 1e-5). ``ot_groups`` adds rows of our OT-CFM whose batch
workers solve that many steps per task (``FlowModel.train(group=...)``; default 16).

torchcfm is optional: ``pip install --no-deps torchcfm==1.0.7 torchdyn==1.0.6``.

:func:`course` (``cellflow bench throughput --course``) times the workload users run instead:
:class:`~cellflow.CellFlow` at its defaults on a simulated differentiation course
(:func:`~cellflow.datasets.simulated_differentiation`: 6 time points of 300 cells, counts
normalised, log1p, scanpy's 50 PCs), each coupled method with its pairs from whole plans
(``ot_plan="auto"``, the default there) and from a plan per minibatch, idle and beside busy
processes.
"""

from __future__ import annotations

import functools
import statistics
import time

import pandas as pd
import torch

from ..datasets import toy_sample
from ..flow.methods import (
    method_spec,  # σ: OT-CFM, I-CFM 0.1; SB 1.0 (entropic OT at ε = 2σ² = 2, as torchcfm's)
)
from ..flow.solvers import integrate_ode
from ..metrics import wasserstein
from ..models.flow import FlowModel
from ..train.threads import resolve_threads
from ..train.trainer import TrainConfig
from .toy import LABEL


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _ours(
    method: str,
    steps: int,
    batch: int,
    seed: int,
    device: str = "cpu",
    group: int = TrainConfig.group,
    threads: int | None = None,
):
    # SB: the flow only, no score network, as torchcfm's sample_location_and_conditional_flow
    model = FlowModel(
        2, method, sigma=method_spec(method).sigma, seed=seed, device=device, train_score=False
    )
    t0 = time.perf_counter()
    model.train(
        lambda n, g: toy_sample("8gaussians", n, generator=g),
        lambda n, g: toy_sample("moons", n, generator=g),
        steps=steps,
        batch_size=batch,
        progress=False,
        group=group,
        threads=threads,
    )
    _sync(device)
    return time.perf_counter() - t0, lambda t, x: model.velocity(
        torch.as_tensor(t).to(device), x.to(device)
    ).cpu()


def _torchcfm(method: str, steps: int, batch: int, seed: int, device: str = "cpu"):
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
        SchrodingerBridgeConditionalFlowMatcher,
    )
    from torchcfm.models.models import MLP
    from torchcfm.utils import sample_8gaussians, sample_moons

    torch.manual_seed(seed)
    spec = method_spec(method)
    # torchcfm's matcher with the same coupling (its SB matcher defaults to exact OT: ask for
    # Sinkhorn)
    if spec.coupling == "sinkhorn":
        fm = SchrodingerBridgeConditionalFlowMatcher(sigma=spec.sigma, ot_method="sinkhorn")
    elif spec.coupling == "exact":
        fm = ExactOptimalTransportConditionalFlowMatcher(sigma=spec.sigma)
    else:
        fm = ConditionalFlowMatcher(sigma=spec.sigma)
    net = MLP(dim=2, time_varying=True).to(device)
    opt = torch.optim.Adam(net.parameters())
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        x0, x1 = sample_8gaussians(batch).to(device), sample_moons(batch).to(device)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        loss = ((net(torch.cat([xt, t[:, None]], -1)) - ut) ** 2).mean()
        loss.backward()
        opt.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, lambda t, x: net(torch.cat([x, t.expand(x.shape[0], 1)], -1).to(device)).cpu()


class busy_processes:
    """``n`` CPU-bound competitor processes (each a Python loop), running inside the block."""

    def __init__(self, n: int):
        self.n, self.procs = int(n), []

    def __enter__(self):
        import subprocess
        import sys

        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)
        ]
        time.sleep(0.2 if self.n else 0.0)  # let them reach the scheduler
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def run(
    *,
    steps: int = 1000,
    repeats: int = 3,
    batch: int = 256,
    threads: int = 2,
    accuracy_steps: int = 0,
    n_test: int = 2000,
    verbose: bool = True,
    device: str = "cpu",
    methods: tuple[str, ...] = ("ot", "icfm", "sb"),
    ot_groups: tuple[int, ...] = (),
    busy: int = 0,
    ours_threads: tuple[int, ...] = (),
) -> pd.DataFrame:
    """``threads`` is torch's count for torchcfm (ours follows :mod:`cellflow.train.threads`; add
    rows
    of ours on a fixed count with ``ours_threads``). ``busy=N`` times every contender alone and
    beside N CPU-bound processes, in turns, and adds ``steps_per_s_busy`` and ``busy_ratio``."""
    torch.set_num_threads(threads)
    libs = {"cellflow": _ours}
    libs.update(
        {f"cellflow, {n} threads": functools.partial(_ours, threads=n) for n in ours_threads}
    )
    try:
        import torchcfm  # noqa: F401

        libs["torchcfm 1.0.7"] = _torchcfm
    except ImportError:
        if verbose:
            print(
                "torchcfm not installed: measuring cellflow only "
                "(pip install --no-deps torchcfm==1.0.7 torchdyn==1.0.6)"
            )
    contenders = [(method, lib, fn) for method in methods for lib, fn in libs.items()]
    if (
        "ot" in methods
    ):  # our OT-CFM again, its worker tasks solving `group` steps each (default 16)
        contenders += [
            ("ot", f"cellflow, group {g}", functools.partial(_ours, group=g)) for g in ot_groups
        ]
    for method, lib, fn in contenders:  # untimed warm-up: first-call costs (and the CUDA context)
        fn(method, 20, batch, 0, device)
    times: dict = {(method, lib): [] for method, lib, _ in contenders}
    loaded: dict = {(method, lib): [] for method, lib, _ in contenders}
    for seed in range(
        repeats
    ):  # interleaved, so that drifting machine load hits every contender alike
        for method, lib, fn in contenders:
            times[method, lib].append(fn(method, steps, batch, seed, device)[0])
            if busy:  # the same run beside `busy` competitors, right after
                with busy_processes(busy):
                    loaded[method, lib].append(fn(method, steps, batch, seed, device)[0])
    rows = []
    for method, lib, fn in contenders:
        row = dict(
            library=lib,
            method=LABEL[method],
            device=device,
            steps_per_s=steps / statistics.median(times[method, lib]),
            runs=repeats,
        )
        if busy:
            row["steps_per_s_busy"] = steps / statistics.median(loaded[method, lib])
            row["busy_ratio"] = row["steps_per_s_busy"] / row["steps_per_s"]
        if accuracy_steps:
            seconds, field = fn(method, accuracy_steps, batch, 0, device)
            g = torch.Generator().manual_seed(123)
            x0, x1 = (
                toy_sample("8gaussians", n_test, generator=g),
                toy_sample("moons", n_test, generator=g),
            )
            with torch.no_grad():
                tr = integrate_ode(field, x0, solver="dopri5")
            row.update(w2=wasserstein(tr.end, x1), nfe=tr.nfe, train_s=seconds)
        rows.append(row)
        if verbose:
            print(
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
                flush=True,
            )
    if verbose and "cellflow" in libs and {"ot", "icfm"} <= set(methods):
        ratios = [o / i for o, i in zip(times["icfm", "cellflow"], times["ot", "cellflow"])]
        print(f"our OT-CFM / our I-CFM, per round: {', '.join(f'{r:.3f}' for r in ratios)}")
    df = pd.DataFrame(rows)
    if verbose:
        print(
            f"\nmedian of {repeats} runs of {steps} steps, batch {batch}, on {device} (torchcfm on "
            f"{threads} "
            f"threads, ours on {resolve_threads()} by cellflow.train.threads)"
            + (f"; busy: beside {busy} CPU-bound processes" if busy else "")
            + (f"; W2 on {n_test} samples after {accuracy_steps} steps" if accuracy_steps else "")
        )
        print(df.to_string(index=False))
    return df


def _simulated_course(n_pcs: int = 50, seed: int = 0):
    import scanpy as sc

    from ..datasets import simulated_differentiation

    adata = simulated_differentiation(random_state=seed)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=n_pcs, random_state=0)
    return adata


def _course_run(adata, method: str, ot_plan: str, steps: int, seed: int) -> tuple[float, float]:
    """Seconds of one ``CellFlow(adata, "day", method=method).train(steps)`` at its defaults:
    ``(set-up, training loop)``, the set-up being what ``train`` does before the first step
    (whole plans are solved there)."""
    from ..models.cells import CellFlow

    model = CellFlow(adata, "day", method=method, seed=seed)
    t0 = time.perf_counter()
    history = model.train(steps=steps, progress=False, ot_plan=ot_plan)
    total = time.perf_counter() - t0
    return total - history.seconds, history.seconds


def course(
    *,
    steps: int = 300,
    repeats: int = 3,
    methods: tuple[str, ...] = ("icfm", "ot", "sb"),
    ot_plans: tuple[str, ...] = ("auto", "minibatch"),
    busy: int = 0,
    default_steps: int | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Steps/s of :class:`~cellflow.CellFlow` at its defaults on a simulated 50-PC time course.

    Every (method, ``ot_plan``) trains ``steps`` steps ``repeats`` times, in turns (and, with
    ``busy=N``, once more beside N CPU-bound processes right after each idle run). Reported:
    the training loop's ``steps_per_s``; ``setup_s``, the work before the first step (the whole
    plans); and ``steps_per_s_at_defaults``, what a default training of ``default_steps``
    (2,000) steps achieves with its set-up counted, each also relative to I-CFM's
    (``x_icfm``). I-CFM has no plan, so it runs once whatever ``ot_plans`` says.
    """
    from .._defaults import STEPS

    default_steps = STEPS if default_steps is None else int(default_steps)
    adata = _simulated_course()
    runs = [(m, p) for m in methods for p in (("auto",) if m == "icfm" else ot_plans)]
    for m, p in runs:  # untimed warm-up
        _course_run(adata, m, p, 10, 0)
    idle = {r: [] for r in runs}
    loaded = {r: [] for r in runs}
    for k in range(repeats):
        for m, p in runs:
            idle[m, p].append(_course_run(adata, m, p, steps, k))
            if busy:
                with busy_processes(busy):
                    loaded[m, p].append(_course_run(adata, m, p, steps, k))

    def rates(timed):
        setup = statistics.median(s for s, _ in timed)
        loop = steps / statistics.median(t for _, t in timed)
        return setup, loop, default_steps / (setup + default_steps / loop)

    rows = []
    for m, p in runs:
        setup, loop, at_defaults = rates(idle[m, p])
        row = dict(
            method=LABEL[m],
            ot_plan="–" if m == "icfm" else p,
            steps_per_s=loop,
            setup_s=setup,
            steps_per_s_at_defaults=at_defaults,
        )
        if busy:
            row["steps_per_s_busy"] = rates(loaded[m, p])[2]
            row["busy_ratio"] = row["steps_per_s_busy"] / at_defaults
        rows.append(row)
    df = pd.DataFrame(rows)
    if "icfm" in methods:
        ref = df.loc[df.method == LABEL["icfm"], "steps_per_s_at_defaults"].iloc[0]
        df["x_icfm"] = df.steps_per_s_at_defaults / ref
    if verbose:
        print(
            f"\nCellFlow at its defaults on a simulated course (6 x 300 cells, 50 PCs): median of "
            f"{repeats} runs of {steps} steps; at_defaults counts the set-up once in "
            f"{default_steps} steps"
            + (f"; busy: beside {busy} CPU-bound processes" if busy else "")
        )
        print(df.round(3).to_string(index=False))
    return df
