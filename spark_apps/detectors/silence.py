"""Silence: an entity that stops reporting for ``missed`` expected intervals is an anomaly.

Missing data carries no rows, so no window aggregate can see it. The detector keeps one
timestamp per (source, entity): the last time it reported. Spark's event-time timeout fires
once the watermark (driven by every other entity still reporting) passes
``last_seen + missed × interval``; the gap then becomes one ERROR anomaly starting at the
first missed tick. The rules are plain functions of timestamps, so a batch backtest over
archived events (``find_silences``) and the streaming state function agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from lambdawatch.core.config_model import GeneratorsConfig

DETECTOR = "silence"
METRIC = "reports_missing"
STATE_SCHEMA = "last_seen_ms long"
OUTPUT_SCHEMA = (
    "detector string, entity string, metric string, window_start timestamp, "
    "window_end timestamp, value double, expected double, score double, severity string, "
    "model_version string, detected_at timestamp"
)


def report_intervals_ms(generators: GeneratorsConfig) -> dict[str, int]:
    """Each source's expected reporting interval: the generators' cadence."""
    return {
        "ip": generators.ip_interval_seconds * 1000,
        "server": generators.server_interval_ms,
        "cdn": generators.cdn_interval_seconds * 1000,
    }


def silence_deadline(last_seen_ms: int, interval_ms: int, missed: int) -> int:
    """When the entity counts as silent if nothing newer has arrived."""
    return last_seen_ms + missed * interval_ms


def silence_anomaly(
    source: str,
    entity: str,
    last_seen_ms: int,
    interval_ms: int,
    missed: int,
    now_ms: int,
    resumed_ms: int | None = None,
) -> dict[str, Any]:
    """One gap as an anomaly record; keyed by its first missed tick, so a replay rewrites it.

    ``value`` is the gap in intervals: until the report that ended it, or until ``now_ms``
    (the watermark) while it is still open; the window ends at that report or the deadline.
    """

    def stamp(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    missing = max(missed, ((resumed_ms or now_ms) - last_seen_ms) // interval_ms)
    end = resumed_ms or silence_deadline(last_seen_ms, interval_ms, missed)
    return {
        "detector": DETECTOR,
        "entity": entity,
        "metric": f"{source}:{METRIC}",
        "window_start": stamp(last_seen_ms + interval_ms),
        "window_end": stamp(end),
        "value": float(missing),
        "expected": 0.0,
        "score": float(missing) / missed,
        "severity": "ERROR",
        "model_version": f"missed>={missed}x{interval_ms}ms",
        "detected_at": datetime.now(tz=UTC),
    }


def find_silences(
    timestamps_ms: Sequence[int], interval_ms: int, missed: int, end_ms: int
) -> list[tuple[int, int | None]]:
    """Batch form: (last report before the gap, the report that ended it or ``None``) for
    every gap in the reports, including one still open at ``end_ms`` (past its deadline)."""
    stamps = np.unique(np.asarray(timestamps_ms, dtype=np.int64))
    if not len(stamps):
        return []
    deadlines = stamps + missed * interval_ms
    following = np.append(stamps[1:], np.iinfo(np.int64).max)
    silent = (following > deadlines) & (deadlines < end_ms)  # like the watermark: past it
    return [
        (int(last), int(resumed) if resumed < np.iinfo(np.int64).max else None)
        for last, resumed in zip(stamps[silent], following[silent], strict=True)
    ]


def source_signals(events: Mapping[str, tuple[DataFrame, str]], watermark: str) -> DataFrame:
    """(source, entity, timestamp, ts_ms) from each source's parsed events and entity column.

    Each source gets its own watermark before the union, so the query's watermark is the
    slowest source's (Spark's default ``min`` policy): a topic consumed behind the others makes
    the detector wait instead of calling every entity of that source silent.
    """
    frames = [
        frame.withWatermark("timestamp", watermark).select(
            F.lit(source).alias("source"),
            F.col(column).alias("entity"),
            "timestamp",
            F.unix_millis("timestamp").alias("ts_ms"),
        )
        for source, (frame, column) in events.items()
    ]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def detect_silences(signals: DataFrame, intervals_ms: Mapping[str, int], missed: int) -> DataFrame:
    """Streaming: anomaly rows for entities whose reports stopped (event-time timeouts)."""
    intervals = dict(intervals_ms)

    def step(
        key: tuple[str, str], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        source, entity = key
        interval = intervals[source]
        if state.hasTimedOut:
            (last_seen,) = state.get
            now = state.getCurrentWatermarkMs()
            state.remove()
            yield pd.DataFrame([silence_anomaly(source, entity, last_seen, interval, missed, now)])
            return
        # A backlog can hold both sides of a gap in one micro-batch, and Spark only times out
        # groups that got no data: gaps closed by the data itself are found here.
        known = np.concatenate([batch["ts_ms"].to_numpy() for batch in batches])
        if state.exists:
            # Reports older than the last one seen are late re-sends: Spark hands them to this
            # function (it drops late rows only for aggregations), and they must not open a gap.
            previous = int(state.get[0])
            known = np.append(known[known >= previous], previous)
        last_seen = int(known.max())
        state.update((last_seen,))
        state.setTimeoutTimestamp(silence_deadline(last_seen, interval, missed))
        closed = find_silences(known, interval, missed, last_seen)
        if closed:
            yield pd.DataFrame(
                [
                    silence_anomaly(source, entity, last, interval, missed, last_seen, resumed)
                    for last, resumed in closed
                ]
            )

    return signals.groupBy("source", "entity").applyInPandasWithState(
        step,
        OUTPUT_SCHEMA,
        STATE_SCHEMA,
        "append",
        GroupStateTimeout.EventTimeTimeout,
    )
