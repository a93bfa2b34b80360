"""Preprocessing in scanpy's style: ``f(adata, ..., copy=False)`` writes into ``obs``/``uns``."""

from ._growth import birth_rate, death_rate, score_growth

__all__ = ["score_growth", "birth_rate", "death_rate"]
