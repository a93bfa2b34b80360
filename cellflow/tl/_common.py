"""Helpers shared by the ``cellflow.tl`` functions: checking a model against an AnnData,
selecting cells, and refusing silent overwrites."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..course.read import get_times
from ..models.cells import CellFlow


def check_model(adata, model) -> None:
    """Raise if ``model`` is not a :class:`cellflow.CellFlow` trained on ``adata``
    (:meth:`cellflow.course.TimeCourse.check`: the same cells, values of the representation,
    times and growth prior; for ``use_rep="X"``, an ``adata.X`` unchanged since training)."""
    if not isinstance(model, CellFlow):
        raise TypeError(f"model must be a cellflow.CellFlow, got {type(model).__name__}.")
    model.course.check(adata)


def model_digest(model) -> str:
    """SHA-1 of a model's velocity weights and its held-out time: which model a result written
    to the AnnData came from (a result of another model is not reused silently)."""
    import hashlib

    h = hashlib.sha1(repr(model.holdout).encode())
    for name, value in model.net.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cell_times(adata, model) -> np.ndarray:
    """Each cell's time, read from ``adata`` (checked by :func:`check_model` to be the model's)."""
    return get_times(adata, model.course.time_key, min_points=1)[0]


def obs_index(adata):
    """The index of a per-cell table written to ``adata.obsm``: ``obs_names``; for a
    :class:`cellflow.LazyAnnData` a stand-in, which its writer replaces by the names on disk
    (millions of names are never built in memory)."""
    from ..course.ondisk import is_lazy

    return pd.RangeIndex(adata.n_obs) if is_lazy(adata) else adata.obs_names


def rep_basis(use_rep: str) -> str:
    """``"X_pca"`` → ``"pca"``: the suffix scVelo and CellRank use in ``velocity_<basis>``."""
    return use_rep[2:] if use_rep.startswith("X_") else use_rep


def select_cells(adata, cells, what: str) -> np.ndarray:
    """A boolean mask over ``adata.obs`` from a mask, integer indices, obs names or
    ``{obs_key: value_or_values}``."""
    if isinstance(cells, dict):
        mask = np.ones(adata.n_obs, dtype=bool)
        for key, values in cells.items():
            if key not in adata.obs:
                raise KeyError(f"{what}: {key!r} is not a column of adata.obs.")
            values = [values] if np.isscalar(values) else list(values)
            col = adata.obs[key]
            hit = col.isin(values).to_numpy()
            if not hit.any():
                raise ValueError(
                    f"{what}: no cell has adata.obs[{key!r}] in {values}; "
                    f"values present: {pd.unique(col.astype(str))[:10].tolist()}."
                )
            mask &= hit
        return mask
    arr = np.asarray(cells)
    if arr.dtype == bool:
        if arr.shape != (adata.n_obs,):
            raise ValueError(
                f"{what}: a boolean mask needs length n_obs={adata.n_obs}, got {arr.shape}."
            )
        return arr
    if arr.dtype.kind in "iu":
        mask = np.zeros(adata.n_obs, dtype=bool)
        mask[arr] = True
        return mask
    if not adata.obs_names.is_unique:
        dup = int(adata.obs_names.duplicated().sum())
        raise ValueError(
            f"{what}: cells are given by name, but adata.obs_names has {dup} duplicated names, so "
            "a "
            "name may mean several cells. Run adata.obs_names_make_unique() first (before "
            "training), "
            "or select the cells with a boolean mask or {obs_key: value}."
        )
    mask = adata.obs_names.isin(arr.astype(str))
    if mask.sum() != len(np.unique(arr.astype(str))):
        raise KeyError(f"{what}: {len(arr) - int(mask.sum())} names are not in adata.obs_names.")
    return mask


def time_labels(adata, time_key: str, times: np.ndarray) -> dict[float, object]:
    """The original ``obs[time_key]`` label of each numeric time (for keys users recognise)."""
    col = adata.obs[time_key]
    labels = pd.unique(col)
    out = {}
    for lab in labels:
        out[float(pd.to_numeric(str(lab)))] = lab.item() if hasattr(lab, "item") else lab
    return {float(t): out[float(t)] for t in times}
