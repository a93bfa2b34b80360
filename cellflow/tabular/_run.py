"""``cellflow train tabular``: train a generator on a CSV or an embedded table and write the
model, samples and metrics to a folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .._io import check_output_folder, write_csv, write_json
from ..train import distributed

__all__ = ["train_tabular", "read_table"]


def read_table(source: str) -> pd.DataFrame:
    """An embedded table by name (``iris``, ``wine``, ``breast_cancer``) or a CSV file by path."""
    from ..datasets import TABLES, load_table

    if source in TABLES:
        return load_table(source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"{source!r} is neither an embedded table ({', '.join(TABLES)}) nor an existing CSV "
            "file."
        )
    return pd.read_csv(path)


def train_tabular(
    source: str,
    out: str | Path,
    *,
    label: str | None = None,
    method: str = "icfm",
    steps: int = 5000,
    batch_size: int = 256,
    test_fraction: float = 0.2,
    n_samples: int | None = None,
    missing: str = "error",
    seed: int = 0,
    resume: bool = False,
    checkpoint_every: int = 500,
    global_coupling: bool = False,
    progress: bool = True,
) -> dict:
    """Train a :class:`~cellflow.tabular.TabularFlow` and write to ``out``:

    - ``model/`` (reload with ``TabularFlow.load``), ``samples.csv``;
    - ``metrics.json``: per-column W1/KS/TVD and the correlation distance against the training
      rows, and, with a label, machine-learning efficiency on the held-out ``test_fraction``;
    - ``checkpoints/``: resumed from with ``resume=True``.

    Returns the metrics.
    """
    from sklearn.model_selection import train_test_split

    from . import TabularFlow, column_distances, correlation_distance, ml_efficiency

    out = check_output_folder(out)
    if (out / "model" / "model.pt").exists() and not resume:
        raise FileExistsError(
            f"{out} already holds a trained model; choose another --out or pass --resume."
        )
    df = read_table(source)
    test = None
    if label is not None and test_fraction > 0:
        if label not in df.columns:
            raise KeyError(
                f"label column {label!r} is not in the table; columns: {list(df.columns)}."
            )
        df, test = train_test_split(
            df, test_size=test_fraction, stratify=df[label], random_state=seed
        )
        df, test = df.reset_index(drop=True), test.reset_index(drop=True)
    tf = TabularFlow(df, label=label, method=method, missing=missing, seed=seed)
    hist = tf.train(
        steps=steps,
        batch_size=batch_size,
        progress=progress,
        checkpoint_dir=str(out / "checkpoints"),
        checkpoint_every=checkpoint_every,
        resume=resume,
        global_coupling=global_coupling,
    )
    if not distributed.is_main():  # under torchrun, rank 0 writes the results
        return {}
    tf.save(out / "model", overwrite=True)
    synth = tf.sample(n_samples or len(df))
    write_csv(synth, out / "samples.csv", index=False)
    features = [c for c in df.columns if c != label]
    dist = column_distances(df[features], synth[features])
    metrics = {
        "source": str(source),
        "method": tf.model.method,
        "steps": steps,
        "seed": seed,
        "train_rows": len(df),
        "train_seconds": hist.seconds,
        "columns": dist.to_dict(orient="records"),
        "w1_mean": float(dist["w1"].mean()),
        "correlation_distance": correlation_distance(df, synth),
    }
    if test is not None:
        metrics["ml_efficiency"] = ml_efficiency(synth, df, test, label, seed=seed)
    write_json(out / "metrics.json", metrics, default=float)
    return metrics
