r"""Where the cells come from: a representation in ``obsm`` held in memory, or the rows of
``adata.X`` read on demand.

``use_rep="X"`` trains on the expression matrix itself, in whatever form it has: a dense
array, a scipy sparse matrix, or the on-disk matrix of a backed AnnData
(``anndata.read_h5ad(path, backed="r")``, dense or sparse). ``X`` is never densified or
copied as a whole: its column moments are accumulated in blocks of rows, and every training
step reads and densifies only the rows it draws (sorted, each read once). An ``obsm``
representation (a few dense columns per cell) is read once, a block of rows at a time, into
float32 tensors, the fastest way to draw from it: the cells are then held once, in float32,
never as a whole float64 copy.

Example
-------
>>> import numpy as np, scipy.sparse as sp, anndata as ad
>>> X = sp.random(300, 20, density=0.2, format="csr", random_state=0)
>>> adata = ad.AnnData(X, obs={"day": np.repeat([0, 1, 2], 100)})
>>> source = RowSource.from_adata(adata, "X", None)
>>> source.shape, source.rows(np.array([0, 5])).shape
((300, 20), (2, 20))
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "RowSource",
    "CellStore",
    "has_representation",
    "read_representation",
    "representation_shape",
    "block_moments",
]

_BLOCK_BYTES = 64 * 2**20  # densified block size when a matrix is read in passes


def has_representation(adata, use_rep: str) -> bool:
    """Whether ``use_rep`` names ``adata.X`` (and X is present) or a key of ``obsm``."""
    return adata.X is not None if use_rep == "X" else use_rep in adata.obsm


def representation_shape(adata, use_rep: str) -> tuple[int, int]:
    return tuple(int(s) for s in (adata.shape if use_rep == "X" else np.shape(adata.obsm[use_rep])))


class RowSource:
    """Read-only row access to the first ``n_cols`` columns of a matrix that may be sparse or
    on disk; every read returns a dense float64 array.

    ``M`` is the matrix, or a callable returning it: a backed AnnData's ``X`` must be fetched
    anew at each read, since anndata may close and reopen the file in between (e.g. in
    ``to_memory()``), which invalidates a stored dataset handle.
    """

    def __init__(self, M, n_cols: int | None = None, name: str = "X"):
        self._get = M if callable(M) else (lambda: M)
        self.name = name
        n, d = self.M.shape
        self.n_cols = d if n_cols is None else int(n_cols)
        self.shape = (int(n), self.n_cols)
        self._all_cols = self.n_cols == d

    @classmethod
    def from_adata(cls, adata, use_rep: str, n_cols: int | None) -> "RowSource":
        if use_rep != "X":
            raise ValueError(
                "RowSource reads adata.X; obsm representations are read with get_representation."
            )
        if adata.X is None or 0 in adata.shape:
            raise ValueError(
                "use_rep='X' but adata.X is empty; pass the obsm key of a representation "
                "(e.g. use_rep='X_pca' after sc.pp.pca) or load the expression matrix."
            )
        d = adata.n_vars
        if n_cols is not None and not 1 <= n_cols <= d:
            raise ValueError(
                f"n_pcs={n_cols} but adata.X has {d} columns; choose 1 <= n_pcs <= {d} "
                "(with use_rep='X', n_pcs keeps the leading genes)."
            )
        return cls((lambda: adata.X) if adata.isbacked else adata.X, n_cols)

    @property
    def M(self):
        return self._get()

    def _dense(self, block) -> np.ndarray:
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        block = block if self._all_cols else block[:, : self.n_cols]
        return block.astype(np.float64, copy=False)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Dense rows ``idx`` (any order, repeats allowed); each distinct row is read once, in
        increasing order, as on-disk matrices require."""
        idx = np.asarray(idx, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._dense(self.M[uniq])[inverse]

    def to_csr(self):
        """The whole matrix (leading ``n_cols`` columns) as a scipy CSR matrix: an in-memory
        sparse X as it is, anything else read in blocks and sparsified one block at a time."""
        from scipy import sparse

        M = self.M
        if sparse.issparse(M):
            M = M.tocsr()
            return M if self._all_cols else M[:, : self.n_cols]
        return sparse.vstack([sparse.csr_matrix(b) for _, b in self.blocks()], format="csr")

    def blocks(self, rows: np.ndarray | None = None, block_rows: int | None = None):
        """Yield ``(positions, dense block)`` over ``rows`` (default all, in order), a block of
        at most ``block_rows`` rows (default: about 64 MB densified) at a time."""
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        step = block_rows or max(1, _BLOCK_BYTES // (8 * self.n_cols))
        for start in range(0, len(rows), step):
            sel = rows[start : start + step]
            contiguous = len(sel) > 0 and sel[-1] - sel[0] == len(sel) - 1
            block = (
                self._dense(self.M[int(sel[0]) : int(sel[-1]) + 1])
                if contiguous
                else self.rows(sel)
            )
            yield slice(start, start + len(sel)), block

    def moments(self, digest=None) -> tuple[np.ndarray, np.ndarray]:
        """Column mean and variance in one pass of blocks (:func:`block_moments`); raises if
        any entry is NaN or inf. ``digest`` (a ``hashlib`` object) is updated with each block's
        float64 bytes in the same pass: the representation's digest
        (:mod:`cellflow.course.fingerprint`) without reading it twice.
        """
        blocks = (block for _, block in self.blocks())
        if digest is not None:
            blocks = _hashed(blocks, digest)
        mean, var, bad = block_moments(blocks, self.n_cols)
        if bad:
            fix = "fix the matrix" if self.name == "X" else "recompute the representation"
            raise ValueError(
                f"adata.{self.name} has NaN or inf in {bad} cells; remove those cells or {fix}."
            )
        return mean, var


def _hashed(blocks, digest):
    """``blocks`` unchanged, each one's float64 bytes fed to ``digest`` on the way."""
    for block in blocks:
        digest.update(np.ascontiguousarray(block, dtype=np.float64).tobytes())
        yield block


def block_moments(blocks, n_cols: int) -> tuple[np.ndarray, np.ndarray, int]:
    r"""Column mean and variance of the rows of ``blocks`` (dense 2-D arrays), merged a block
    at a time (Chan et al. 1979), and the number of rows with NaN or inf (left out; the moments
    are then those of the finite rows before the first bad one's block and are not to be used).

    Each block's mean and sum of squared deviations :math:`M_2` are merged into the running
    ones: :math:`\delta = \bar x_B - \bar x_A`,
    :math:`M_2 = M_{2,A} + M_{2,B} + \delta^2 n_A n_B / (n_A + n_B)`, which stays accurate
    where :math:`E[x^2] - E[x]^2` would cancel (coordinates far from 0, such as a layout's).

    >>> X = np.random.default_rng(0).normal(5.0, 2.0, size=(100, 3))
    >>> mean, var, bad = block_moments(np.array_split(X, 7), 3)
    >>> bool(np.allclose(mean, X.mean(0)) and np.allclose(var, X.var(0))), bad
    (True, 0)
    """
    count, mean, m2 = 0, np.zeros(n_cols), np.zeros(n_cols)
    bad = 0
    for block in blocks:
        ok = np.isfinite(block).all(1)
        bad += int((~ok).sum())
        if bad or not len(block):
            continue
        nb, mb = len(block), block.mean(0)
        delta = mb - mean
        m2 += np.square(block - mb).sum(0) + np.square(delta) * count * nb / (count + nb)
        mean += delta * nb / (count + nb)
        count += nb
    return mean, m2 / max(count, 1), bad


def representation_blocks(adata, use_rep: str, n_cols: int | None = None):
    """Yield ``(positions, dense float64 block)`` over all cells of ``obsm[use_rep]`` or ``X``,
    leading ``n_cols`` columns, a block of rows (about 64 MB densified) at a time: neither a
    sparse or on-disk X nor a large representation is ever copied whole."""
    if use_rep == "X":
        yield from RowSource.from_adata(adata, "X", n_cols).blocks()
        return
    M = adata.obsm[use_rep]
    M = M.to_numpy() if hasattr(M, "to_numpy") else M
    yield from RowSource(M, n_cols, name=f"obsm[{use_rep!r}]").blocks()


def read_representation(adata, use_rep: str, n_cols: int | None = None, rows=None) -> np.ndarray:
    """Dense float64 ``obsm[use_rep]`` or ``X`` (leading ``n_cols`` columns, ``rows`` of
    them, in the order given), densifying only what is returned."""
    if use_rep == "X":
        source = RowSource.from_adata(adata, "X", n_cols)
        if rows is None:
            return (
                np.concatenate([b for _, b in source.blocks()])
                if source.shape[0]
                else np.zeros((0, source.n_cols))
            )
        return source.rows(np.asarray(rows))
    X = np.asarray(adata.obsm[use_rep])
    X = X[:, :n_cols] if n_cols is not None else X
    return np.asarray(X[rows] if rows is not None else X, dtype=np.float64)


class CellStore:
    """The standardised cells of each time point, as the training loop draws them.

    ``CellStore(groups, scaler, dense=X)`` holds dense float32 tensors (one per time point);
    ``CellStore(groups, scaler, source, keep=True)`` fills the same tensors from ``source`` (a
    :class:`RowSource`) one block of rows at a time, so that the representation is held once,
    in float32, and never as a whole float64 copy; ``CellStore(groups, scaler, source)`` keeps
    only the row indices of each time point and reads drawn rows from ``source`` at every draw.
    """

    def __init__(
        self,
        groups: list[np.ndarray],
        scaler,
        source: RowSource | None = None,
        dense: np.ndarray | None = None,
        *,
        keep: bool = False,
    ):
        self.scaler, self.source = scaler, source
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self._tensors = None
        if source is None:
            Z = scaler.forward(dense)
            self._tensors = [torch.tensor(Z[g], dtype=torch.float32) for g in self.groups]
        elif keep:
            self._tensors = self._read_once(source)
            self.source = None  # held in memory from now on

    def _read_once(self, source: RowSource) -> list[torch.Tensor]:
        """Each time point's standardised cells as float32, filled block by block."""
        n, d = source.shape
        group = np.full(n, -1, dtype=np.int64)
        position = np.zeros(n, dtype=np.int64)
        for k, g in enumerate(self.groups):
            group[g], position[g] = k, np.arange(len(g))
        out = [torch.empty((len(g), d), dtype=torch.float32) for g in self.groups]
        for rows, block in source.blocks():
            Z = torch.from_numpy(self.scaler.forward(block).astype(np.float32))
            gid, pos = group[rows], position[rows]
            for k in np.unique(gid[gid >= 0]):
                at = gid == k
                out[k][torch.from_numpy(pos[at])] = Z[torch.from_numpy(at)]
        return out

    @property
    def on_demand(self) -> bool:
        return self.source is not None

    def sizes(self) -> list[int]:
        return [len(g) for g in self.groups]

    def draw(self, i: int, idx: torch.Tensor) -> torch.Tensor:
        """Standardised rows ``idx`` (positions within time point ``i``) as float32."""
        if self._tensors is not None:
            return self._tensors[i][idx]
        rows = self.groups[i][idx.numpy()]
        return torch.from_numpy(self.scaler.forward(self.source.rows(rows)).astype(np.float32))

    def cells(self, i: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The cells of time point ``i`` (all, or those at positions ``rows`` within it, in that
        order) in the representation's units (float64, dense)."""
        if self._tensors is not None:
            Z = self._tensors[i] if rows is None else self._tensors[i][torch.as_tensor(rows)]
            return self.scaler.inverse(Z.numpy().astype(np.float64))
        g = self.groups[i] if rows is None else self.groups[i][np.asarray(rows, dtype=np.int64)]
        if not len(g):
            return np.zeros((0, self.source.n_cols))
        return np.concatenate([b for _, b in self.source.blocks(g)])

    def blocks(self, i: int, block_rows: int = 2**16):
        """The cells of time point ``i`` in the representation's units, a block of rows at a
        time (float64): nothing the size of the time point is built."""
        if self._tensors is None:
            yield from (b for _, b in self.source.blocks(self.groups[i], block_rows))
            return
        for s in range(0, len(self.groups[i]), block_rows):
            Z = self._tensors[i][s : s + block_rows].numpy().astype(np.float64)
            yield self.scaler.inverse(Z)

    def moments(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Column mean and variance of the cells of time point ``i`` (representation units),
        read a block at a time (:func:`block_moments`)."""
        mean, var, _ = block_moments(self.blocks(i), len(self.scaler.mean))
        return mean, var
