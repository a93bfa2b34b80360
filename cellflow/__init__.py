"""cellflow: conditional flow matching (I-CFM, OT-CFM, SB-CFM) for single-cell time courses
and beyond.

>>> import cellflow as cf
>>> model = cf.FlowModel(dim=2, method="ot")
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: each public name and the module it lives in, imported on first use (PEP 562), so that
#: ``import cellflow`` (and ``cellflow --help``) does not load torch, POT and scanpy until needed
_LAZY = {
    "couplings": ".couplings",
    "datasets": ".datasets",
    "pl": ".pl",
    "pp": ".pp",
    "tl": ".tl",
    "ConvergenceError": ".couplings",
    "ExactOT": ".couplings",
    "IndependentCoupling": ".couplings",
    "PartialOT": ".couplings",
    "SinkhornOT": ".couplings",
    "evaluate_holdout": ".evaluate",
    "summarize_holdout": ".evaluate",
    "FlowMatcher": ".flow.matchers",
    "make_matcher": ".flow.matchers",
    "MLP": ".flow.networks",
    "BrownianBridgePath": ".flow.paths",
    "LipmanPath": ".flow.paths",
    "PathSample": ".flow.paths",
    "StraightPath": ".flow.paths",
    "VPPath": ".flow.paths",
    "CellFlow": ".models.cells",
    "FlowModel": ".models.flow",
    "TrainConfig": ".train.trainer",
    "seed_everything": ".train.trainer",
}

#: the module names of the flat layout before the regrouping, and their homes: ``import
#: cellflow.paths`` gets the very module object of ``cellflow.flow.paths``
_MOVED = {
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


class _FlatLayout(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``cellflow.<old name>`` as the module of its new home (:data:`_MOVED`)."""

    def find_spec(self, fullname, path, target=None):
        head, _, tail = fullname.partition(".")
        if head == __name__ and tail in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        real = importlib.import_module(f"{__name__}.{_MOVED[module.__name__.split('.', 1)[1]]}")
        sys.modules[module.__name__] = real  # the import statement returns this object


if not any(isinstance(f, _FlatLayout) for f in sys.meta_path):
    sys.meta_path.insert(0, _FlatLayout())


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if _LAZY[name].lstrip(".") == name else getattr(module, name)
    elif name in _MOVED:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_MOVED))


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
