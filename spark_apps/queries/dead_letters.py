"""The ``dead_letters`` query.

Every event topic in one query: whatever is not a valid event becomes a dead letter.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    SCHEMAS,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.parsing import (
    dead_letters_to_kafka,
)

log = logging.getLogger("lambdawatch.speed_layer")

EVENT_SOURCES = ("ip", "server", "cdn", "weather", "metric")


def start(io: StreamIO) -> StreamingQuery:
    """Every event topic in one query: whatever fails to parse goes to the dead-letter topic."""
    raw = io.kafka_source(*(SCHEMAS[s].topic_role for s in EVENT_SOURCES))
    dead = None
    for source in EVENT_SOURCES:
        schema = SCHEMAS[source]
        topic = io.settings.topic(schema.topic_role).name
        _events, rejected = io.parse(raw.where(F.col("topic") == topic), schema, f"{source}_events")
        dead = rejected if dead is None else dead.unionByName(rejected)
    assert dead is not None
    letters = dead_letters_to_kafka(dead, io.settings.dead_letters.max_raw_bytes)
    topics = (io.dead_letter_topic,)
    return io.start_query(
        "dead_letters",
        io.bounded(letters, "dead_letters", topics),
        kafka_topics=topics,
    )
