"""The ``metric_scores`` query.

Bring-your-own telemetry: every sample of the metrics topic scored online.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    METRIC_SCHEMA,
)
from spark_apps.detectors.metric_scores import (
    ScoringParams,
    metric_anomalies,
    score_metrics,
    scores_to_kafka,
)
from spark_apps.io import StreamIO

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """Bring-your-own telemetry: every sample of the metrics topic scored by its series'
    online model; scores to the scores topic, high scores to the anomalies."""
    config = io.settings.models.metric_scores
    params = ScoringParams(
        alpha=config.alpha,
        season_beta=config.season_beta,
        warmup=config.warmup,
        clip_sigma=config.clip_sigma,
    )
    events, _dead = io.parse(io.kafka_source("metrics"), METRIC_SCHEMA, "metric_scores")

    def sink(frame: DataFrame, _batch_id: int) -> None:
        frame = frame.persist()
        try:
            io.write_kafka(scores_to_kafka(frame, params.version), "metric_scores", "metric_scores")
            io.record_anomalies(
                metric_anomalies(frame, config.warn_score, config.error_score, params.version),
                "metric_scores",
            )
        finally:
            frame.unpersist()

    return io.start_query("metric_scores", score_metrics(events, params), batch_sink=sink)
