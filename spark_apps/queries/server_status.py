"""The ``server_status`` query.

Server events → messages and resolution time per minute × location × status.
"""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    SERVER_SCHEMA,
)
from lambdawatch.core.settings import Settings
from spark_apps.io import StreamIO
from spark_apps.transforms.lateness import LateRule
from spark_apps.transforms.rollups import (
    SERVER_GROUP,
    server_status_counts,
)

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    events, _dead = io.parse(io.kafka_source("server_events"), SERVER_SCHEMA, "server_status")
    counts = server_status_counts(events, "1 minute", "30 seconds")
    return io.start_query(
        "server_status",
        counts,
        output_mode="update",
        batch_sink=lambda frame, _id: io.upsert(frame, "rt_server_status"),
    )


def late_rule(_settings: Settings) -> LateRule:
    """It de-duplicates by event time first: a row is late by its own time (a server without
    a location is not read at all)."""
    return LateRule(SERVER_SCHEMA, requires=SERVER_GROUP)
