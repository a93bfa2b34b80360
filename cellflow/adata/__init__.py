"""The AnnData layer: reading times and representations from an AnnData
(:mod:`~cellflow.adata._read`) and the per-time-point cell store that training draws from, in
memory or backed on disk (:mod:`~cellflow.adata._store`).
"""
