"""Periods left out of training: incidents (what the platform found abnormal) and the ones an
operator marked false positive (``v_training_exclusions``), per entity.

Exclusions are few (one row per incident and entity), so they are broadcast to the join.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

EXCLUSIONS_QUERY = "SELECT entity, start_ts, end_ts FROM v_training_exclusions"


def _overlaps(
    rows: DataFrame, exclusions: DataFrame, entity: str, start: str, end: str | None
) -> Column:
    finish = F.col(end) if end else F.col(start)
    inside = rows[start] < exclusions["end_ts"]
    if end:
        inside = inside & (finish > exclusions["start_ts"])
    else:
        inside = inside & (rows[start] >= exclusions["start_ts"])
    return (rows[entity].cast("string") == exclusions["entity"]) & inside


def flag_excluded(
    rows: DataFrame,
    exclusions: DataFrame,
    entity: str,
    start: str,
    end: str | None = None,
    flag: str = "excluded",
) -> DataFrame:
    """``rows`` with a ``flag`` column: true where the row's time (``start``, or the span
    ``[start, end)``) meets an exclusion of its entity."""
    excl = F.broadcast(exclusions)
    condition = _overlaps(rows, exclusions, entity, start, end)
    inside = rows.join(excl, condition, "left_semi").withColumn(flag, F.lit(True))
    outside = rows.join(excl, condition, "left_anti").withColumn(flag, F.lit(False))
    return inside.unionByName(outside)


def without_excluded(
    rows: DataFrame, exclusions: DataFrame, entity: str, start: str, end: str | None = None
) -> DataFrame:
    """``rows`` whose time meets no exclusion of their entity."""
    condition = _overlaps(rows, exclusions, entity, start, end)
    return rows.join(F.broadcast(exclusions), condition, "left_anti")
