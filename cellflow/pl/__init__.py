"""Plots (matplotlib, scanpy style): trajectories, the velocity field on an embedding,
predicted vs observed cells, the held-out evaluation table, gene trends along the flow, growth,
driver genes, fates and how sure they are."""

from ._drivers import driver_genes
from ._fates import fates
from ._growth import growth
from ._plots import evaluation, prediction, trajectories
from ._trends import gene_trends
from ._velocity import VelocityGrid, velocity, velocity_grid

__all__ = [
    "trajectories",
    "velocity",
    "velocity_grid",
    "VelocityGrid",
    "prediction",
    "evaluation",
    "gene_trends",
    "growth",
    "driver_genes",
    "fates",
]
