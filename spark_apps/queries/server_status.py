"""The ``server_status`` query.

Server events → messages and resolution time per minute × location × status.
"""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    SERVER_SCHEMA,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.rollups import (
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
