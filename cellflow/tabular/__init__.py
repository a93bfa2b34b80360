"""Flow matching for tables: a DataFrame in, a DataFrame with the same columns and dtypes out.

- :class:`TabularEncoder`: columns ↔ a real matrix (standardised numbers, rounded integers,
  one-hot categories decoded to valid values);
- :class:`TabularFlow`: the generator, optionally conditioned on a label column;
- :func:`column_distances`, :func:`correlation_distance`, :func:`ml_efficiency`: evaluation.
"""

from ._encoder import ColumnSpec, TabularEncoder
from ._metrics import column_distances, correlation_distance, ml_efficiency
from ._model import TabularFlow

__all__ = [
    "TabularEncoder",
    "ColumnSpec",
    "TabularFlow",
    "column_distances",
    "correlation_distance",
    "ml_efficiency",
]
