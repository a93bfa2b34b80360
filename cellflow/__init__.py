"""cellflow: conditional flow matching (I-CFM, OT-CFM, SB-CFM) for single-cell time courses
and beyond.

>>> import cellflow as cf
>>> model = cf.FlowModel(dim=2, method="ot")
"""

from . import couplings, datasets, pl, pp, tl
from .couplings import ConvergenceError, ExactOT, IndependentCoupling, PartialOT, SinkhornOT
from .evaluate import evaluate_holdout, summarize_holdout
from .flow import likelihood, matchers, metrics, networks, paths, solvers
from .flow.matchers import FlowMatcher, make_matcher
from .flow.networks import MLP
from .flow.paths import BrownianBridgePath, LipmanPath, PathSample, StraightPath, VPPath
from .models.cells import CellFlow
from .models.flow import FlowModel
from .train import threads
from .train import trainer as training
from .train.trainer import TrainConfig, seed_everything

__version__ = "0.1.0"


def _keep_old_module_names() -> None:
    """``import cellflow.paths`` and the other module names of the flat layout before the
    regrouping keep working: each is the same module object as its new home."""
    import importlib
    import sys

    moved = {
        "paths": "flow.paths",
        "matchers": "flow.matchers",
        "networks": "flow.networks",
        "unet": "flow.unet",
        "solvers": "flow.solvers",
        "likelihood": "flow.likelihood",
        "metrics": "flow.metrics",
        "geodesics": "flow.geodesics",
        "riemannian_metrics": "flow.riemannian_metrics",
        "assignment": "couplings.assignment",
        "sparse_ot": "couplings.sparse_ot",
        "training": "train.trainer",
        "train_config": "train.config",
        "optim": "train.optim",
        "batch_workers": "train.batch_workers",
        "distributed": "train.distributed",
        "threads": "train.threads",
        "model": "models.flow",
    }
    for old, new in moved.items():
        module = importlib.import_module(f"{__name__}.{new}")
        sys.modules.setdefault(f"{__name__}.{old}", module)
        globals().setdefault(old, module)


_keep_old_module_names()

__all__ = [
    "CellFlow",
    "evaluate_holdout",
    "summarize_holdout",
    "FlowModel",
    "FlowMatcher",
    "make_matcher",
    "MLP",
    "TrainConfig",
    "seed_everything",
    "StraightPath",
    "BrownianBridgePath",
    "LipmanPath",
    "VPPath",
    "PathSample",
    "ExactOT",
    "SinkhornOT",
    "PartialOT",
    "IndependentCoupling",
    "ConvergenceError",
    "pp",
    "tl",
    "pl",
    "couplings",
    "datasets",
    "likelihood",
    "matchers",
    "metrics",
    "networks",
    "paths",
    "solvers",
    "threads",
    "training",
]
