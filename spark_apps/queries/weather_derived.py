"""The ``weather_derived`` query. Weather readings → temperature − feels-like per reading."""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    WEATHER_SCHEMA,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.rollups import (
    weather_derived,
)

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    events, _dead = io.parse(io.kafka_source("weather_events"), WEATHER_SCHEMA, "weather_derived")
    derived = weather_derived(events).withColumnRenamed("timestamp", "ts")
    return io.start_query(
        "weather_derived",
        derived,
        batch_sink=lambda frame, _id: io.upsert(frame, "rt_weather"),
    )
