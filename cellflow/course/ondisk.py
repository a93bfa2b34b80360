r"""An ``.h5ad`` file read on demand: a time course of millions of cells without loading it.

``anndata.read_h5ad(path, backed="r")`` leaves ``X`` on disk but loads ``obs`` (with every
cell's name) and every ``obsm`` array whole: 3.6 GB for a 10-million-cell file whose
representation is 2 GB. :class:`LazyAnnData` opens the file with h5py and reads nothing until it
is asked: ``obs[key]`` reads that one column, ``obsm[key]`` is the on-disk dataset itself
(sliced a block of rows at a time by :class:`cellflow.course.TimeCourse`, drawn a minibatch at a
time by training), and the cells' names are read in chunks (for the fingerprint). Memory then
grows with what a computation holds, not with the file.

Opened with ``mode="r+"``, results are written into the file as anndata writes them, so that
``anndata.read_h5ad`` reads them back: :func:`cellflow.tl.velocity` writes
``obsm["velocity_pca"]`` a block of cells at a time (no in-memory copy of the velocities),
``uns`` and ``obs`` entries are written with anndata's own writer. Writing into a file is not
atomic: work on a copy of a file you cannot recreate (``cellflow fit --on-disk`` does, and moves
the finished copy into place).

What is not read lazily: ``use_rep="X"`` (open the file with
``anndata.read_h5ad(path, backed="r")``, which reads X a minibatch at a time), gene velocities (a
dense cells × genes layer) and ``copy=True``.

Example
-------
>>> import tempfile, pathlib, numpy as np, anndata as ad
>>> path = pathlib.Path(tempfile.mkdtemp()) / "course.h5ad"
>>> a = ad.AnnData(obs={"day": np.repeat([0, 1, 2], 50)})
>>> a.obsm["X_pca"] = np.random.default_rng(0).normal(size=(150, 3)).astype("float32")
>>> a.write_h5ad(path)
>>> lazy = read_lazy(path)
>>> lazy.n_obs, lazy.obsm["X_pca"].shape, lazy.obs["day"].iloc[-1]
(150, (150, 3), np.int64(2))
>>> lazy.close()
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["LazyAnnData", "read_lazy", "is_lazy"]

_NAME_CHUNK = 100_000  # cell names read per chunk


def _io():
    """anndata's element reader and writer (``anndata.io`` from 0.11, ``experimental`` before)."""
    try:
        from anndata.io import read_elem, write_elem
    except ImportError:  # anndata 0.10
        from anndata.experimental import read_elem, write_elem
    return read_elem, write_elem


def is_lazy(adata) -> bool:
    """Whether ``adata`` is a :class:`LazyAnnData` (its results go into its file)."""
    return isinstance(adata, LazyAnnData)


