r"""`TabularFlow`: generate synthetic rows of a DataFrame with conditional flow matching.

The flow runs from :math:`\mathcal N(0, I)` at :math:`t = 0` to the encoded rows (see
:class:`~cellflow.tabular.TabularEncoder`) at :math:`t = 1`; with ``label=`` the field is
conditioned on the label column, so that samples can be drawn per class.

Example
-------
>>> from cellflow.datasets import load_table
>>> from cellflow.tabular import TabularFlow
>>> df = load_table("iris")
>>> tf = TabularFlow(df, label="target", seed=0)
>>> hist = tf.train(steps=50, progress=False)
>>> fake = tf.sample(20)
>>> list(fake.columns) == list(df.columns), bool((fake.dtypes == df.dtypes).all())
(True, True)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._io import model_folder, read_model_config, write_json
from ..models.flow import FlowModel
from ..train.trainer import TrainHistory
from ._encoder import TabularEncoder

__all__ = ["TabularFlow"]


def _json_name(c):
    """A column name as saved in ``tabular.json``: ints and strings as they are, others as
    strings."""
    if isinstance(c, (np.integer, int)) and not isinstance(c, bool):
        return int(c)
    return c if isinstance(c, str) else str(c)


class TabularFlow:
    """A flow-matching generator of DataFrame rows.

    Parameters
    ----------
    data
        The training table. Its columns, dtypes, ranges and categories are kept.
    label
        Optional column to condition on (classes; at most 100 distinct values). It is not
        generated: :meth:`sample` draws it from the training proportions or takes it from you.
    method, sigma
        The flow matcher (``"icfm"``: I-CFM, default; ``"ot"``, ``"sb"``) and its path noise.
        I-CFM is the default because ``cellflow bench tabular`` measured lower column W1 and
        correlation distance for it than for OT-CFM on wine and breast_cancer, at half the time.
    hidden, activation
        The MLP vector field.
    categorical, missing
        Passed to :class:`~cellflow.tabular.TabularEncoder`.
    seed
        Seeds the weights, the training draws and, by default, sampling.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        label: str | None = None,
        *,
        method: str = "icfm",
        sigma: float | None = None,
        hidden: tuple[int, ...] = (256, 256, 256),
        activation: str = "silu",
        categorical: tuple[str, ...] | list[str] = (),
        missing: str = "error",
        seed: int = 0,
    ):
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"TabularFlow needs a pandas DataFrame, got {type(data).__name__}.")
        if (
            label is not None
            and label not in data.columns
            and str(label) not in map(str, data.columns)
        ):
            raise KeyError(
                f"label column {label!r} is not in the DataFrame; columns: {list(data.columns)}."
            )
        # the encoder and the saved schema name columns by strings; sample() gives back the
        # originals
        self._names = [_json_name(c) for c in data.columns]
        if len(set(map(str, data.columns))) != data.shape[1]:
            raise ValueError(
                f"column names must stay distinct as strings; got {list(data.columns)}."
            )
        if label is not None:
            label = str(label)
        data = data.rename(columns=str)
        self.label = label
        self.columns = [str(c) for c in data.columns]
        features = data.drop(columns=[label]) if label is not None else data
        self.encoder = TabularEncoder(
            categorical=[c for c in categorical if c != label], missing=missing
        ).fit(features)
        self.classes: list = []
        self.class_freq: list[float] = []
        n_classes = 0
        if label is not None:
            y = data[label]
            if y.isna().any():
                raise ValueError(
                    f"label column {label!r} has {int(y.isna().sum())} missing values; drop those "
                    "rows."
                )
            counts = y.value_counts(sort=False)
            if len(counts) > 100:
                raise ValueError(
                    f"label {label!r} has {len(counts)} distinct values; condition on a column "
                    "with "
                    "at most 100 classes (or pass label=None)."
                )
            self.classes = [v.item() if isinstance(v, np.generic) else v for v in counts.index]
            self.class_freq = (counts.to_numpy() / counts.sum()).tolist()
            self.label_dtype = str(y.dtype)
            n_classes = len(self.classes)
        self.model = FlowModel(
            self.encoder.dim,
            method,
            sigma,
            hidden=tuple(hidden),
            activation=activation,
            n_classes=n_classes,
            seed=seed,
        )
        self.seed = int(seed)
        self._data = data

    # ------------------------------------------------------------------ training
    def _target(self, data: pd.DataFrame):
        """A sampler of dequantised encoded rows (and their class indices)."""
        features = data.drop(columns=[self.label]) if self.label is not None else data
        z = torch.from_numpy(self.encoder.encode(features))
        noise = np.concatenate(
            [
                np.full(
                    c.width,
                    1.0
                    if c.kind == "categorical"
                    else (1.0 / c.std if c.kind == "integer" else 0.0),
                )
                for c in self.encoder.columns
            ]
        )
        noise = torch.from_numpy(noise.astype(np.float32))
        y = None
        if self.label is not None:
            lookup = {v: i for i, v in enumerate(self.classes)}
            y = torch.tensor(
                [lookup[v.item() if isinstance(v, np.generic) else v] for v in data[self.label]]
            )

        def draw(n, g):
            idx = torch.randint(z.shape[0], (n,), generator=g)
            x = z[idx] + (torch.rand(n, z.shape[1], generator=g) - 0.5) * noise
            return (x, y[idx]) if y is not None else x

        return draw

    def train(
        self,
        steps: int = 5000,
        batch_size: int = 256,
        *,
        lr: float = 1e-3,
        ema_decay: float | None = 0.999,
        progress: bool = True,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        **fit_kwargs,
    ) -> TrainHistory:
        """Train the field; keyword arguments go to :meth:`cellflow.FlowModel.train`."""
        d = self.encoder.dim
        source = lambda n, g: torch.randn(n, d, generator=g)  # noqa: E731
        return self.model.train(
            source,
            self._target(self._data),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            ema_decay=ema_decay,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            **fit_kwargs,
        )

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int | None = None,
        labels=None,
        *,
        steps: int = 100,
        solver: str = "euler",
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Draw ``n`` synthetic rows (default: as many as the training table).

        Parameters
        ----------
        labels
            For a conditioned model: one label value per row, or a single value for all rows
            (default: drawn from the training proportions).
        steps, solver
            ODE solver (``"euler"``, ``"midpoint"``, ``"rk4"`` with ``steps``; or ``"dopri5"``).
        seed
            Seeds the noise and the labels (default: the model's seed).
        """
        g = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        if labels is not None and n is None:
            n = 1 if np.ndim(labels) == 0 else len(labels)
        n = len(self._data) if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a whole number of rows >= 0, got {n!r}.")
        n = int(n)
        cond = None
        if self.label is not None:
            lookup = {v: i for i, v in enumerate(self.classes)}
            if labels is None:
                cond = (
                    torch.multinomial(
                        torch.tensor(self.class_freq), n, replacement=True, generator=g
                    )
                    if n
                    else torch.zeros(0, dtype=torch.long)
                )
            else:
                labels = [labels] * n if np.ndim(labels) == 0 else list(labels)
                bad = sorted({str(v) for v in labels if v not in lookup})
                if bad or len(labels) != n:
                    raise ValueError(
                        f"labels must be {n} values among {self.classes}; got unknown {bad[:5]}."
                        if bad
                        else f"got {len(labels)} labels for n={n} rows."
                    )
                cond = torch.tensor([lookup[v] for v in labels])
        elif labels is not None:
            raise ValueError(
                "this model has no label column; build it with label=... to sample per class."
            )
        x0 = torch.randn(n, self.encoder.dim, generator=g)
        if n == 0:  # an empty table with the training columns and dtypes
            z = torch.zeros(0, self.encoder.dim)
        else:
            z = self.model.push(
                x0, solver=solver, steps=None if solver == "dopri5" else steps, cond=cond
            )
        df = self.encoder.decode(z.numpy())
        if self.label is not None:
            y = pd.Series([self.classes[i] for i in cond.tolist()], name=self.label)
            df[self.label] = y.astype(self.label_dtype) if self.label_dtype != "object" else y
        df = df[self.columns]
        df.columns = pd.Index(getattr(self, "_names", self.columns))
        return df

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the flow (``model.pt``, ``config.json``) and the table schema
        (``tabular.json``)."""
        meta = {
            "label": self.label,
            "columns": self.columns,
            "encoder": self.encoder.to_dict(),
            "classes": self.classes,
            "class_freq": self.class_freq,
            "label_dtype": getattr(self, "label_dtype", None),
            "n_rows": len(self._data),
            "names": self._names,
        }
        with model_folder(path, overwrite) as tmp:
            self.model._write_files(tmp)
            write_json(tmp / "tabular.json", meta)

    @classmethod
    def load(cls, path: str | Path) -> "TabularFlow":
        """Load a generator written by :meth:`save` (no training data needed to sample)."""
        path = Path(path)
        read_model_config(path, "TabularFlow")  # readable, and every file as it was saved
        if not (path / "tabular.json").exists():
            raise FileNotFoundError(
                f"no tabular.json in {path}: is it a folder written by TabularFlow.save?"
            )
        meta = json.loads((path / "tabular.json").read_text())
        self = cls.__new__(cls)
        self.label, self.columns = meta["label"], meta["columns"]
        self._names = meta.get("names", self.columns)
        self.encoder = TabularEncoder.from_dict(meta["encoder"])
        self.classes, self.class_freq, self.label_dtype = (
            meta["classes"],
            meta["class_freq"],
            meta["label_dtype"],
        )
        self.model = FlowModel.load(path)
        self.seed = self.model.seed
        self._data = pd.DataFrame(index=range(meta["n_rows"]))
        return self

    def __repr__(self) -> str:
        return (
            f"TabularFlow({len(self.columns)} columns, label={self.label!r}, "
            f"method={self.model.method!r}, "
            f"encoded dim={self.encoder.dim})"
        )
