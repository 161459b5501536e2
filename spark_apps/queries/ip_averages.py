"""The ``ip_averages`` query. IP events → running averages per IP, in the IP's own partition."""

from __future__ import annotations

import logging

from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    IP_SCHEMA,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.rollups import (
    ip_averages_to_kafka,
    ip_running_averages,
)

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    features = io.settings.ips.features
    events, _dead = io.parse(io.kafka_source("ip_events"), IP_SCHEMA, "ip_averages")
    partitions = F.create_map(
        *[item for ip, p in io.settings.ip_partitions.items() for item in (F.lit(ip), F.lit(p))]
    )
    records = ip_averages_to_kafka(ip_running_averages(events, features), features).withColumn(
        "partition", F.element_at(partitions, F.col("key").cast("string"))
    )
    topics = (io.settings.topic("ip_averages").name,)
    return io.start_query(
        "ip_averages",
        io.bounded(records, "ip_averages", topics),
        output_mode="update",
        kafka_topics=topics,
    )
