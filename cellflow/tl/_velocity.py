r"""``cf.tl.velocity`` and ``cf.tl.velocity_embedding``: the learned field in scVelo's and
CellRank's layout.

The projection onto an embedding follows the kNN scheme of La Manno et al. (2018) used by
scVelo: for cell :math:`i` with neighbours :math:`j`, the cosine :math:`c_{ij}` between the
displacement :math:`x_j - x_i` and the velocity :math:`v_i` gives transition weights
:math:`\pi_{ij} \propto \exp(c_{ij}/T)`, and

.. math:: \tilde v_i = \sum_j \pi_{ij}\,\frac{e_j - e_i}{\lVert e_j - e_i\rVert}
          - \frac1k \sum_j \frac{e_j - e_i}{\lVert e_j - e_i\rVert}

in embedding coordinates :math:`e`, the second term removing the bias of uneven neighbourhoods.
"""

from __future__ import annotations

import numpy as np

from .._io import refuse_overwrite
from ..course.ondisk import is_lazy
from ..course.store import (
    RowSource,
    read_representation,
    representation_blocks,
    representation_shape,
)
from ..models.cells import CHUNK_SIZE
from ._common import cell_times, check_model, rep_basis


def _gene_velocities(adata, use_rep: str, genes: bool) -> bool:
    """Whether :func:`velocity` writes gene-space velocities (``layers``, ``var``); never into a
    :class:`cellflow.LazyAnnData` (a dense cells × genes layer is what it is there to avoid)."""
    if is_lazy(adata):
        return False
    return use_rep == "X" or (
        genes and use_rep == "X_pca" and "PCs" in adata.varm and adata.n_vars > 0
    )


def existing_velocity_keys(
    adata, use_rep: str, key_added: str = "velocity", genes: bool = True
) -> list[str]:
    """The keys :func:`velocity` would write that ``adata`` already holds (it refuses to
    replace them without ``overwrite=True``); ``cellflow fit`` checks them before training."""
    okey, pkey = f"{key_added}_{rep_basis(use_rep)}", f"{key_added}_params"
    keys = [f"obsm[{okey!r}]"] * (okey in adata.obsm and use_rep != "X") + [f"uns[{pkey!r}]"] * (
        pkey in adata.uns
    )
    if _gene_velocities(adata, use_rep, genes):
        keys += [f"layers[{key_added!r}]"] * (key_added in adata.layers)
        keys += [f"var[{key_added + '_genes'!r}]"] * (f"{key_added}_genes" in adata.var)
    return keys


def velocity_unit(model) -> str:
    """The unit of :meth:`cellflow.CellFlow.velocity`, in words: per interval between consecutive
    time points (``time_scale="index"``) or per unit of ``obs[time_key]`` (``"real"``)."""
    rep = "genes (X)" if model.course.use_rep == "X" else model.course.use_rep
    if model.course.time_scale == "real":
        return f"{rep} units per 1 unit of obs[{model.course.time_key!r}]"
    key = model.course.time_key
    return f"{rep} units per interval between consecutive time points of obs[{key!r}]"


