"""Tools in scanpy's style: ``f(adata, model, ..., key_added=..., copy=False)`` writes results
into the AnnData (each docstring lists the fields it sets); ``interpolate`` and ``couplings``
return new objects."""

from ._drivers import driver_genes
from ._fate import couplings, fates, pull, push
from ._growth import growth_rates
from ._interpolate import interpolate
from ._sanitize import sanitize
from ._terminal import terminal_states
from ._trends import gene_trends
from ._velocity import velocity, velocity_embedding

__all__ = [
    "interpolate",
    "velocity",
    "velocity_embedding",
    "push",
    "pull",
    "fates",
    "couplings",
    "gene_trends",
    "sanitize",
    "growth_rates",
    "driver_genes",
    "terminal_states",
]
