"""What identifies the AnnData a model was trained on, by content: the cells (their number and
names), the values of the representation, each cell's time and its growth prior, each as a
SHA-1 digest (:func:`fingerprint`); :func:`fingerprint_differences` says what differs.

A rerun PCA (signs flip), an in-place ``sc.pp.scale``, times given to other cells or a growth
prior scored again all change a digest, so a model is never applied to data it was not trained
on without a word. For ``use_rep="X"`` the representation digest reads 256 evenly spaced rows,
so that a large, sparse or on-disk X costs one small read.

Example
-------
>>> import numpy as np, anndata as ad
>>> a = ad.AnnData(obs={"day": np.repeat([0, 1], 5)})
>>> a.obsm["X_pca"] = np.arange(20.0).reshape(10, 2)
>>> saved = fingerprint(a, "X_pca", "day", 2)
>>> a.obsm["X_pca"][0, 0] = -1.0
>>> fingerprint_differences(a, "X_pca", saved, "day")[0].startswith("the values of obsm")
True
"""

from __future__ import annotations

import hashlib

import numpy as np

from .read import get_times
from .store import RowSource, representation_shape

__all__ = [
    "fingerprint",
    "fingerprint_differences",
    "mismatch_error",
    "representation_digest",
    "source_digest",
    "values_differ",
]


_DIGEST_ROWS, _DIGEST_BLOCK = 256, 32  # rows of X that its digest reads, and rows per read


def representation_digest(adata, use_rep: str, n_cols: int) -> str:
    """SHA-1 of the values the model reads: the leading ``n_cols`` columns of ``obsm[use_rep]``
    as float64, hashed a block of rows at a time (the same digest as of the whole array, without
    its float64 copy), or, for ``use_rep="X"``, of 256 evenly spaced rows of them (read 32 at a
    time, so that a digest of a large, sparse or backed X costs one small read). A sign flip, a
    rerun PCA or an in-place ``sc.pp.scale`` changes it."""
    if use_rep == "X":
        return source_digest(RowSource.from_adata(adata, "X", n_cols))
    M = adata.obsm[use_rep]
    h = hashlib.sha1()
    for _, block in RowSource(M.to_numpy() if hasattr(M, "to_numpy") else M, n_cols).blocks():
        h.update(np.ascontiguousarray(block, dtype=np.float64).tobytes())
    return h.hexdigest()


def source_digest(source) -> str:
    """:func:`representation_digest` of a :class:`cellflow.course.store.RowSource` (``adata.X``)."""
    n = source.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, _DIGEST_ROWS)).round().astype(np.int64))
    h = hashlib.sha1()
    for start in range(0, len(rows), _DIGEST_BLOCK):
        h.update(
            np.ascontiguousarray(
                source.rows(rows[start : start + _DIGEST_BLOCK]), dtype=np.float64
            ).tobytes()
        )
    return h.hexdigest()


def names_digest(names, chunk: int = 100_000) -> str:
    """SHA-1 of the names joined by newlines, hashed ``chunk`` names at a time (the same digest
    as of the whole joined string, without building it for millions of cells)."""
    h = hashlib.sha1()
    for start in range(0, len(names), chunk):
        part = "\n".join(map(str, names[start : start + chunk]))
        h.update((("\n" if start else "") + part).encode())
    return h.hexdigest()


def times_digest(t: np.ndarray) -> str:
    """SHA-1 of each cell's time (float64, in ``obs`` order)."""
    return hashlib.sha1(np.ascontiguousarray(t, dtype=np.float64).tobytes()).hexdigest()


def growth_digest(adata, growth_key: str) -> str:
    """SHA-1 of each cell's growth prior ``obs[growth_key]`` (float64, in ``obs`` order)."""
    values = np.asarray(adata.obs[growth_key], dtype=np.float64)
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest()


