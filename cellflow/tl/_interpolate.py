"""``cf.tl.interpolate``: predicted cells at any time, as an AnnData."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import check_model


def _decode(adata, Z: np.ndarray, n_pcs: int, layer: str | None, genes: np.ndarray | None = None):
    """Expression from PC scores (last axis of ``Z``): ``Z @ PCs[:, :n_pcs].T`` plus the genes'
    mean, for all genes or the columns ``genes``."""
    from ..course.store import RowSource

    M = adata.layers[layer] if layer is not None else adata.X
    if layer is None and adata.isbacked:  # X on disk: the genes' means in blocks of cells
        source = RowSource(lambda: adata.X)
        mean = np.zeros(source.shape[1])
        for _, block in source.blocks():
            mean += block.sum(0)
        mean = mean / max(source.shape[0], 1)
        mean = mean if genes is None else mean[genes]
    else:
        mean = np.asarray((M if genes is None else M[:, genes]).mean(0)).ravel()
    PCs = (
        np.asarray(adata.varm["PCs"])[:, :n_pcs]
        if genes is None
        else np.asarray(adata.varm["PCs"])[genes, :n_pcs]
    )
    return Z @ PCs.T + mean


def interpolate(
    adata,
    model,
    time: float,
    *,
    n_cells: int | None = None,
    mode: str = "push",
    from_time: float | None = None,
    steps: int = 100,
    decode: bool = True,
    layer: str | None = None,
    seed: int | None = None,
):
    """Predict the cells at ``time`` and return them as a new AnnData.

    ``time`` may be a held-out time point or lie between measured times. With
    ``mode="push"`` (the paper's protocol) the observed cells at the nearest earlier trained
    time point are pushed forward by the flow; ``mode="sample"`` draws ``n_cells`` new cells
    (see :meth:`cellflow.CellFlow.predict`). The input AnnData is not modified.

    Parameters
    ----------
    adata
        The AnnData the model was trained on.
    model
        A trained :class:`cellflow.CellFlow`.
    time
        In the units of ``obs[time_key]``.
    n_cells, mode, from_time, steps, seed
        See :meth:`cellflow.CellFlow.predict`.
    decode
        When ``use_rep == "X_pca"`` and ``varm["PCs"]`` exists, decode expression for every
        gene as ``Z @ PCs.T + mean`` (``mean``: per-gene mean of ``X`` or ``layers[layer]``, the
        matrix the PCA was run on), so that ``sc.tl.ingest(pred, adata)`` can place the
        predicted cells on the reference's embedding.

    Returns
    -------
    AnnData of the predicted cells with

    - ``obsm[use_rep]``: the predicted representation (``n_pcs`` columns);
    - ``obs[time_key]``: ``time``; ``obs["cellflow_from_time"]``: the time pushed from;
    - ``X``: decoded expression (same ``var`` as ``adata``) when decoding applies; for a
      model trained on ``use_rep="X"``, ``X`` is the prediction itself (the model's
      ``n_pcs`` leading genes) and there is no ``obsm``;
    - ``uns["cellflow_prediction"]``: the settings.

    Examples
    --------
    >>> pred = cf.tl.interpolate(adata, model, time=2.5)  # doctest: +SKIP
    >>> sc.tl.ingest(pred, adata, obs="day")  # doctest: +SKIP
    """
    import anndata as ad

    check_model(adata, model)
    from_time = model.source_time(time) if from_time is None else float(from_time)
    Z = model.predict(time, n_cells=n_cells, mode=mode, from_time=from_time, steps=steps, seed=seed)
    obs = pd.DataFrame(
        {
            model.course.time_key: np.full(len(Z), float(time)),
            "cellflow_from_time": np.full(len(Z), float(from_time)),
        },
        index=[f"pred_{time:g}_{i}" for i in range(len(Z))],
    )
    X, var = None, None
    can_decode = (
        decode
        and model.course.use_rep == "X_pca"
        and "PCs" in adata.varm
        and np.shape(adata.varm["PCs"])[1] >= model.course.n_pcs
        and (layer is not None or (adata.X is not None and adata.n_vars > 0))
    )
    if can_decode:
        if layer is not None and layer not in adata.layers:
            raise KeyError(f"adata.layers has no {layer!r}.")
        X, var = _decode(adata, Z, model.course.n_pcs, layer).astype(np.float32), adata.var.copy()
    if (
        model.course.use_rep == "X"
    ):  # the flow lives in expression space: the prediction is X itself
        pred = ad.AnnData(
            X=Z.astype(np.float32), obs=obs, var=adata.var.iloc[: model.course.n_pcs].copy()
        )
    else:
        pred = ad.AnnData(X=X, obs=obs, var=var) if X is not None else ad.AnnData(obs=obs)
        pred.obsm[model.course.use_rep] = Z.astype(np.float32)
    pred.uns["cellflow_prediction"] = {
        "time": float(time),
        "from_time": float(from_time),
        "mode": mode,
        "steps": int(steps),
        "method": model.method,
        "decoded": bool(can_decode),
        "resampled_by_mass": model.growth is not None,
    }
    return pred
