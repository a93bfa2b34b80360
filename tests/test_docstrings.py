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


def test_the_module_names_of_earlier_layouts_import_with_a_warning():
    """Code written against the flat layout before the regrouping (``cellflow.paths``,
    ``from cellflow.assignment import ...``) gets the very module of the new layout, with a
    ``FutureWarning`` that names the new home and the version that removes the old name; no
    old name is imported until it is used, and none is a public name of the package."""
    import importlib
    import subprocess
    import sys

    # every public module of the flat layout (tutorials/api.md before the regrouping)
    old = (
        "paths matchers networks unet solvers likelihood geodesics riemannian_metrics "
        "assignment sparse_ot training train_config optim batch_workers distributed threads model"
    )
    for name in [*old.split(), "flow.metrics"]:
        new = cellflow._MOVED[name]
        sys.modules.pop(f"cellflow.{name}", None)  # imported by an earlier test
        with pytest.warns(FutureWarning, match=rf"cellflow\.{name} is now cellflow\.{new}.*0\.2"):
            module = importlib.import_module(f"cellflow.{name}")
        assert module.__name__ == f"cellflow.{new}", name  # it keeps its own name
        assert importlib.import_module(module.__name__) is module, name
        assert name not in cellflow.__all__
    assert cellflow.metrics.__name__ == "cellflow.metrics"  # a module of its own, no warning
    sys.modules.pop("cellflow.model")
    with pytest.warns(FutureWarning, match="cellflow.model is now cellflow.models.flow"):
        from cellflow.model import FlowModel
    assert FlowModel is cellflow.FlowModel
    code = (
        "import sys, cellflow as cf; cf.FlowModel; cf.metrics; "
        "print(sorted(m for m in sys.modules if m.startswith('cellflow.') and "
        "m.split('.', 1)[1] in cf._MOVED))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


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
        "course",
        "pp",
        "models",
        "metrics",
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


def test_the_tests_mirror_the_package():
    """Each folder of tests is named after the package it tests (``tests/flow`` for
    ``cellflow.flow``, ...); tests that cut across packages (faults, docs, tutorials) stay at the
    top."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    package = Path(cellflow.__file__).parent
    folders = [d.name for d in here.iterdir() if d.is_dir() and not d.name.startswith("__")]
    assert folders, "the tests are grouped by package"
    assert all((package / name / "__init__.py").exists() for name in folders), folders
