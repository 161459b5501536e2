"""The ``metric_scores`` streaming operator: state across micro-batches, idle expiry, and runs
that end."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame
from spark_apps.detectors.metric_scores import score_metrics

PARAMS = replace(ScoringParams.from_config(), history=200, warmup=20)
THRESHOLDS = Thresholds(0.313, 0.5)
T0 = datetime(2014, 4, 1, tzinfo=UTC)  # old timestamps: arrival time, not these, ages state
IDLE_TTL_MS = 3000


def _write(folder: Path, name: str, entity: str, start: int, count: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    frame = pd.DataFrame(
        {
            "entity": entity,
            "metric": "load",
            "timestamp": [T0 + timedelta(minutes=5 * (start + i)) for i in range(count)],
            "value": 20 + rng.normal(0, 1, count),
        }
    )
    frame.assign(timestamp=frame["timestamp"].map(datetime.isoformat)).to_json(
        folder / f"{name}.json", orient="records", lines=True
    )
    return frame


def _run(spark: Any, source: Path, checkpoint: Path, run: str) -> pd.DataFrame:
    """One available-now run from the shared checkpoint; the rows it emitted."""
    events = spark.readStream.schema(
        "entity string, metric string, timestamp timestamp, value double"
    ).json(str(source))
    scored = score_metrics(
        events,
        PARAMS,
        THRESHOLDS,
        IDLE_TTL_MS,
        arrival_watermark="0 seconds",
        arrival_unit="second",
    )
    emitted: list[pd.DataFrame] = []
    query = (
        scored.writeStream.foreachBatch(lambda frame, _id: emitted.append(frame.toPandas()))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(120), f"run {run}: an available-now run must end"
    return pd.concat(emitted, ignore_index=True)


def test_series_carry_state_across_runs_and_an_idle_one_starts_afresh(
    spark: Any, tmp_path: Path
) -> None:
    source, checkpoint = tmp_path / "in", tmp_path / "checkpoint"
    source.mkdir()
    _write(source, "1a", "a", 0, 300)
    _write(source, "1b", "b", 0, 50)
    first = _run(spark, source, checkpoint, "r1")
    # The stream scores exactly what the model scores directly from the same samples.
    live = first[first["entity"] == "a"].sort_values("timestamp", ignore_index=True)
    direct, _ = score_frame(SeriesState(PARAMS), live[["timestamp", "value"]], THRESHOLDS)
    assert len(live) == 300
    assert live["score"].max() > 0
    np.testing.assert_array_equal(live["score"].to_numpy(), direct["score"].to_numpy())

    time.sleep(IDLE_TTL_MS / 1000 + 1)  # b idles past its time to live; a arrives again
    _write(source, "2a", "a", 300, 10)
    second = _run(spark, source, checkpoint, "r2")
    _write(source, "3b", "b", 50, 10)
    third = _run(spark, source, checkpoint, "r3")
    assert sorted(second["samples"]) == list(range(300, 310))  # a's model went on
    assert set(third["entity"]) == {"b"}
    assert sorted(third["samples"]) == list(range(10))  # b's state had expired


def test_a_drain_ends_without_an_empty_micro_batch_within_the_hour(
    spark: Any, tmp_path: Path
) -> None:
    """The arrival clock ticks hourly, so the watermark does not move between micro-batches
    of the same hour and Spark has no timeout to look for in an extra, empty one."""
    source = tmp_path / "in"
    source.mkdir()
    _write(source, "1a", "a", 0, 30)
    _write(source, "2a", "a", 30, 30)
    events = (
        spark.readStream.schema("entity string, metric string, timestamp timestamp, value double")
        .option("maxFilesPerTrigger", 1)
        .json(str(source))
    )
    began = datetime.now(UTC)
    query = (
        score_metrics(events, PARAMS, THRESHOLDS, IDLE_TTL_MS)
        .writeStream.format("noop")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(120)
    ended = datetime.now(UTC)
    rows = [progress["numInputRows"] for progress in query.recentProgress]
    if began.hour == ended.hour:
        assert rows == [30, 30]
    else:  # the watermark moved on the hour: one empty micro-batch looks for timeouts
        assert sorted(rows) == [0, 30, 30]
