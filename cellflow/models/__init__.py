"""The models users build: :class:`~cellflow.models.flow.FlowModel` (any vectors, the engine
behind images and tables) and :class:`~cellflow.models.cells.CellFlow` (a flow over the time
points of an AnnData: model time, the multi-marginal objective, pushes and velocities, save and
load with the data's fingerprint).
"""

from ._methods import METHODS as CELLFLOW_METHODS
from ._methods import cellflow_spec

__all__ = ["CELLFLOW_METHODS", "cellflow_spec"]
