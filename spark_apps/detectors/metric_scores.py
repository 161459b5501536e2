"""Anomaly scores for any ``{entity, metric, timestamp, value}`` stream: the Spark side.

The model is ``metric_model`` (pure; ``lambdawatch backtest`` runs it on a file). Here each
``(entity, metric)`` series keeps its ``SeriesState`` as Spark state, every micro-batch's
samples are scored in time order, and a series not seen for ``idle_ttl`` (processing time: an
event-time timeout would drop replayed old timestamps) loses its state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from spark_apps.detectors.anomaly import TIMESTAMP_FORMAT, anomaly_columns
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_samples

DETECTOR = "metric_scores"
STATE_SCHEMA = "model binary"
SCORE_COLUMNS = (
    "entity", "metric", "timestamp", "value", "expected", "score", "severity", "samples",
)  # fmt: skip
SCORE_SCHEMA = (
    "entity string, metric string, timestamp timestamp, value double, expected double, "
    "score double, severity string, samples long"
)


def epoch_seconds(stamps: pd.Series) -> np.ndarray:
    """Epoch seconds at millisecond precision, the same from a Spark timestamp and a CSV."""
    millis = pd.to_datetime(stamps, utc=True).astype("datetime64[ms, UTC]").astype("int64")
    return millis.to_numpy() / 1000.0


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples of one series in time order (ties by value, so both paths agree)."""
    return frame.sort_values(["timestamp", "value"], kind="stable", ignore_index=True)


def score_frame(
    state: SeriesState, frame: pd.DataFrame, thresholds: Thresholds
) -> tuple[pd.DataFrame, SeriesState]:
    """One series' ``timestamp, value`` rows scored: adds ``expected, score, severity,
    samples`` (samples seen before each row) and returns the new state."""
    ordered = in_time_order(frame)
    scores, new_state = score_samples(
        state, epoch_seconds(ordered["timestamp"]), ordered["value"].to_numpy(float)
    )
    scored = ordered.assign(
        expected=scores.expected,
        score=scores.score,
        severity=[thresholds.severity(s) for s in scores.score],
        samples=np.arange(state.samples, state.samples + len(ordered), dtype=np.int64),
    )
    return scored, new_state


def score_metrics(
    events: DataFrame, params: ScoringParams, thresholds: Thresholds, idle_ttl_ms: int
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
        state.setTimeoutDuration(idle_ttl_ms)
        yield scored.assign(entity=entity, metric=metric)[list(SCORE_COLUMNS)]

    return (
        events.select("entity", "metric", "timestamp", "value")
        .groupBy("entity", "metric")
        .applyInPandasWithState(
            step, SCORE_SCHEMA, STATE_SCHEMA, "append", GroupStateTimeout.ProcessingTimeTimeout
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
