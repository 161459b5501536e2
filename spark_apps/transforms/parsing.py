"""Kafka records → typed events, and everything that is not a valid event → dead letters.

Every field of a source's schema is required. A record is dead with a reason when it is not
a JSON object, lacks a field, holds a value of the wrong type, or is stamped too far in the
future (a clock or producer bug that would otherwise hold event-time windows open).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.events import EventSchema, spark_schema
from spark_apps.transforms.clock import wall_clock


def rejection_reason(
    json: Column, parsed: Column, schema: EventSchema, max_future_s: int
) -> Column:
    """The first thing wrong with a record, or null when it is a valid event.

    ``parsed`` must be a plain column reference to the ``from_json`` result (materialised by
    the caller), or Spark would parse the record again for every field it checks. Valid
    records pay for one null check per field; the key list that tells "missing" from
    "wrong type" is computed only inside the branch for bad records, because
    ``json_object_keys`` costs about as much as parsing.
    """
    horizon = wall_clock() + F.make_interval(secs=F.lit(max_future_s))
    suspicious = F.lit(False)
    for name in schema.names:
        suspicious = suspicious | parsed[name].isNull()
    keys = F.json_object_keys(json)
    explained = [F.when(keys.isNull(), F.lit("malformed: not a JSON object"))]
    for name in schema.names:
        explained.append(
            F.when(~F.array_contains(keys, name), F.lit(f"missing field: {name}")).when(
                parsed[name].isNull(), F.lit(f"invalid value for field: {name}")
            )
        )
    too_late = F.lit(f"timestamp more than {max_future_s}s in the future")
    return F.when(suspicious, F.coalesce(*explained)).when(parsed["timestamp"] > horizon, too_late)


def parse_events(
    raw: DataFrame, schema: EventSchema, query: str, max_future_s: int = 300
) -> tuple[DataFrame, DataFrame]:
    """Split Kafka records (``value, topic, partition, offset``) into events and dead letters."""
    decoded = raw.select(
        "value",
        "topic",
        "partition",
        "offset",
        F.from_json(F.col("value").cast("string"), spark_schema(schema)).alias("event"),
        # A cheap non-deterministic column fences this projection: Spark pushes a filter
        # through a projection only if every column is deterministic, and pushing the
        # validity filter down would substitute ``event`` and re-parse the JSON once per
        # field. The filters below reference it so column pruning cannot drop it first.
        F.spark_partition_id().alias("_parse_fence"),
    )
    json = F.col("value").cast("string")
    staged = decoded.select(
        "*", rejection_reason(json, F.col("event"), schema, max_future_s).alias("reason")
    )
    fenced = F.col("_parse_fence") >= 0  # always true, but not provably so to the optimizer
    events = staged.where(F.col("reason").isNull() & fenced).select("event.*")
    dead = staged.where(F.col("reason").isNotNull() & fenced).select(
        F.col("value").alias("raw"),
        F.lit(query).alias("query"),
        "reason",
        F.col("topic").alias("source_topic"),
        "partition",
        "offset",
        wall_clock().alias("dead_at"),
    )
    return events, dead


def dead_letters_to_kafka(dead: DataFrame) -> DataFrame:
    """Dead letters as Kafka records: the raw bytes travel base64-encoded, untouched."""
    body = F.to_json(
        F.struct(
            F.col("query"),
            F.col("reason"),
            F.col("source_topic"),
            F.col("partition"),
            F.col("offset"),
            F.base64("raw").alias("raw_base64"),
            F.col("raw").cast("string").alias("raw_text"),
            F.date_format("dead_at", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").alias("dead_at"),
        )
    )
    return dead.select(
        F.col("query").cast("binary").alias("key"), body.cast("binary").alias("value")
    )


def watermarked_unique(events: DataFrame, watermark: str) -> DataFrame:
    """Event-time watermark plus de-duplication by ``event_id`` within it.

    Producers are at-least-once and a retried feed re-sends identical events; dropping
    duplicates here keeps every downstream count exact, with state bounded by the watermark.
    """
    marked = events.withWatermark("timestamp", watermark)
    if not events.isStreaming:  # batch (backtests, unit tests): the whole input is the window
        return marked.dropDuplicates(["event_id"])
    return marked.dropDuplicatesWithinWatermark(["event_id"])
