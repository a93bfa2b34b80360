"""Plots (matplotlib, scanpy style): trajectories, predicted vs observed cells, the held-out
evaluation table."""

from ._plots import evaluation, prediction, trajectories

__all__ = ["trajectories", "prediction", "evaluation"]
