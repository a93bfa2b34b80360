"""Fixtures shared by the fault tests (``test_faults*.py``)."""

import pytest
from courses import course

import cellflow as cf


@pytest.fixture(scope="module")
def trained():
    """A small OT-CFM model, trained 20 steps on :func:`courses.course`, and its AnnData."""
    adata = course()
    model = cf.CellFlow(adata, "day", seed=0)
    model.train(steps=20, batch_size=32, progress=False)
    return adata, model
