"""The ``ip_windows`` query. IP events → per 5-minute window × IP × feature aggregates."""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    IP_SCHEMA,
)
from lambdawatch.core.settings import Settings
from spark_apps.io import StreamIO
from spark_apps.transforms.lateness import LateRule
from spark_apps.transforms.rollups import (
    ip_window_aggregates,
)

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    features = io.settings.ips.features
    events, _dead = io.parse(io.kafka_source("ip_events"), IP_SCHEMA, "ip_windows")
    windows = ip_window_aggregates(events, features, "5 minutes", "2 minutes")
    return io.start_query(
        "ip_windows",
        windows,
        output_mode="update",
        batch_sink=lambda frame, _id: io.upsert(frame, "rt_ip_windows"),
    )


def late_rule(_settings: Settings) -> LateRule:
    """It de-duplicates by event time first: a row is late by its own time."""
    return LateRule(IP_SCHEMA)
