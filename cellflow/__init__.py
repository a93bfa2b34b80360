"""cellflow: conditional flow matching (I-CFM, OT-CFM, SB-CFM) for single-cell time courses
and beyond.

>>> import cellflow as cf
>>> model = cf.FlowModel(dim=2, method="ot")
"""

from . import couplings, datasets, pl, tl, likelihood, matchers, metrics, networks, paths, solvers, threads, training
from .couplings import ConvergenceError, ExactOT, IndependentCoupling, PartialOT, SinkhornOT
from .matchers import FlowMatcher, make_matcher
from ._cellflow import CellFlow
from ._evaluate import evaluate_holdout, summarize_holdout
from .model import FlowModel
from .networks import MLP
from .paths import BrownianBridgePath, LipmanPath, PathSample, StraightPath, VPPath
from .training import TrainConfig, seed_everything

__version__ = "0.1.0"

__all__ = [
    "CellFlow", "evaluate_holdout", "summarize_holdout", "FlowModel", "FlowMatcher", "make_matcher", "MLP", "TrainConfig", "seed_everything",
    "StraightPath", "BrownianBridgePath", "LipmanPath", "VPPath", "PathSample",
    "ExactOT", "SinkhornOT", "PartialOT", "IndependentCoupling", "ConvergenceError",
    "tl", "pl", "couplings", "datasets", "likelihood", "matchers", "metrics", "networks", "paths", "solvers", "threads", "training",
]