def velocity(
    adata,
    model,
    *,
    key_added: str = "velocity",
    genes: bool = True,
    overwrite: bool = False,
    chunk_size: int = CHUNK_SIZE,
    copy: bool = False,
):
    """Write the learned velocity at each cell's own time into ``adata``.

    Parameters
    ----------
    adata
        The AnnData the model was trained on, or its file opened with
        ``cf.read_lazy(path, mode="r+")`` (:class:`cellflow.LazyAnnData`): the velocities are
        then written into the file a block of cells at a time, never all in memory, and no
        gene velocities are written.
    model
        A trained :class:`cellflow.CellFlow`.
    key_added
        Prefix of the keys written (scVelo's and CellRank's default is ``"velocity"``).
    genes
        Also write gene-space velocities ``V @ PCs.T`` (needs ``use_rep="X_pca"`` and
        ``varm["PCs"]``). A model trained on ``use_rep="X"`` writes gene velocities only.
    overwrite
        Existing keys are never replaced unless this is set.
    chunk_size
        Cells per network call (memory stays bounded for millions of cells).
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    None or AnnData
        ``None``, or the copy with ``copy=True``. Sets:

        - ``obsm[f"{key_added}_{basis}"]`` (``basis`` = ``use_rep`` without ``X_``, e.g.
          ``velocity_pca``): the velocity, as wide as ``obsm[use_rep]``; columns past the model's
          ``n_pcs`` are 0. Units: representation per unit of model time. CellRank reads it with
          ``VelocityKernel(adata, attr="obsm", xkey="X_pca", vkey="velocity_pca")``;
        - ``layers[key_added]`` and ``var[f"{key_added}_genes"]`` when gene velocities apply.
          For a model trained on ``use_rep="X"`` these are the only velocities written (no
          ``obsm``): the field itself, read from X (sparse or backed) a block of cells at a
          time, with 0 for genes past ``n_pcs``;
        - ``uns[f"{key_added}_params"]``: method, representation, n_pcs, time scale, ``unit``
          (the velocity's unit in words, e.g. "X_pca units per interval between consecutive
          time points of obs['day']") and
          ``embeddings``: the representation's own basis (so that
          ``scv.pl.velocity_embedding_stream(adata, basis="spring")`` uses the velocity of a 2-D
          representation such as ``X_spring`` as it is), then each basis projected onto by
          :func:`velocity_embedding`.
    """
    check_model(adata, model)
    adata = adata.copy() if copy else adata
    basis = rep_basis(model.course.use_rep)
    okey, pkey = f"{key_added}_{basis}", f"{key_added}_params"
    on_x = model.course.use_rep == "X"
    do_genes = _gene_velocities(adata, model.course.use_rep, genes)
    refuse_overwrite(
        existing_velocity_keys(adata, model.course.use_rep, key_added, genes), overwrite
    )

    if on_x:
        times = cell_times(adata, model)
        V = np.zeros(adata.shape, dtype=np.float32)
        for rows, block in representation_blocks(adata, "X", model.course.n_pcs):
            V[rows, : model.course.n_pcs] = model.velocity(
                block, times[rows], chunk_size=chunk_size
            )
        adata.layers[key_added] = V
        adata.var[f"{key_added}_genes"] = np.arange(adata.n_vars) < model.course.n_pcs
    else:
        # a block of cells at a time: no float64 copy of the representation or the velocities
        # (into a LazyAnnData's file: the velocities are never all in memory)
        times, k = cell_times(adata, model), model.course.n_pcs
        shape = representation_shape(adata, model.course.use_rep)
        full = adata.obsm.create(okey, shape) if is_lazy(adata) else np.zeros(shape, np.float32)
        for rows, block in representation_blocks(adata, model.course.use_rep, k):
            full[rows, :k] = model.velocity(block, times[rows], chunk_size=chunk_size)
        adata.obsm[okey] = full
    if do_genes and not on_x:
        V = full[:, : model.course.n_pcs]
        PCs = np.asarray(adata.varm["PCs"])[:, : model.course.n_pcs]
        adata.layers[key_added] = (V @ PCs.T).astype(np.float32)
        used = np.abs(PCs).sum(1) > 0
        adata.var[f"{key_added}_genes"] = used
    adata.uns[pkey] = {
        "mode": "cellflow",
        "method": model.method,
        "use_rep": model.course.use_rep,
        "n_pcs": int(model.course.n_pcs),
        "time_key": model.course.time_key,
        "time_scale": model.course.time_scale,
        "unit": velocity_unit(model),
        "embeddings": [] if on_x else [basis],
    }  # a representation is its own embedding for scVelo
    return adata if copy else None


