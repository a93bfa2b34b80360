"""Execute every notebook in ``tutorials/`` in fast mode (``CELLFLOW_FAST=1``); a cell that
raises fails the test. Notebooks list the data files they read in their metadata
(``metadata.cellflow.data``); they are skipped with the reason when a file is absent."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
DATA_DIR = Path(os.environ.get("CELLFLOW_DATA_DIR", ROOT.parent / "shared" / "datasets"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip(
        "nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'"
    )
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient is in the test extra: pip install -e '.[test]'"
    )
    nb = nbformat.read(path, as_version=4)
    missing = [
        f for f in nb.metadata.get("cellflow", {}).get("data", []) if not (DATA_DIR / f).exists()
    ]
    if missing:
        pytest.skip(f"{path.name} needs {missing} in {DATA_DIR} (set CELLFLOW_DATA_DIR)")
    monkeypatch.setenv("CELLFLOW_FAST", "1")
    monkeypatch.setenv("CELLFLOW_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
