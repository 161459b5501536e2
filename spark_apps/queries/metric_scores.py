"""The ``metric_scores`` query.

Bring-your-own telemetry: every sample of the metrics topic scored online.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import METRIC_SCHEMA
from spark_apps.detectors.metric_model import ScoringParams, Thresholds
from spark_apps.detectors.metric_scores import (
    metric_anomalies,
    score_metrics,
    scores_to_kafka,
)
from spark_apps.io import StreamIO


def start(io: StreamIO) -> StreamingQuery:
    """Every sample of the metrics topic scored by its series' online model; scores to the
    scores topic, WARN and ERROR samples to the anomalies."""
    config = io.settings.models.metric_scores
    params = ScoringParams.from_config(config)
    thresholds = Thresholds.from_config(config)
    events, _dead = io.parse(io.kafka_source("metrics"), METRIC_SCHEMA, "metric_scores")
    idle_ttl_ms = int(config.idle_ttl.total_seconds() * 1000)

    def sink(frame: DataFrame, _batch_id: int) -> None:
        frame = frame.persist()
        try:
            io.record_anomalies(
                metric_anomalies(frame, params.version),
                "metric_scores",
                other_records={"metric_scores": scores_to_kafka(frame, params.version)},
            )
        finally:
            frame.unpersist()

    scored = score_metrics(events, params, thresholds, idle_ttl_ms)
    return io.start_query("metric_scores", scored, batch_sink=sink)
