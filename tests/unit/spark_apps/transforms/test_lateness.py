"""Late rows found again exactly as Spark drops them (``transforms.lateness``).

Each case runs a windowed query's own transform as a stream over three micro-batches (a file
source, one file per batch, available-now runs on one checkpoint) and holds the rows that
``late_dead_letters`` finds, against the watermark the previous batch reported, to Spark's
``numRowsDroppedByWatermark``, with and without Spark's no-data batches (which change which
batch is "previous").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from lambdawatch.core.events import SERVER_SCHEMA, spark_schema
from spark_apps.detectors.cpu import cpu_window_stats
from spark_apps.transforms.lateness import LateRule, late_dead_letters
from spark_apps.transforms.rollups import server_status_counts
from tests.unit.spark_apps.frames import kafka_rows, server_event


def _at(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"2026-01-01T00:{int(minutes):02d}:{rest:06.3f}Z"


# batch 0 and 1 move the watermark (2 s behind the newest event) to 198 s; batch 2 is late
# in parts: at 50 s (far behind), 197.4 and 197.9 (behind, their 500 ms windows closed at
# 197.5 and 198.0), 198.0 (at the watermark: behind for Spark) and 198.4 (its window is open)
LATE_BATCH = (50.0, 197.4, 197.9, 198.0, 198.4)
BATCHES = ((100.0,), (200.0,), LATE_BATCH)

Transform = Callable[[DataFrame], DataFrame]
CASES: dict[str, tuple[Transform, LateRule, tuple[float, ...]]] = {
    # an aggregation by window alone: late once the window has closed
    "cpu_anomalies": (
        lambda events: cpu_window_stats(events, "500 milliseconds", "2 seconds"),
        LateRule(SERVER_SCHEMA, window="500 milliseconds"),
        (50.0, 197.4, 197.9),
    ),
    # de-duplication by event time first: late by the row's own time
    "server_status": (
        lambda events: server_status_counts(events, "1 minute", "2 seconds"),
        LateRule(SERVER_SCHEMA),
        (50.0, 197.4, 197.9, 198.0),
    ),
}


def _run_batches(spark: SparkSession, root: Path, transform: Transform) -> list[dict[str, Any]]:
    """Each file as its own micro-batch; every progress with input, in order."""
    incoming = root / "in"
    incoming.mkdir()
    progress: list[dict[str, Any]] = []
    for number, batch in enumerate(BATCHES):
        events = [server_event(event_id=f"e{number}-{s}", timestamp=_at(s)) for s in batch]
        (incoming / f"{number}.json").write_text("\n".join(json.dumps(e) for e in events))
        stream = spark.readStream.schema(spark_schema(SERVER_SCHEMA)).json(str(incoming))
        query = (
            transform(stream)
            .writeStream.foreachBatch(lambda frame, _id: frame.count())
            .outputMode("update")
            .option("checkpointLocation", str(root / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        progress.extend(query.recentProgress)
    return progress


@pytest.mark.parametrize("query", sorted(CASES))
@pytest.mark.parametrize("no_data_batches", [True, False])
def test_the_late_rows_found_are_the_ones_spark_dropped(
    spark: SparkSession, tmp_path: Path, query: str, no_data_batches: bool
) -> None:
    transform, rule, expected_late = CASES[query]
    setting = "spark.sql.streaming.noDataMicroBatches.enabled"
    spark.conf.set(setting, str(no_data_batches).lower())
    try:
        progress = _run_batches(spark, tmp_path, transform)
    finally:
        spark.conf.unset(setting)
    late_index = next(i for i, p in enumerate(progress) if p["numInputRows"] == len(LATE_BATCH))
    dropped = sum(op["numRowsDroppedByWatermark"] for op in progress[late_index]["stateOperators"])
    previous = progress[late_index - 1]["eventTime"]["watermark"]
    records = kafka_rows(
        spark,
        [json.dumps(server_event(event_id=f"e2-{s}", timestamp=_at(s))).encode()
         for s in LATE_BATCH],
    )  # fmt: skip
    mark = datetime.fromisoformat(previous.replace("Z", "+00:00"))
    letters = late_dead_letters(records, rule, query, mark).collect()
    assert dropped == len(letters)
    found = sorted(json.loads(row["raw"])["timestamp"] for row in letters)
    # Without no-data batches the late batch's previous batch is batch 1, whose watermark is
    # still batch 0's (98 s): only the event at 50 s is behind it, and only that was dropped.
    watermark_s, expected = (198.0, expected_late) if no_data_batches else (98.0, (50.0,))
    assert previous == _at(watermark_s)
    assert found == [_at(s) for s in expected]
    reasons = {json.loads(r["raw"])["timestamp"]: r["reason"] for r in letters}
    assert reasons[_at(50.0)] == (
        f"late: {watermark_s - 50.0:.3f} s behind the watermark of {query}"
    )
