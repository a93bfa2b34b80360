r"""Encode a pandas DataFrame into a real matrix for flow matching, and decode samples back.

Each column gets one of three kinds:

``continuous``
    Floats, standardised: :math:`z = (x - \mu) / s`; decoded values are clipped to the
    training range.
``integer``
    Integer dtypes. Dequantised while training (uniform noise in :math:`[-\tfrac12, \tfrac12)`
    added to the integers before standardising, so the model sees a density rather than
    spikes); decoded by rounding and clipping to the training range.
``categorical``
    object, string, category and bool columns (or any column named in ``categorical=``).
    One-hot, with the block centred and scaled to :math:`\pm 1`, plus uniform dequantisation
    noise of half the gap while training; decoded by the argmax of the block, so every decoded
    value is one of the training categories.

Example
-------
>>> import pandas as pd
>>> from cellflow.tabular import TabularEncoder
>>> df = pd.DataFrame({"x": [0.5, 1.5, 2.0], "n": [1, 2, 3], "c": ["a", "b", "a"]})
>>> enc = TabularEncoder().fit(df)
>>> enc.dim, [c.kind for c in enc.columns]
(4, ['continuous', 'integer', 'categorical'])
>>> pd.testing.assert_frame_equal(enc.decode(enc.encode(df)), df)   # same values and dtypes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

__all__ = ["TabularEncoder", "ColumnSpec"]

KINDS = ("continuous", "integer", "categorical")


@dataclass
class ColumnSpec:
    """How one column is encoded (JSON-serialisable)."""

    name: str
    kind: str
    dtype: str
    mean: float = 0.0
    std: float = 1.0
    low: float | None = None
    high: float | None = None
    categories: list = field(default_factory=list)
    ordered: bool = False

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "categorical" else 1


def _kind_of(s: pd.Series) -> str:
    if (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s)
        or not pd.api.types.is_numeric_dtype(s)
    ):
        return "categorical"
    return "integer" if pd.api.types.is_integer_dtype(s) else "continuous"


def _py(v):
    """A category as a JSON-friendly Python scalar."""
    return v.item() if isinstance(v, np.generic) else v


class TabularEncoder:
    """DataFrame ↔ real matrix, column by column (see the module docstring for the kinds).

    Parameters
    ----------
    categorical
        Column names to treat as categorical whatever their dtype (e.g. integer codes).
    missing
        ``"error"`` (default): refuse missing values, naming the columns; ``"impute"``: fill
        them with the column mean (continuous), median (integer) or mode (categorical)
        before fitting and encoding.
    """

    def __init__(self, categorical: list[str] | tuple[str, ...] = (), missing: str = "error"):
        if missing not in ("error", "impute"):
            raise ValueError(f"missing must be 'error' or 'impute', got {missing!r}.")
        self.categorical = list(categorical)
        self.missing = missing
        self.columns: list[ColumnSpec] = []
        self._fill: dict = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, df: pd.DataFrame) -> "TabularEncoder":
        """Learn the kind, scale, range and categories of every column of ``df``."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}.")
        if df.shape[0] < 2 or df.shape[1] == 0:
            raise ValueError(f"need at least 2 rows and 1 column, got shape {df.shape}.")
        unknown = [c for c in self.categorical if c not in df.columns]
        if unknown:
            raise KeyError(
                f"categorical columns {unknown} are not in the DataFrame; columns: "
                f"{list(df.columns)}."
            )
        self.columns, self._fill = [], {}
        for name in df.columns:
            s = df[name]
            if (
                pd.api.types.is_datetime64_any_dtype(s)
                or pd.api.types.is_timedelta64_dtype(s)
                or isinstance(s.dtype, pd.PeriodDtype)
            ):
                raise TypeError(
                    f"column {name!r} holds dates or durations ({s.dtype}), which the flow cannot "
                    f"model as they are; turn them into numbers first, e.g. df[{name!r}] = "
                    f"(df[{name!r}] - df[{name!r}].min()).dt.days, or drop the column."
                )
            kind = "categorical" if name in self.categorical else _kind_of(s)
            if s.isna().any():
                if self.missing == "error":
                    self._refuse_missing(df)
                if kind == "categorical":
                    self._fill[name] = _py(s.mode(dropna=True).iloc[0])
                else:
                    self._fill[name] = float(
                        s.mean() if kind == "continuous" else np.round(s.median())
                    )
                s = s.fillna(self._fill[name])
            spec = ColumnSpec(name=str(name), kind=kind, dtype=str(s.dtype))
            if kind == "categorical":
                if isinstance(s.dtype, pd.CategoricalDtype):  # keep the user's category order
                    spec.categories = [_py(c) for c in s.cat.categories]
                    spec.ordered = bool(s.cat.ordered)
                else:
                    spec.categories = sorted(
                        (_py(c) for c in pd.unique(s)), key=lambda v: (str(type(v)), v)
                    )
                if len(spec.categories) < 2:
                    spec.categories = spec.categories + [
                        None
                    ]  # a constant column still decodes to itself
            else:
                x = s.to_numpy(dtype=float)
                spec.mean, spec.std = float(x.mean()), float(x.std()) or 1.0
                spec.low, spec.high = float(x.min()), float(x.max())
            self.columns.append(spec)
        return self

    def _refuse_missing(self, df: pd.DataFrame):
        bad = {str(c): int(n) for c, n in df.isna().sum().items() if n}
        raise ValueError(
            f"missing values in columns {bad} (column: count). Drop those rows (df.dropna()), "
            "impute them "
            "yourself, or pass missing='impute' to fill with the mean/median/mode."
        )

    @property
    def dim(self) -> int:
        """Width of the encoded matrix."""
        return sum(c.width for c in self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def _check_fitted(self):
        if not self.columns:
            raise RuntimeError("the encoder is not fitted; call fit(df) first.")

    # ------------------------------------------------------------------ encode / decode
    def encode(
        self, df: pd.DataFrame, *, dequantize: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """The float32 matrix of ``df`` (same columns as at fit time).

        ``dequantize=True`` adds the uniform noise described above (for training batches).
        """
        self._check_fitted()
        missing_cols = [c.name for c in self.columns if c.name not in df.columns]
        if missing_cols:
            raise KeyError(f"columns {missing_cols} were present at fit time but are missing now.")
        if dequantize and rng is None:
            rng = np.random.default_rng(0)
        blocks = []
        for c in self.columns:
            s = df[c.name]
            if s.isna().any():
                if self.missing == "error":
                    self._refuse_missing(df[self.names])
                s = s.fillna(self._fill.get(c.name, c.mean))
            if c.kind == "categorical":
                lookup = {v: i for i, v in enumerate(c.categories)}
                codes = s.map(lambda v: lookup.get(_py(v), -1)).to_numpy()
                if (codes < 0).any():
                    new = sorted({str(v) for v, k in zip(s, codes) if k < 0})[:5]
                    raise ValueError(
                        f"column {c.name!r} has categories not seen at fit time: {new}."
                    )
                block = -np.ones((len(s), c.width))
                block[np.arange(len(s)), codes] = 1.0
                if dequantize:
                    block += rng.uniform(-0.5, 0.5, block.shape)
            else:
                x = s.to_numpy(dtype=float)
                if dequantize and c.kind == "integer":
                    x = x + rng.uniform(-0.5, 0.5, x.shape)
                block = ((x - c.mean) / c.std)[:, None]
            blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def decode(self, z: np.ndarray) -> pd.DataFrame:
        """A DataFrame with the fitted columns and dtypes from an encoded matrix (e.g. samples)."""
        self._check_fitted()
        z = np.asarray(z, dtype=float)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected an array of shape (n, {self.dim}), got {z.shape}.")
        out, j = {}, 0
        for c in self.columns:
            block = z[:, j : j + c.width]
            j += c.width
            if c.kind == "categorical":
                cats = c.categories[:-1] if c.categories[-1] is None else c.categories
                values = [cats[k] for k in block[:, : len(cats)].argmax(1)]
                if c.dtype == "category":
                    col = pd.Categorical(values, categories=cats, ordered=c.ordered)
                elif c.dtype == "bool":
                    col = np.asarray(values, dtype=bool)
                else:
                    col = (
                        pd.array(values, dtype=c.dtype)
                        if c.dtype not in ("object",)
                        else np.asarray(values, dtype=object)
                    )
            else:
                x = np.clip(block[:, 0] * c.std + c.mean, c.low, c.high)
                x = np.round(x).astype(np.int64) if c.kind == "integer" else x
                # pandas' nullable dtypes ("Int64", "Float64") are not NumPy dtypes: cast through a
                # Series
                col = pd.Series(x, copy=False).astype(c.dtype)
            out[c.name] = col
        return pd.DataFrame(out)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "categorical": self.categorical,
            "missing": self.missing,
            "fill": self._fill,
            "columns": [asdict(c) for c in self.columns],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TabularEncoder":
        enc = cls(d.get("categorical", ()), d.get("missing", "error"))
        enc.columns = [ColumnSpec(**c) for c in d["columns"]]
        enc._fill = dict(d.get("fill", {}))
        return enc
