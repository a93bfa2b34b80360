"""``cellflow bench images``: class-conditional digits, OT-CFM next to I-CFM in one run.

Each method trains the same UNet with the same seed and steps; both are scored by
:func:`cellflow.images._run.score_digits` with one classifier trained on the real training
digits: its accuracy on 1,000 samples (100 per class) relative to its accuracy on the real test
digits, and the Fréchet distance in its feature space, for Euler at fixed NFE and for dopri5.
"""

from __future__ import annotations

import pandas as pd

from .._io import write_json

__all__ = ["run"]


def run(
    methods=("ot", "icfm"),
    *,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
    nfe=(10, 20, 100),
    seed: int = 0,
    progress: bool = False,
    out: str | None = None,
) -> pd.DataFrame:
    from ..images import ImageFlow, load_images, train_digits_classifier
    from ..images._run import score_digits

    x, y, _ = load_images("digits", split="train")
    clf = train_digits_classifier(x, y, seed=seed)
    rows = []
    for method in methods:
        flow = ImageFlow((1, 8, 8), 10, method=method, seed=seed)
        hist = flow.train(
            x,
            y,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            warmup_steps=min(200, steps),
            ema_decay=ema_decay,
            progress=progress,
        )
        for r in score_digits(flow, nfe=nfe, seed=seed, classifier=clf):
            if r["solver"] == "real test digits" and rows:
                continue
            name = "real test digits" if r["solver"] == "real test digits" else method
            rows.append(
                {
                    "method": name,
                    **r,
                    "train_seconds": 0.0 if name == "real test digits" else hist.seconds,
                    "steps_per_second": hist.steps / hist.seconds,
                }
            )
            print(
                f"{name:<17} {r['solver']:<17} NFE {r['nfe']:>5.0f}  accuracy ratio "
                f"{r['accuracy_ratio']:.3f}  "
                f"Frechet {r['frechet']:.2f}  sampling {r['seconds']:.1f} s",
                flush=True,
            )
    df = pd.DataFrame(rows)
    if out:
        write_json(out, {"rows": rows, "steps": steps, "batch_size": batch_size})
    return df