class _Names:
    """The cells' names, read from the file a chunk at a time: ``len``, slices and iteration
    (chunks of names) without holding millions of strings."""

    def __init__(self, dataset):
        self._ds = dataset

    def __len__(self) -> int:
        return int(self._ds.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return str(self._ds.asstr()[int(key)])
        if isinstance(key, slice):
            return np.asarray(self._ds.asstr()[key], dtype=object)
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return np.asarray(self._ds.asstr()[uniq], dtype=object)[inverse]

    def __iter__(self) -> Iterator[str]:
        for s in range(0, len(self), _NAME_CHUNK):
            yield from self[s : s + _NAME_CHUNK]

    def to_index(self) -> pd.Index:
        """All names as a pandas Index (this reads every name)."""
        return pd.Index(self[:], dtype=object)


class _Elements(MutableMapping):
    """One of a file's ``obsm``/``uns``/``layers``/... groups as a mapping: dense arrays come
    back as the on-disk dataset, anything else read whole with anndata's reader; writing uses
    anndata's writer (a :meth:`create`d dataset is filled in place)."""

    def __init__(self, owner: "LazyAnnData", name: str, lazy_arrays: bool):
        self._owner, self._name, self._lazy = owner, name, lazy_arrays

    @property
    def _group(self):
        f = self._owner.file
        return f[self._name] if self._name in f else None

    def __contains__(self, key) -> bool:
        g = self._group
        return g is not None and key in g

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        elem = self._group[key]
        if (
            self._lazy
            and elem.attrs.get("encoding-type", "array") == "array"
            and hasattr(elem, "shape")
        ):
            return elem  # an h5py dataset: sliced where it is used
        return _io()[0](elem)

    def __setitem__(self, key, value) -> None:
        import h5py

        self._owner._writable()
        g = self._owner.file.require_group(self._name)
        if isinstance(value, h5py.Dataset) and value.name == f"/{self._name}/{key}":
            return  # created by create() and filled in place
        if key in g:
            del g[key]
        if isinstance(value, pd.DataFrame) and self._name == "obsm":
            self._write_frame(g, key, value)
        else:
            _io()[1](g, key, value)

    def _write_frame(self, g, key: str, frame: pd.DataFrame) -> None:
        """A per-cell table in anndata's dataframe format, column by column, its index the
        cells' names copied on disk (its own index is not read: it is one row per cell)."""
        if len(frame) != self._owner.n_obs:
            raise ValueError(f"obsm[{key!r}] needs one row per cell ({self._owner.n_obs}).")
        out = g.create_group(key)
        columns = [str(c) for c in frame.columns]
        for name, column in zip(columns, frame.columns):
            _io()[1](out, name, frame[column].to_numpy())
        obs = self._owner.file["obs"]
        self._owner.file.copy(obs[obs.attrs["_index"]], out, name="_index")
        out.attrs.update(
            {
                "_index": "_index",
                "column-order": np.array(columns, dtype=object),
                "encoding-type": "dataframe",
                "encoding-version": "0.2.0",
            }
        )

    def create(self, key: str, shape: tuple, dtype=np.float32):
        """A new zero-filled dataset ``key`` (replacing one there), in anndata's array format,
        to be filled a block of rows at a time."""
        self._owner._writable()
        g = self._owner.file.require_group(self._name)
        if key in g:
            del g[key]
        chunks = (max(1, min(int(shape[0]), 2**20 // max(1, 4 * int(shape[1])))), int(shape[1]))
        ds = g.create_dataset(key, shape=shape, dtype=dtype, fillvalue=0, chunks=chunks)
        ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
        return ds

    def __delitem__(self, key) -> None:
        self._owner._writable()
        del self._group[key]

    def __iter__(self):
        g = self._group
        return iter(list(g.keys()) if g is not None else [])

    def __len__(self) -> int:
        g = self._group
        return 0 if g is None else len(g)


class _Obs:
    """``obs`` read a column at a time (a pandas Series); writing adds a column to the file."""

    def __init__(self, owner: "LazyAnnData"):
        self._owner = owner

    @property
    def _group(self):
        return self._owner.file["obs"]

    @property
    def columns(self) -> pd.Index:
        return pd.Index([str(c) for c in np.atleast_1d(self._group.attrs.get("column-order", []))])

    def __contains__(self, key) -> bool:
        return key in self.columns

    def __iter__(self):
        return iter(self.columns)

    def keys(self):
        return list(self.columns)

    def __getitem__(self, key) -> pd.Series:
        if key not in self:
            raise KeyError(key)
        values = _io()[0](self._group[key])
        return pd.Series(values, name=key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key, values) -> None:
        self._owner._writable()
        if isinstance(values, pd.Series):
            values = values.array
        if not isinstance(values, pd.Categorical):
            values = np.asarray(values)
            if values.dtype == object:  # labels (None: no label), stored as anndata stores them
                values = pd.Categorical(values)
        if np.shape(values) != (self._owner.n_obs,):
            raise ValueError(f"obs[{key!r}] needs one value per cell ({self._owner.n_obs}).")
        g = self._group
        if key in g:
            del g[key]
        _io()[1](g, key, values)
        order = [c for c in self.columns if c != key] + [key]
        g.attrs["column-order"] = np.array(order, dtype=object)


class LazyAnnData:
    """An ``.h5ad`` file opened for reading on demand (module docstring); the AnnData-shaped
    object that :class:`cellflow.CellFlow`, :class:`cellflow.course.TimeCourse` and
    :func:`cellflow.tl.velocity` accept for a time course too large to load.

    Parameters
    ----------
    path
        An ``.h5ad`` file (written by anndata).
    mode
        ``"r"`` (read only) or ``"r+"`` (results are written into the file).
    """

    isbacked = True
    X = None  # use_rep="X" is read through anndata's backed mode (module docstring)

    def __init__(self, path: str | Path, mode: str = "r"):
        import h5py

        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}.")
        self.filename = Path(path)
        if not self.filename.is_file():
            raise FileNotFoundError(f"no file {str(path)!r}.")
        self.mode = mode
        try:
            self.file = h5py.File(self.filename, mode)
        except OSError as e:
            raise ValueError(f"{str(path)!r} is not an HDF5 (.h5ad) file: {e}") from None
        if "obs" not in self.file or "_index" not in self.file["obs"].attrs:
            self.file.close()
            raise ValueError(f"{str(path)!r} is not an .h5ad file written by anndata (no obs).")
        obs = self.file["obs"]
        self.obs_names = _Names(obs[obs.attrs["_index"]])
        self.obs = _Obs(self)
        self.obsm = _Elements(self, "obsm", lazy_arrays=True)
        self.uns = _Elements(self, "uns", lazy_arrays=False)
        self.layers = _Elements(self, "layers", lazy_arrays=True)
        self.obsp = _Elements(self, "obsp", lazy_arrays=True)
        self.varm = _Elements(self, "varm", lazy_arrays=True)

    def _writable(self) -> None:
        if self.mode != "r+":
            raise ValueError(
                f"{self.filename} is open read-only; open it with cf.read_lazy(path, mode='r+') "
                "to write results into it (work on a copy of a file you cannot recreate)."
            )

    @property
    def n_obs(self) -> int:
        return len(self.obs_names)

    @property
    def var_names(self) -> pd.Index:
        var = self.file["var"]
        return pd.Index(self.file["var"][var.attrs["_index"]].asstr()[:], dtype=object)

    @property
    def n_vars(self) -> int:
        var = self.file["var"]
        return int(var[var.attrs["_index"]].shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_obs, self.n_vars)

    def copy(self):
        raise TypeError(
            "a LazyAnnData is read from its file and not copied; leave copy=False (results go "
            "into the file opened with mode='r+'), or load it with anndata.read_h5ad."
        )

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "LazyAnnData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if not self.file else self.mode
        return (
            f"LazyAnnData({str(self.filename)!r}, {state}) with n_obs × n_vars = "
            f"{self.n_obs} × {self.n_vars}; obs: {', '.join(self.obs.columns)}; "
            f"obsm: {', '.join(self.obsm)}"
        )


def read_lazy(path: str | Path, mode: str = "r") -> LazyAnnData:
    """Open an ``.h5ad`` file for reading on demand (:class:`LazyAnnData`): a time course of
    millions of cells is trained on and given velocities without being loaded.

    Examples
    --------
    >>> adata = cf.read_lazy("atlas.h5ad", mode="r+")  # doctest: +SKIP
    >>> model = cf.CellFlow(adata, "day", n_pcs=50)  # doctest: +SKIP
    >>> history = model.train()  # doctest: +SKIP
    >>> cf.tl.velocity(adata, model)  # into the file, a block of cells at a time  # doctest: +SKIP
    """
    return LazyAnnData(path, mode)
