"""Anomaly scores for any ``{entity, metric, timestamp, value}`` stream: the Spark side.

The model is ``metric_model`` (pure; ``lambdawatch backtest`` runs it on a file). Here each
``(entity, metric)`` series keeps its ``SeriesState`` as Spark state and every micro-batch's
samples are scored in time order.

A series not seen for ``idle_ttl`` loses its state. The clock is the samples' *arrival* (the
micro-batch's time, ``current_timestamp()``), never their own timestamps: replayed history is
years old and must not be dropped as late. The arrival time is declared as the event-time column
with a short watermark and drives an event-time timeout: unlike a processing-time timeout, that
does not make Spark run empty micro-batches forever, so an available-now run ends. The arrival
time is truncated to the hour (``ARRIVAL_UNIT``): Spark runs an extra, empty micro-batch after
each one that moves the watermark, to look for timeouts, and a watermark that moves once an hour
spares a micro-batch in two on a sparse feed and the one that ends every drain. A series expires
at the first micro-batch (of any series) between ``idle_ttl + ARRIVAL_WATERMARK`` and an hour more
after its last sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from spark_apps.detectors.anomaly import TIMESTAMP_FORMAT, anomaly_columns
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame

DETECTOR = "metric_scores"
ARRIVAL_WATERMARK = "1 minute"  # a wall clock set back by more than this would drop a batch
ARRIVAL_UNIT = "hour"  # the arrival clock's tick (``date_trunc`` unit): expiry's precision
STATE_SCHEMA = "model binary"
SCORE_COLUMNS = (
    "entity", "metric", "timestamp", "value", "expected", "score", "severity", "samples",
)  # fmt: skip
SCORE_SCHEMA = (
    "entity string, metric string, timestamp timestamp, value double, expected double, "
    "score double, severity string, samples long"
)


def score_metrics(
    events: DataFrame,
    params: ScoringParams,
    thresholds: Thresholds,
    idle_ttl_ms: int,
    arrival_watermark: str = ARRIVAL_WATERMARK,
    arrival_unit: str = ARRIVAL_UNIT,
) -> DataFrame:
    """Streaming: per (entity, metric) series, every sample scored by its online model."""

    def step(
        key: tuple[str, str], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        entity, metric = key
        frame = pd.concat(list(batches), ignore_index=True)
        model = SeriesState.from_bytes(params, bytes(state.get[0]) if state.exists else None)
        scored, model = score_frame(model, frame[["timestamp", "value"]], thresholds)
        state.update((model.to_bytes(),))
        arrived = pd.Timestamp(frame["arrived_at"].max())
        state.setTimeoutTimestamp(int(arrived.timestamp() * 1000) + idle_ttl_ms)
        yield scored.assign(entity=entity, metric=metric)[list(SCORE_COLUMNS)]

    return (
        events.select("entity", "metric", "timestamp", "value")
        .withColumn("arrived_at", F.date_trunc(arrival_unit, F.current_timestamp()))
        .withWatermark("arrived_at", arrival_watermark)
        .groupBy("entity", "metric")
        .applyInPandasWithState(
            step, SCORE_SCHEMA, STATE_SCHEMA, "append", GroupStateTimeout.EventTimeTimeout
        )
    )


def metric_anomalies(scored: DataFrame, version: str) -> DataFrame:
    return scored.where(F.col("severity") != "SAFE").select(
        *anomaly_columns(
            DETECTOR,
            entity=F.col("entity"),
            metric=F.col("metric"),
            window_start=F.col("timestamp"),
            window_end=F.col("timestamp"),
            value=F.col("value"),
            expected=F.col("expected"),
            score=F.col("score"),
            severity=F.col("severity"),
            model_version=F.lit(version),
        )
    )


def scores_to_kafka(scored: DataFrame, version: str) -> DataFrame:
    body = F.to_json(
        F.struct(
            "entity", "metric", "timestamp", "value", "expected", "score", "severity",
            F.lit(version).alias("model_version"),
        ),
        {"timestampFormat": TIMESTAMP_FORMAT},
    )  # fmt: skip
    return scored.select(
        F.concat_ws("|", "entity", "metric").cast("binary").alias("key"),
        body.cast("binary").alias("value"),
    )
