"""The behaviour feature table, as Spark's compiler (:mod:`skyshield.spark.job`) reads it.

The table itself lives in :mod:`skyshield.behaviour.definitions`, the one definition every engine
compiles (Polars in ``behaviour.features``, Spark in ``spark.job``, the incremental ``behaviour.stream``);
this module only re-exports it so older imports keep working. There is no second copy of the logic here.
"""

from __future__ import annotations

from skyshield.behaviour.definitions import (
    DERIVED,
    FEATURE_NAMES,
    FEATURES,
    GAP_FROM,
    HISTORY,
    MADE,
    NIGHT_END_HOUR,
    PER_WINDOW,
    RECEIVED,
    SENT,
    SIDE_KEY,
    WINDOWS,
    WindowFeature,
    window_bounds,
)
from skyshield.behaviour.features import batch_features as polars_features

__all__ = ["DERIVED", "FEATURES", "FEATURE_NAMES", "GAP_FROM", "HISTORY", "MADE", "NIGHT_END_HOUR", "PER_WINDOW",
           "RECEIVED", "SENT", "SIDE_KEY", "WINDOWS", "WindowFeature", "polars_features", "window_bounds"]
