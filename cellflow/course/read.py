"""Reading a time course out of an AnnData, with errors that name the fix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._defaults import BENCHMARK_N_PCS


def get_times(adata, time_key: str, *, min_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell sampling times as floats, and the sorted distinct times.

    Accepts numbers, or categories/strings whose labels are numbers ("2", "4.5").
    """
    if time_key not in adata.obs:
        cols = ", ".join(map(repr, list(adata.obs.columns)[:20])) or "none"
        raise KeyError(
            f"time_key {time_key!r} is not a column of adata.obs (columns: {cols}). "
            "Pass the column that holds each cell's sampling time, e.g. time_key='day'."
        )
    col = adata.obs[time_key]
    if pd.api.types.is_bool_dtype(col.dtype):
        raise ValueError(
            f"adata.obs[{time_key!r}] holds booleans, not sampling times; pass the column of "
            "times (numbers, or categories labelled by numbers)."
        )
    values = col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & col.notna()
    if bad.any():
        examples = ", ".join(map(repr, pd.unique(col[bad].astype(str))[:5]))
        raise ValueError(
            f"adata.obs[{time_key!r}] must hold numbers (or categories labelled by numbers); "
            f"found {examples}. Map the labels to numbers first, e.g. "
            f"adata.obs['day'] = adata.obs[{time_key!r}].map({{'Day 0': 0, ...}})."
        )
    if numeric.isna().any():
        raise ValueError(
            f"adata.obs[{time_key!r}] has {int(numeric.isna().sum())} missing values; "
            "drop those cells first (adata = adata[adata.obs[time_key].notna()].copy())."
        )
    t = numeric.to_numpy(dtype=float)
    if not np.isfinite(t).all():
        raise ValueError(
            f"adata.obs[{time_key!r}] has {int((~np.isfinite(t)).sum())} infinite values; "
            "drop those cells first (adata = adata[np.isfinite(adata.obs[time_key])].copy())."
        )
    times = np.unique(t)
    if len(times) < min_points:
        raise ValueError(
            f"adata.obs[{time_key!r}] has {len(times)} distinct time point(s) {times.tolist()}; "
            f"at least {min_points} are needed."
        )
    return t, times


def paper_n_pcs(adata, use_rep: str) -> int:
    """The paper's 5 leading columns of ``use_rep``, or all of a narrower representation (a 2-D
    layout such as ``X_spring``): the default width of the benchmark commands. A missing
    ``use_rep`` gives 5, and :func:`get_representation` then names the missing key."""
    rep = adata.X if use_rep == "X" else adata.obsm.get(use_rep)
    return BENCHMARK_N_PCS if rep is None else min(BENCHMARK_N_PCS, rep.shape[1])


def check_n_pcs(n_pcs) -> int | None:
    """``n_pcs`` as an int (or ``None``); a fraction, a string or a number below 1 is refused."""
    if n_pcs is None:
        return None
    if isinstance(n_pcs, bool) or not isinstance(n_pcs, (int, np.integer)) or n_pcs < 1:
        raise ValueError(
            f"n_pcs must be a whole number of leading columns (>= 1) or None for all of them; "
            f"got {n_pcs!r}."
        )
    return int(n_pcs)


def dense_columns(M, n_cols: int | None = None) -> np.ndarray:
    """The leading ``n_cols`` columns of an ``obsm`` entry (an array, a scipy sparse matrix or a
    DataFrame) as a dense float64 array."""
    import scipy.sparse as sp

    if sp.issparse(M):  # slice first, densify only what is used
        M = (M.tocsc()[:, :n_cols] if n_cols is not None else M).toarray()
    elif hasattr(M, "to_numpy"):  # a DataFrame
        M = M.to_numpy()
    M = np.asarray(M)
    if M.ndim != 2:
        return M
    return np.asarray(M[:, :n_cols] if n_cols is not None else M, dtype=np.float64)


def representation_matrix(adata, use_rep: str, n_pcs: int | None):
    """``adata.obsm[use_rep]`` as it is stored (an array, a sparse matrix; a DataFrame as its
    array), checked to be 2-D with at least ``n_pcs`` columns; nothing is copied or densified."""
    n_pcs = check_n_pcs(n_pcs)
    if use_rep not in adata.obsm:
        keys = ", ".join(map(repr, adata.obsm.keys())) or "none"
        hint = " Run sc.pp.pca(adata) first." if use_rep == "X_pca" else ""
        raise KeyError(f"use_rep {use_rep!r} is not in adata.obsm (keys: {keys}).{hint}")
    M = adata.obsm[use_rep]
    if np.ndim(M) != 2 and not hasattr(M, "toarray"):
        raise ValueError(
            f"adata.obsm[{use_rep!r}] must be 2-D (cells x features), got shape {np.shape(M)}."
        )
    n_col = M.shape[1]
    if n_pcs is not None and n_pcs > n_col:
        raise ValueError(
            f"n_pcs={n_pcs} but adata.obsm[{use_rep!r}] has {n_col} columns; "
            f"choose 1 <= n_pcs <= {n_col} (or recompute it with more components)."
        )
    return M.to_numpy() if hasattr(M, "to_numpy") else M


