"""``cf.tl.growth_rates``: the growth rate a growth-aware :class:`cellflow.CellFlow` learned, at
every cell."""

from __future__ import annotations

import numpy as np

from .._io import refuse_overwrite
from ..course.store import representation_blocks
from ._common import cell_times, check_model


def growth_rates(
    adata,
    model,
    *,
    key_added: str = "growth_rate",
    overwrite: bool = False,
    copy: bool = False,
):
    """Each cell's net growth rate at its own time: :meth:`cellflow.CellFlow.growth_rate`, per
    unit of ``obs[time_key]`` on the log scale (a cell is expected to have ``exp(rate * Δt)``
    descendants after ``Δt``; 0 is steady, ``log 2`` doubles per unit of time).

    Parameters
    ----------
    adata
        The AnnData the model was trained on.
    model
        A :class:`cellflow.CellFlow` built with ``growth="prior"`` or ``"learned"``.
    key_added, overwrite, copy
        The ``obs`` column written; replace an existing one; return a modified copy.

    Returns
    -------
    ``None`` (or the copy). Sets ``obs[key_added]`` and ``uns[f"{key_added}_params"]`` (the
    model's growth setting, its prior key and τ, and the unit).

    Examples
    --------
    >>> model = cf.CellFlow(adata, "day", growth="learned")  # doctest: +SKIP
    >>> _ = model.train()  # doctest: +SKIP
    >>> cf.tl.growth_rates(adata, model)  # doctest: +SKIP
    >>> adata.obs.groupby("cell_type")["growth_rate"].mean()  # doctest: +SKIP
    """
    check_model(adata, model)
    if model.growth is None:
        raise ValueError(
            "this model has no growth (growth=None); build CellFlow(..., growth='learned') or "
            "growth='prior' with growth_key=..., train it, and call growth_rates again."
        )
    pkey = f"{key_added}_params"
    refuse_overwrite(
        [f"obs[{key_added!r}]"] * (key_added in adata.obs)
        + [f"uns[{pkey!r}]"] * (pkey in adata.uns),
        overwrite,
    )
    times = cell_times(adata, model)
    rate = np.empty(adata.n_obs)
    for rows, block in representation_blocks(adata, model.course.use_rep, model.course.n_pcs):
        rate[rows] = model.growth_rate(block, times[rows])
    adata = adata.copy() if copy else adata
    adata.obs[key_added] = rate
    adata.uns[pkey] = {
        "growth": model.growth,
        "growth_key": model.growth_key or "",
        **({"tau_a": float(model.tau_a)} if model.tau_a is not None else {}),
        **(
            {"prior_scale": float(model.prior_scale)}
            if model.growth == "learned" and model.prior_scale is not None
            else {}
        ),
        "time_key": model.course.time_key,
        "unit": f"log growth per unit of obs[{model.course.time_key!r}]",
    }
    return adata if copy else None
