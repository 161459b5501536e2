"""Late events: the rows a windowed query dropped as behind its watermark, found again.

Spark only counts them (``numRowsDroppedByWatermark``). Which rows they were follows from how
Spark decides, measured on this Spark (``tests/unit/spark_apps/transforms/test_lateness.py``):
in micro-batch B a row is dropped when its event time, or for an aggregation by event-time
window alone its window's end, is at or behind the watermark of the query's previous batch
(B − 1, as its progress reported it). Re-reading batch B's offsets and applying that rule
finds exactly the dropped rows, which become dead letters with the reason
``late: N s behind the watermark of <query>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.events import EventSchema
from spark_apps.transforms.parsing import (
    DEFAULT_MAX_RAW_BYTES,
    RECORD_COLUMNS,
    all_present,
    dead_letter_columns,
    parse_events,
)


@dataclass(frozen=True)
class LateRule:
    """What a windowed query compares with its watermark to drop a row."""

    schema: EventSchema  # of the events it reads
    window: str | None = None  # an aggregation by this event-time window alone: its end counts
    requires: tuple[str, ...] = ()  # optional fields without which it ignores an event


def late_reason(behind_ms: Column, query: str) -> Column:
    """``late: N s behind the watermark of <query>``: the one wording of a late dead letter."""
    seconds = (behind_ms / 1000).cast("decimal(20,3)").cast("string")
    return F.concat(F.lit("late: "), seconds, F.lit(f" s behind the watermark of {query}"))


def late_dead_letters(
    records: DataFrame,
    rule: LateRule,
    query: str,
    watermark: datetime,
    max_event_bytes: int = DEFAULT_MAX_RAW_BYTES,
) -> DataFrame:
    """Kafka records (``value, topic, partition, offset``) → dead-letter rows (``raw, query,
    reason, source_topic, partition, offset, dead_at``) of the events ``query`` drops behind
    ``watermark``. Records that are not valid events are the ``dead_letters`` query's."""
    events, _invalid = parse_events(
        records, rule.schema, query, max_event_bytes=max_event_bytes, with_record=True
    )
    mark = F.lit(watermark).cast("timestamp")
    judged = F.col("timestamp") if rule.window is None else F.window("timestamp", rule.window).end
    behind_ms = F.unix_millis(mark) - F.unix_millis(F.col("timestamp"))
    return events.where(all_present(rule.requires) & (judged <= mark)).select(
        *dead_letter_columns(query, late_reason(behind_ms, query), RECORD_COLUMNS)
    )
