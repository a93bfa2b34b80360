"""The usage examples in the module docstrings run as written."""

import doctest
import importlib
import pkgutil

import pytest

import cellflow

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(cellflow.__path__, "cellflow.")
    if "__main__" not in m.name
)


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_readme_is_a_front_page():
    """At most 8 KB, no link to a folder outside the repository, and no run time that the
    benchmarks page does not hold."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    assert len(text.encode()) <= 8192
    assert "../shared" not in text
    # a run time on the front page is one the benchmarks page holds, with its command
    benchmarks = " ".join((root / "tutorials" / "benchmarks.md").read_text().split())
    for figure in re.findall(r"\b\d[\d.,]*\s*(?:s|sec|seconds|min|minutes|h|hours)\b", text):
        assert " ".join(figure.split()) in benchmarks, figure


def test_the_module_names_of_the_flat_layout_still_import():
    """Code written against the flat layout before the regrouping (``cellflow.paths``,
    ``from cellflow.assignment import ...``) gets the very module of the new layout."""
    import importlib

    # every public module of the flat layout (tutorials/api.md before the regrouping)
    old = (
        "paths matchers networks unet solvers likelihood metrics geodesics riemannian_metrics "
        "assignment sparse_ot training train_config optim batch_workers distributed threads model"
    )
    for name in old.split():
        module = importlib.import_module(f"cellflow.{name}")
        assert module.__name__ != f"cellflow.{name}", name  # it lives in its package now
        assert importlib.import_module(module.__name__) is module is getattr(cellflow, name), name
    from cellflow.model import FlowModel
    from cellflow.training import TrainConfig

    assert FlowModel is cellflow.FlowModel and TrainConfig is cellflow.TrainConfig


def test_each_layer_imports_only_the_layers_above_it():
    """The layering that ``tutorials/api.md`` states: no package imports one listed after it."""
    import ast
    from pathlib import Path

    order = [
        "_types",
        "_defaults",
        "_io",
        "couplings",
        "flow",
        "train",
        "adata",
        "pp",
        "models",
        "evaluate",
        "tl",
        "pl",
        "datasets",
        "images",
        "tabular",
        "bench",
        "cli",
    ]
    rank = {name: i for i, name in enumerate(order)}
    root = Path(cellflow.__file__).parent
    wrong = []
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts  # ("cellflow", "flow", "paths")
        here = parts[:-1] if parts[-1] == "__init__" else parts[:-1]
        me = parts[1] if len(parts) > 1 and parts[1] not in ("__init__", "__main__") else None
        if me not in rank:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(here[: len(here) - (node.level - 1)])
                targets = (
                    [base + node.module.split(".")]
                    if node.module
                    else [base + [a.name] for a in node.names]
                )
                for t in targets:
                    other = t[1] if len(t) > 1 else None
                    if other in rank and other != me and rank[other] > rank[me]:
                        wrong.append(f"{f.relative_to(root.parent)} imports cellflow.{other}")
    assert not wrong, wrong
