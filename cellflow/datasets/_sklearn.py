"""Small data sets that ship inside scikit-learn (no download): tables for tabular flow
matching and the 8×8 digits for images.

Example
-------
>>> from cellflow.datasets import load_table, load_digits_images
>>> load_table("wine").shape
(178, 14)
>>> x, y = load_digits_images()
>>> tuple(x.shape), float(x.min()), float(x.max())
((1797, 1, 8, 8), -1.0, 1.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

__all__ = ["TABLES", "load_table", "load_digits_images"]

TABLES = ("iris", "wine", "breast_cancer")


def load_table(name: str) -> pd.DataFrame:
    """A scikit-learn table as a DataFrame: its features plus the integer class column ``target``.

    Parameters
    ----------
    name
        ``"iris"`` (150 × 4), ``"wine"`` (178 × 13) or ``"breast_cancer"`` (569 × 30).
    """
    from sklearn import datasets

    if name not in TABLES:
        raise ValueError(
            f"unknown table {name!r}; the embedded tables are {', '.join(TABLES)} "
            "(or pass a CSV path where a path is accepted)."
        )
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.frame.reset_index(drop=True)


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as float32 images of shape (1, 8, 8) scaled to
    [-1, 1] (pixel values 0..16), and their int64 labels 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images.astype(np.float32) / 8.0 - 1.0)[:, None])
    return x, torch.from_numpy(d.target.astype(np.int64))
