"""The 2-D benchmark of the OT-CFM / [SF]2M papers: W2 and normalised path energy.

Tasks N→8gaussians, 8gaussians→moons, N→moons, N→scurve; methods I-CFM, OT-CFM, SB-CFM and
FM (Lipman; only from N, so not on 8gaussians→moons). For each task, method and seed: train,
push ``n_test`` fresh source samples through the ODE (dopri5), and report

- ``w2``: exact W2 between the pushed samples and ``n_test`` fresh target samples;
- ``npe``: :math:`|E\\int\\|v\\|^2 dt - W_2^2(q_0, q_1)| / W_2^2(q_0, q_1)`, the path energy
  measured along the ODE on a 101-point grid and W2² between the test source and target sets;
- ``nfe``: dopri5 function evaluations, and the training ``seconds``;
- a ``floor`` row per task: W2 between two independent ``n_test``-sample sets of the target,
  the value a perfect model would score with this many test samples.

Published ([SF]2M paper, Table 2; 20k steps): see :data:`PUBLISHED`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from .._io import write_csv
from ..datasets import toy_sample
from ..flow.methods import method_spec
from ..metrics import normalized_path_energy, path_energy, wasserstein
from ..models.flow import FlowModel

TASKS = [
    ("normal", "8gaussians"),
    ("8gaussians", "moons"),
    ("normal", "moons"),
    ("normal", "scurve"),
]
METHODS = ["icfm", "ot", "sb", "fm"]
LABEL = {"icfm": "I-CFM", "ot": "OT-CFM", "sb": "SB-CFM", "fm": "FM"}
PUBLISHED = {  # (W2, NPE) per task, [SF]2M paper Table 2
    "OT-CFM": {
        "normal→8gaussians": (0.303, 0.031),
        "8gaussians→moons": (0.601, 0.015),
        "normal→moons": (0.130, 0.083),
        "normal→scurve": (0.144, 0.027),
    },
    "I-CFM": {
        "normal→8gaussians": (0.373, 0.202),
        "8gaussians→moons": (1.557, 2.680),
        "normal→moons": (0.178, 0.891),
        "normal→scurve": (0.242, 0.856),
    },
}


def run_one(
    src: str,
    tgt: str,
    method: str,
    seed: int,
    *,
    steps: int,
    batch_size: int,
    n_test: int,
    sigma: float | None,
    lr: float = 1e-3,
) -> dict:
    model = FlowModel(2, method, sigma=sigma, seed=seed)
    t0 = time.perf_counter()
    model.train(
        lambda n, g: toy_sample(src, n, generator=g),
        lambda n, g: toy_sample(tgt, n, generator=g),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    g = torch.Generator().manual_seed(10_000 + seed)
    x0, x1 = toy_sample(src, n_test, generator=g), toy_sample(tgt, n_test, generator=g)
    tr = model.push(x0, return_trajectory=True, n_points=101)
    nfe = tr.nfe  # dopri5 interpolates the grid points: the same evaluations as a 2-point solve
    w2 = wasserstein(tr.end, x1, p=2)
    energy = path_energy(lambda t, x: model.velocity(t, x), tr)
    w2_data = wasserstein(x0, x1, p=2)
    return dict(
        task=f"{src}→{tgt}",
        method=LABEL[method],
        seed=seed,
        w2=w2,
        npe=normalized_path_energy(energy, w2_data**2),
        nfe=nfe,
        seconds=seconds,
        steps=steps,
        n_test=n_test,
    )


def run(
    *,
    steps: int = 20000,
    seeds=(0, 1, 2),
    methods=METHODS,
    batch_size: int = 256,
    n_test: int = 2000,
    sigma: float | None = 0.1,
    sb_sigma: float = 0.5,
    out: str | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Run the benchmark; returns the per-seed table and writes ``toy.csv`` /
    ``toy_summary.csv``."""
    rows = []
    for src, tgt in TASKS:
        for method in methods:
            spec = method_spec(method)
            if spec.path == "lipman" and src != "normal":
                continue  # Lipman FM needs a standard normal source
            for seed in seeds:
                s = sb_sigma if spec.has_score else (spec.sigma if spec.path == "lipman" else sigma)
                rows.append(
                    run_one(
                        src,
                        tgt,
                        method,
                        seed,
                        steps=steps,
                        batch_size=batch_size,
                        n_test=n_test,
                        sigma=s,
                    )
                )
                if verbose:
                    r = rows[-1]
                    print(
                        f"{r['task']:<18} {r['method']:<7} seed {seed}: W2 {r['w2']:.3f}  NPE "
                        f"{r['npe']:.3f}  "
                        f"NFE {r['nfe']}  {r['seconds']:.0f}s",
                        flush=True,
                    )
    for src, tgt in TASKS:  # the sampling floor: W2 between two independent target sets of n_test
        for seed in seeds:
            g = torch.Generator().manual_seed(20_000 + seed)
            a, b = toy_sample(tgt, n_test, generator=g), toy_sample(tgt, n_test, generator=g)
            rows.append(
                dict(
                    task=f"{src}→{tgt}",
                    method="floor: target vs target",
                    seed=seed,
                    w2=wasserstein(a, b, p=2),
                    npe=float("nan"),
                    nfe=0,
                    seconds=0.0,
                    steps=0,
                    n_test=n_test,
                )
            )
    df = pd.DataFrame(rows)
    summary = summarize(df)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_csv(df, Path(out) / "toy.csv", index=False)
        write_csv(summary, Path(out) / "toy_summary.csv")
    if verbose:
        print(
            f"\nW2 on {n_test} test samples per side, {len(seeds)} seeds, {steps} steps (mean ± "
            "std):"
        )
        print(summary.to_string())
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds, next to the published numbers where they exist."""
    g = df.groupby(["task", "method"])
    out = pd.DataFrame(
        {
            "W2": g["w2"].mean().map("{:.3f}".format)
            + " ± "
            + g["w2"].std().fillna(0).map("{:.3f}".format),
            "NPE": g["npe"].mean().map("{:.3f}".format)
            + " ± "
            + g["npe"].std().fillna(0).map("{:.3f}".format),
            "NFE": g["nfe"].median(),
            "train_s": g["seconds"].median().round(1),
        }
    )
    pub_w2, pub_npe = [], []
    for task, method in out.index:
        p = PUBLISHED.get(method, {}).get(task)
        pub_w2.append(f"{p[0]:.3f}" if p else "")
        pub_npe.append(f"{p[1]:.3f}" if p else "")
    out["published_W2"], out["published_NPE"] = pub_w2, pub_npe
    return out
