"""cellflow: conditional flow matching (I-CFM, OT-CFM, SB-CFM) for single-cell time courses
and beyond.

>>> import cellflow as cf
>>> model = cf.FlowModel(dim=2, method="ot")
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

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
    "metrics": ".metrics",
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
    "read_lazy": ".course.ondisk",
    "LazyAnnData": ".course.ondisk",
    "FlowModel": ".models.flow",
    "TrainConfig": ".train.trainer",
    "seed_everything": ".train.trainer",
    "set_threads": ".train.threads",
}

#: the version in which the old module names of :data:`_MOVED` stop importing
_MOVED_UNTIL = "0.2"

#: the module names of earlier layouts, and their homes: ``import cellflow.paths`` gets the
#: very module object of ``cellflow.flow.paths``, with a ``FutureWarning`` naming the new home
_MOVED = {
    "paths": "flow.paths",
    "matchers": "flow.matchers",
    "networks": "flow.networks",
    "unet": "flow.unet",
    "solvers": "flow.solvers",
    "likelihood": "flow.likelihood",
    "flow.metrics": "metrics",
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
    "adata": "course",
    "adata._read": "course.read",
    "adata._store": "course.store",
}


def _moved(old: str):
    """The module that ``cellflow.<old>`` names now, after a ``FutureWarning`` saying where."""
    new = _MOVED[old]
    warnings.warn(
        f"cellflow.{old} is now cellflow.{new}; the old name stops importing in cellflow "
        f"{_MOVED_UNTIL}. Import cellflow.{new} instead.",
        FutureWarning,
        stacklevel=3,
    )
    return importlib.import_module(f"{__name__}.{new}")


class _FlatLayout(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``cellflow.<old name>`` as the module of its new home (:data:`_MOVED`)."""

    def find_spec(self, fullname, path, target=None):
        head, _, tail = fullname.partition(".")
        if head == __name__ and tail in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        # the module of the new home itself: the import system files it under the old name
        # too, and leaves its own name, spec and file as they are
        return _moved(spec.name.split(".", 1)[1])

    def exec_module(self, module):
        pass  # imported already, under its own name


if not any(isinstance(f, _FlatLayout) for f in sys.meta_path):
    sys.meta_path.insert(0, _FlatLayout())


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if _LAZY[name].lstrip(".") == name else getattr(module, name)
    elif name in _MOVED:
        return _moved(name)  # not cached: each use of an old name warns
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CellFlow",
    "read_lazy",
    "LazyAnnData",
    "evaluate_holdout",
    "summarize_holdout",
    "FlowModel",
    "FlowMatcher",
    "make_matcher",
    "MLP",
    "TrainConfig",
    "seed_everything",
    "set_threads",
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
    "metrics",
]
