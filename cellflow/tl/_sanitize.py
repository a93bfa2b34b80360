"""``cf.tl.sanitize``: make an AnnData that CellRank has written to writable as ``.h5ad``."""

from __future__ import annotations

import numpy as np


def sanitize(adata, *, copy: bool = False):
    """Turn array subclasses in ``obsm`` (CellRank 2's ``Lineage`` fate probabilities) into plain
    NumPy arrays, so that ``adata.write_h5ad`` works.

    anndata writes only plain arrays: a ``Lineage`` in ``obsm`` makes ``write_h5ad`` fail with
    ``write_basic() got an unexpected keyword argument 'elem'``. The values are kept as they are;
    a ``Lineage``'s names and colours go to ``uns[f"{key}_names"]`` and ``uns[f"{key}_colors"]``
    (CellRank's own keys) unless these are already there, so
    ``cellrank.Lineage(adata.obsm[key], names=adata.uns[f"{key}_names"])`` rebuilds it.

    Parameters
    ----------
    adata
        Any AnnData, e.g. after ``cellrank.estimators.GPCCA(...).compute_fate_probabilities()``.
    copy
        Return a sanitised copy instead of changing ``adata``.

    Returns
    -------
    None or AnnData
        ``None``, or the copy with ``copy=True``. Sets ``obsm[key]`` to a plain array for each
        key that held an array subclass, and ``uns[f"{key}_names"]``, ``uns[f"{key}_colors"]``
        from it where missing.

    Example
    -------
    >>> import numpy as np, anndata as ad, cellflow as cf
    >>> class Probabilities(np.ndarray): pass
    >>> adata = ad.AnnData(np.zeros((3, 2)))
    >>> adata.obsm["lineages_fwd"] = np.full((3, 2), 0.5).view(Probabilities)
    >>> cf.tl.sanitize(adata)
    >>> type(adata.obsm["lineages_fwd"]).__name__
    'ndarray'
    """
    adata = adata.copy() if copy else adata
    for key in list(adata.obsm):
        value = adata.obsm[key]
        if not isinstance(value, np.ndarray) or type(value) is np.ndarray:
            continue
        for attr in ("names", "colors"):
            labels = getattr(value, attr, None)
            if labels is not None and f"{key}_{attr}" not in adata.uns:
                adata.uns[f"{key}_{attr}"] = np.asarray(labels, dtype=str)
        adata.obsm[key] = np.array(value, copy=True).view(np.ndarray)
    return adata if copy else None
