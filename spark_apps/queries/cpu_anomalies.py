"""The ``cpu_anomalies`` query.

Server events → each server's CPU per 500 ms window judged against its baseline.
"""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    SERVER_SCHEMA,
)
from lambdawatch.core.settings import Settings
from spark_apps.detectors.cpu import (
    classify_cpu,
    cpu_records_to_kafka,
    cpu_window_stats,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.lateness import LateRule

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """Windows → status and anomalies in Kafka through the native sink, in update mode: no
    Python, no database round trip and no wait for the watermark between an event and the
    verdict on its window being readable (``spark_apps.detectors.cpu``)."""
    model = io.settings.models.cpu_anomaly
    events, _dead = io.parse(io.kafka_source("server_events"), SERVER_SCHEMA, "cpu_anomalies")
    classified = classify_cpu(
        cpu_window_stats(events, model.window, model.watermark),
        io.baselines(),
        io.settings.normal_mean,
        io.settings.normal_stddev,
        model.warn_sigma,
        model.error_sigma,
        (model.fallback_warn_sigma, model.fallback_error_sigma),
    )
    topics = (io.settings.topic("cpu_status").name, io.settings.topic("anomalies").name)
    records = cpu_records_to_kafka(classified, *topics)
    return io.start_query(
        "cpu_anomalies",
        io.bounded(records, "cpu_anomalies", topics),
        output_mode="update",
        kafka_topics=topics,
        interval="500 milliseconds",
    )


def late_rule(settings: Settings) -> LateRule:
    """It aggregates by event-time window alone: a row is late once its window has closed."""
    return LateRule(SERVER_SCHEMA, window=settings.models.cpu_anomaly.window)