def get_representation(adata, use_rep: str, n_pcs: int | None) -> np.ndarray:
    """``adata.obsm[use_rep][:, :n_pcs]`` as float64 (a sparse ``obsm`` entry is densified),
    checked for shape and finiteness (:func:`representation_matrix`)."""
    n_pcs = check_n_pcs(n_pcs)
    M = representation_matrix(adata, use_rep, n_pcs)
    try:
        X = dense_columns(M, n_pcs)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"adata.obsm[{use_rep!r}] must hold numbers; converting it failed ({e})."
        ) from None
    finite = np.isfinite(X).all(1)
    if not finite.all():
        raise ValueError(
            f"adata.obsm[{use_rep!r}] has NaN or inf in {int((~finite).sum())} cells; "
            "remove those cells or recompute the representation."
        )
    return X


@dataclass
class Standardizer:
    """Centring and scaling of the representation before the network sees it.

    ``whiten=True`` standardises each feature (the paper's 5-PC setting). Otherwise the data are
    centred and divided by one scalar, the root mean feature variance: geometry (and so every
    OT coupling) is unchanged, but the network works at unit scale whatever the PCs' units.
    Results are always returned in the representation's units.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, whiten: bool) -> "Standardizer":
        return cls.from_moments(X.mean(0), X.var(0), whiten)

    @classmethod
    def from_moments(cls, mean: np.ndarray, var: np.ndarray, whiten: bool) -> "Standardizer":
        """From column means and variances (e.g. accumulated over blocks of a sparse matrix)."""
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
        if not whiten:
            s = float(np.sqrt(np.mean(var)))
            return cls(mean, np.full(len(mean), s if s > 0 else 1.0))
        sd = np.sqrt(var)
        return cls(mean, np.where(sd > 0, sd, 1.0))

    def forward(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        return Z * self.scale + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        return cls(np.asarray(d["mean"]), np.asarray(d["scale"]))


def gene_names(adata, gene_symbols: str | None = None) -> np.ndarray:
    """Each gene's name: ``var_names``, or the ``var`` column ``gene_symbols`` (scanpy's
    argument of that name), as strings; a missing column is named with the columns there are."""
    if gene_symbols is None:
        return np.asarray(adata.var_names, dtype=str)
    if gene_symbols not in adata.var:
        raise KeyError(
            f"gene_symbols={gene_symbols!r} is not a column of adata.var (columns: "
            f"{', '.join(map(str, adata.var.columns)) or 'none'}); name the column of gene "
            "names, or leave it out to use var_names."
        )
    return adata.var[gene_symbols].astype(str).to_numpy()


def gene_index(adata, genes, gene_symbols: str | None = None) -> tuple[list[str], np.ndarray]:
    """``genes`` (names in ``var_names`` or in ``var[gene_symbols]``) and their column indices
    (the first column of a repeated name); a ``KeyError`` lists those not found."""
    import pandas as pd

    genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    if not genes:
        raise ValueError("genes is empty; name at least one gene.")
    names = pd.Index(gene_names(adata, gene_symbols))
    first = ~names.duplicated()
    lookup = pd.Index(names[first])
    idx = lookup.get_indexer(genes)
    missing = [g for g, i in zip(genes, idx) if i < 0]
    if missing:
        where = "adata.var_names" if gene_symbols is None else f"adata.var[{gene_symbols!r}]"
        raise KeyError(f"genes not in {where}: {missing[:10]}.")
    return genes, np.flatnonzero(first)[idx]


#: the largest value of log-normalised expression (log1p of 1e4 counts per cell is 9.2): above
#: it, non-integer values are taken as normalised but not logged (TPM, FPKM)
LOG_MAX = 20.0


def sampled_values(M, n_rows: int = 1000) -> np.ndarray:
    """The values of up to ``n_rows`` evenly spaced rows of ``M`` (a sparse matrix's stored
    values), enough to tell what a matrix holds without reading all of it."""
    import scipy.sparse as sp

    n = M.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, n_rows)).astype(int))
    block = M[rows]
    return np.asarray(block.data if sp.issparse(block) else block).ravel()


def expression_kind(vals: np.ndarray) -> str:
    """What expression values are: ``"counts"`` (non-negative whole numbers), ``"log"``
    (non-negative, at most :data:`LOG_MAX`), ``"normalised"`` (non-negative, larger: TPM, FPKM)
    or ``"scaled"`` (negative values: centred or scaled).

    >>> expression_kind(np.array([0.0, 3.0, 12.0])), expression_kind(np.array([0.5, 2.1]))
    ('counts', 'log')
    """
    if not vals.size:
        return "counts"
    if vals.min() < 0:
        return "scaled"
    if np.all(np.equal(np.mod(vals, 1), 0)):
        return "counts"
    return "log" if vals.max() <= LOG_MAX else "normalised"
