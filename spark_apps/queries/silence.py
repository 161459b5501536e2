"""The ``silence`` query. Entities that stop reporting become ERROR anomalies."""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    CDN_SCHEMA,
    IP_SCHEMA,
    SERVER_SCHEMA,
)
from spark_apps.detectors.silence import detect_silences, report_intervals_ms, source_signals
from spark_apps.io import StreamIO

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """IPs, servers and CDN edges that stop reporting for ``missed_intervals`` of their
    expected interval (the generators' cadence) become ERROR anomalies."""
    config = io.settings.models.silence
    intervals = report_intervals_ms(io.settings.generators)
    per_source = {}
    for source, schema in (("ip", IP_SCHEMA), ("server", SERVER_SCHEMA), ("cdn", CDN_SCHEMA)):
        events, _dead = io.parse(io.kafka_source(schema.topic_role), schema, "silence")
        per_source[source] = (events, schema.key_field)
    gaps = detect_silences(
        source_signals(per_source, config.watermark), intervals, config.missed_intervals
    )
    return io.start_query(
        "silence", gaps, batch_sink=lambda frame, _id: io.record_anomalies(frame, "silence")
    )