def fingerprint(
    adata,
    use_rep: str,
    time_key: str | None = None,
    n_cols: int | None = None,
    growth_key: str | None = None,
    *,
    rep_sha1: str | None = None,
) -> dict:
    """What identifies the AnnData a model was trained on: the number of cells, a hash of their
    names, the shape of the representation, and (given ``time_key``, ``n_cols`` and
    ``growth_key``) digests of the representation's values (:func:`representation_digest`), of
    the cells' times and of their growth prior. ``rep_sha1``: the representation's digest when
    the caller has hashed it already (in the same pass that read it for something else)."""
    names = names_digest(adata.obs_names)
    fp = {
        "n_obs": int(adata.n_obs),
        "obs_names_sha1": names,
        "rep_shape": list(representation_shape(adata, use_rep)),
    }
    if n_cols is not None:
        fp["n_cols"] = int(n_cols)
        fp["rep_sha1"] = rep_sha1 or representation_digest(adata, use_rep, n_cols)
    if time_key is not None:
        t, times = get_times(adata, time_key, min_points=1)
        fp["times"] = times.tolist()
        fp["times_sha1"] = times_digest(t)
    if growth_key is not None:
        fp["growth_key"] = growth_key
        fp["growth_sha1"] = growth_digest(adata, growth_key)
    return fp


def values_differ(use_rep: str, n_cols: int) -> str:
    """The difference :func:`fingerprint_differences` reports for other values of the
    representation."""
    rep = "X" if use_rep == "X" else f"obsm[{use_rep!r}]"
    return (
        f"the values of {rep} (its first {n_cols} columns) differ from those it was trained on "
        "(a rerun PCA flips signs; sc.pp.scale and other in-place steps change values)"
    )


def fingerprint_differences(
    adata, use_rep: str, saved: dict, time_key: str | None = None, *, values: bool = True
) -> list[str]:
    """What differs between ``adata`` and a saved fingerprint (empty when it is the same data).
    ``values=False`` leaves out the representation's values (one pass over all of them), for a
    caller that reads them anyway and compares their digest itself.

    Fingerprints saved before the value digests existed are compared on what they hold."""
    rep = "X" if use_rep == "X" else f"obsm[{use_rep!r}]"
    fp = fingerprint(adata, use_rep)
    out = [
        f"{label}: saved {saved[k]}, given {fp[k]}"
        for k, label in [
            ("n_obs", "number of cells"),
            ("obs_names_sha1", "cell names (obs_names)"),
            ("rep_shape", f"shape of {rep}"),
        ]
        if fp[k] != saved[k]
    ]
    if out:
        return out
    if (
        values
        and "rep_sha1" in saved
        and representation_digest(adata, use_rep, saved["n_cols"]) != saved["rep_sha1"]
    ):
        out.append(values_differ(use_rep, saved["n_cols"]))
    if (
        time_key is not None and "times" in saved and time_key in adata.obs
    ):  # a missing column: get_times says so
        t, times = get_times(adata, time_key, min_points=1)
        if times.tolist() != saved["times"]:
            out.append(
                f"the time points in obs[{time_key!r}]: saved {saved['times']}, given "
                f"{times.tolist()}"
            )
        elif "times_sha1" in saved and times_digest(t) != saved["times_sha1"]:
            out.append(
                f"the cells' times in obs[{time_key!r}] (the same time points, given to other "
                "cells)"
            )
    key = saved.get("growth_key")
    if key is not None:
        if key not in adata.obs:
            out.append(f"obs has no column {key!r}, the growth prior the model was trained with")
        else:
            try:
                same = growth_digest(adata, key) == saved["growth_sha1"]
            except (TypeError, ValueError):
                same = False
            if not same:
                out.append(
                    f"the growth prior obs[{key!r}] differs from the one the model was trained "
                    "with (scored again, or edited)"
                )
    return out


def mismatch_error(differences: list[str]) -> ValueError:
    """The error for an AnnData that is not the one a model was trained on."""
    return ValueError(
        "this AnnData is not the one the model was trained on: "
        + "; ".join(differences)
        + ". Pass the AnnData the model was trained on, as it was then, or train a new model on "
        "this one (cf.CellFlow(adata, ...).train())."
    )