def _neighbor_indices(adata, source, n_neighbors: int | None) -> np.ndarray:
    """kNN indices (n_obs × k, self excluded) from ``obsp["distances"]`` or computed on the
    representation (``source``: a dense array, or a :class:`RowSource` for ``X``, taken as a
    CSR matrix rather than densified).

    From ``obsp["distances"]``, k is the smallest number of stored neighbours of any cell, and
    each cell keeps its k nearest (one vectorised sort of all stored entries)."""
    if n_neighbors is None and "distances" in adata.obsp:
        D = adata.obsp["distances"].tocsr()
        counts = np.diff(D.indptr)
        k = int(counts.min())
        if k >= 1:
            rows = np.repeat(np.arange(adata.n_obs), counts)
            order = np.lexsort((D.data, rows))  # by row, then by distance within the row
            take = D.indptr[:-1, None] + np.arange(k)[None, :]
            return D.indices[order[take]].astype(np.int64)
    from sklearn.neighbors import NearestNeighbors

    X = source.to_csr() if isinstance(source, RowSource) else source
    k = min(n_neighbors or 30, X.shape[0] - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    return idx[:, 1:]


_CHUNK_BYTES = 64 * 2**20


def _project(source, V, E, idx, temperature: float) -> np.ndarray:
    """scVelo-style projection, a chunk of cells at a time. ``source`` is the dense
    representation or a :class:`RowSource`; each chunk reads only its cells and their
    neighbours, so about 64 MB of rows are dense at once and no (n_obs × k × d) array is
    built."""
    n, d = (source.shape[0], source.n_cols) if isinstance(source, RowSource) else source.shape
    rows = (
        source.rows
        if isinstance(source, RowSource)
        else (lambda r: np.asarray(source[r], dtype=np.float64))
    )
    k = idx.shape[1]
    chunk = int(max(1, min(20000, _CHUNK_BYTES // (8 * d * (k + 1)))))
    out = np.empty((n, E.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        sl = np.arange(start, min(start + chunk, n))
        nb = idx[sl]
        Xn = rows(np.concatenate([sl, nb.ravel()]))  # RowSource.rows reads each distinct row once
        dX = Xn[len(sl) :].reshape(len(sl), k, d) - Xn[: len(sl), None, :]
        v = V[sl]
        cos = np.einsum("nkd,nd->nk", dX, v) / (
            np.linalg.norm(dX, axis=2) * np.linalg.norm(v, axis=1)[:, None] + 1e-12
        )
        logits = cos / temperature
        P = np.exp(logits - logits.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        dE = E[nb] - E[sl, None, :]
        dE /= np.linalg.norm(dE, axis=2, keepdims=True) + 1e-12
        out[sl] = np.einsum("nk,nkd->nd", P, dE) - dE.mean(1)
    return out


def velocity_embedding(
    adata,
    *,
    basis: str = "umap",
    vkey: str = "velocity",
    n_neighbors: int | None = None,
    temperature: float = 0.1,
    overwrite: bool = False,
    copy: bool = False,
):
    """Project the velocities written by :func:`velocity` onto an embedding (e.g. UMAP).

    Parameters
    ----------
    adata
        With ``obsm[f"X_{basis}"]`` and the output of :func:`velocity`.
    basis
        The embedding, ``obsm[f"X_{basis}"]``.
    vkey
        The ``key_added`` given to :func:`velocity`.
    n_neighbors
        Neighbours per cell; default: those of ``obsp["distances"]`` (``sc.pp.neighbors``),
        else 30 computed on the representation.
    temperature
        :math:`T` in the transition weights :math:`\\exp(\\cos/T)`.
    overwrite, copy
        As in :func:`velocity`.

    Returns
    -------
    None or AnnData
        ``None``, or the copy. Sets ``obsm[f"{vkey}_{basis}"]`` and appends ``basis`` to
        ``uns[f"{vkey}_params"]["embeddings"]``, so
        ``scv.pl.velocity_embedding_stream(adata, basis=basis)`` plots it without recomputing.
    """
    pkey = f"{vkey}_params"
    if pkey not in adata.uns or "use_rep" not in adata.uns[pkey]:
        raise KeyError(
            f"adata.uns has no {pkey!r} from cellflow; run cf.tl.velocity(adata, model) first."
        )
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"adata.obsm has no 'X_{basis}'; compute the embedding first (e.g. sc.tl.umap)."
        )
    params = adata.uns[pkey]
    rep, n_pcs = str(params["use_rep"]), int(params["n_pcs"])
    vrep = f"{vkey}_{rep_basis(rep)}"
    vstore = (
        adata.layers if rep == "X" else adata.obsm
    )  # a flow on X writes gene velocities to layers
    vname = vkey if rep == "X" else vrep
    if vname not in vstore:
        where = "layers" if rep == "X" else "obsm"
        raise KeyError(f"adata.{where} has no {vname!r}; run cf.tl.velocity(adata, model) first.")
    okey = f"{vkey}_{basis}"
    refuse_overwrite([f"obsm[{okey!r}]"] * (okey in adata.obsm), overwrite)
    adata = adata.copy() if copy else adata

    # X (sparse or on disk) is read a chunk of rows at a time, never densified whole
    source = (
        RowSource.from_adata(adata, "X", n_pcs)
        if rep == "X"
        else read_representation(adata, rep, n_pcs)
    )
    V = np.asarray(vstore[vname], dtype=np.float64)[:, :n_pcs]
    E = np.asarray(adata.obsm[f"X_{basis}"], dtype=np.float64)[:, :2]
    idx = _neighbor_indices(adata, source, n_neighbors)
    adata.obsm[okey] = _project(source, V, E, idx, temperature)
    embeddings = [str(b) for b in np.atleast_1d(params.get("embeddings", [])) if str(b) != basis]
    adata.uns[pkey] = {**dict(params), "embeddings": embeddings + [basis]}
    return adata if copy else None
