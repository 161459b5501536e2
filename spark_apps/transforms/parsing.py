"""Kafka records → typed events, and everything that is not a valid event → dead letters.

A record is dead with a reason when it is larger than a dead letter may carry (``oversized``,
and then not parsed at all), is not a JSON object, lacks a field its source requires, holds a
value of the wrong type, or is stamped too far in the future (a clock or producer bug that
would otherwise hold event-time windows open). An optional field may be absent or null; an
event without ``event_id`` gets the derived one (``lambdawatch.core.events.event_id``).

Dead letters are bounded: whatever arrives, a dead letter keeps at most ``max_raw_bytes`` of
the record (base64) with its size and SHA-256, so it always fits the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.events import EventSchema, spark_schema
from spark_apps.transforms.clock import wall_clock

DEFAULT_MAX_RAW_BYTES = 64 * 1024  # config.json's dead_letters.max_raw_bytes default
DEAD_LETTER_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
# an event's Kafka record, kept beside its fields (named apart: a metric event has a ``value``)
RECORD_COLUMNS = {
    "value": "_raw",
    "topic": "_topic",
    "partition": "_partition",
    "offset": "_offset",
}


def oversized_reason(size: Column) -> Column:
    """``oversized: N bytes``: the one wording for a record too large to handle."""
    return F.concat(F.lit("oversized: "), size.cast("string"), F.lit(" bytes"))


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
        invalid = F.lit(f"invalid value for field: {name}")
        if name in schema.required:
            explained.append(
                F.when(~F.array_contains(keys, name), F.lit(f"missing field: {name}")).when(
                    parsed[name].isNull(), invalid
                )
            )
        else:  # absent or null is fine; a value Spark could not read as the type is not
            given = F.array_contains(keys, name) & F.get_json_object(json, f"$.{name}").isNotNull()
            explained.append(F.when(given & parsed[name].isNull(), invalid))
    too_late = F.lit(f"timestamp more than {max_future_s}s in the future")
    reason = F.when(suspicious, F.coalesce(*explained)).when(
        parsed["timestamp"] > horizon, too_late
    )
    # JSON has no NaN or infinity, but Spark reads NaN, Infinity and 1e400 into a double: one
    # such value would turn every mean and σ it meets into NaN or infinity
    for name, kind in schema.fields:
        if kind == "double":
            value = parsed[name]
            reason = reason.when(
                F.isnan(value) | (F.abs(value) == F.lit(float("inf"))),
                F.lit(f"invalid value for field: {name} (not a finite number)"),
            )
    return reason


def dead_letter_columns(
    query: str, reason: Column, record: Mapping[str, str] | None = None
) -> list[Column]:
    """A dead-letter row (``raw, query, reason, source_topic, partition, offset, dead_at``) of
    a Kafka record whose columns are named as Kafka names them, or as ``record`` renames them
    (``RECORD_COLUMNS``)."""
    names = record or {}

    def column(name: str) -> Column:
        return F.col(names.get(name, name))

    return [
        column("value").alias("raw"),
        F.lit(query).alias("query"),
        reason.alias("reason"),
        column("topic").alias("source_topic"),
        column("partition").alias("partition"),
        column("offset").alias("offset"),
        wall_clock().alias("dead_at"),
    ]


def all_present(names: Iterable[str]) -> Column:
    """True where none of the ``names`` columns is null."""
    present = F.lit(True)
    for name in names:
        present = present & F.col(name).isNotNull()
    return present


def with_event_id(events: DataFrame, schema: EventSchema) -> DataFrame:
    """``event_id`` as sent, else derived as ``lambdawatch.core.events.event_id`` derives it."""
    derived = F.concat_ws(
        ":",
        F.lit(schema.source),
        *[F.col(name).cast("string") for name in schema.identity_fields],
        F.unix_millis(F.col("timestamp")).cast("string"),
    )
    return events.withColumn("event_id", F.coalesce(F.col("event_id"), derived))


def parse_events(
    raw: DataFrame,
    schema: EventSchema,
    query: str,
    max_future_s: int = 300,
    max_event_bytes: int = DEFAULT_MAX_RAW_BYTES,
    with_record: bool = False,
) -> tuple[DataFrame, DataFrame]:
    """Split Kafka records (``value, topic, partition, offset``) into events and dead letters.

    A record over ``max_event_bytes`` is dead as ``oversized`` without being parsed. With
    ``with_record`` each event keeps its record (``RECORD_COLUMNS``), to be set aside later.
    """
    size = F.coalesce(F.octet_length("value"), F.lit(0))
    oversized = size > max_event_bytes
    decoded = raw.select(
        "value",
        "topic",
        "partition",
        "offset",
        F.when(~oversized, F.from_json(F.col("value").cast("string"), spark_schema(schema))).alias(
            "event"
        ),
        # A cheap non-deterministic column fences this projection: Spark pushes a filter
        # through a projection only if every column is deterministic, and pushing the
        # validity filter down would substitute ``event`` and re-parse the JSON once per
        # field. The filters below reference it so column pruning cannot drop it first.
        F.spark_partition_id().alias("_parse_fence"),
    )
    json = F.col("value").cast("string")
    reason = F.when(oversized, oversized_reason(size)).otherwise(
        rejection_reason(json, F.col("event"), schema, max_future_s)
    )
    staged = decoded.select("*", reason.alias("reason"))
    fenced = F.col("_parse_fence") >= 0  # always true, but not provably so to the optimizer
    kept = [F.col(name).alias(alias) for name, alias in RECORD_COLUMNS.items()] * with_record
    valid = staged.where(F.col("reason").isNull() & fenced).select("event.*", *kept)
    events = with_event_id(valid, schema)
    dead = staged.where(F.col("reason").isNotNull() & fenced).select(
        *dead_letter_columns(query, F.col("reason"))
    )
    return events, dead


def dead_letter_body(
    raw: Column,
    query: Column,
    reason: Column,
    source_topic: Column,
    partition: Column,
    offset: Column,
    dead_at: Column,
    max_raw_bytes: int,
) -> Column:
    """One dead letter's JSON: the raw bytes once (base64, cut to ``max_raw_bytes``), their
    full size and SHA-256, where the record came from and why it was set aside."""
    size = F.coalesce(F.octet_length(raw), F.lit(0))
    return F.to_json(
        F.struct(
            query.alias("query"),
            reason.alias("reason"),
            source_topic.alias("source_topic"),
            partition.alias("partition"),
            offset.alias("offset"),
            size.alias("raw_bytes"),
            F.sha2(raw, 256).alias("raw_sha256"),
            (size > max_raw_bytes).alias("raw_truncated"),
            # binary in to_json is base64 without line breaks (Spark's base64() adds MIME
            # breaks every 76 characters, which JSON would escape: 6 % more bytes)
            F.substring(raw, 1, max_raw_bytes).alias("raw_base64"),
            F.date_format(dead_at, DEAD_LETTER_TIME_FORMAT).alias("dead_at"),
        ),
        {"ignoreNullFields": "false"},  # one shape: a letter without coordinates says null
    )


def dead_letters_to_kafka(dead: DataFrame, max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES) -> DataFrame:
    """Dead letters as Kafka records, keyed by the query that set them aside."""
    body = dead_letter_body(
        F.col("raw"),
        F.col("query"),
        F.col("reason"),
        F.col("source_topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("dead_at"),
        max_raw_bytes,
    )
    return dead.select(
        F.col("query").cast("binary").alias("key"), body.cast("binary").alias("value")
    )


def bound_kafka_records(
    records: DataFrame,
    limits: dict[str, int],
    dead_letter_topic: str,
    query: str,
    topic: str | None = None,
    max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
) -> DataFrame:
    """Kafka-bound records (``key, value`` and a ``topic`` column unless ``topic`` is given),
    each held to its topic's limit: a record larger than ``limits[topic]`` becomes a dead
    letter on ``dead_letter_topic`` (reason ``oversized: N bytes``) instead of a write the
    broker would refuse, which would fail the micro-batch, and with it the query, for good.

    Returns the records with a ``topic`` column (and ``partition`` nulled for dead letters), for
    a sink that takes each record's topic from its row.
    """
    if topic is not None:
        records = records.withColumn("topic", F.lit(topic))
    size = F.coalesce(F.octet_length("key"), F.lit(0)) + F.coalesce(
        F.octet_length("value"), F.lit(0)
    )
    limit = F.lit(None).cast("long")
    for name, bytes_allowed in limits.items():
        limit = F.when(F.col("topic") == name, F.lit(bytes_allowed)).otherwise(limit)
    too_big = F.coalesce(size > limit, F.lit(False))
    letter = dead_letter_body(
        F.col("value"),
        F.lit(query),
        oversized_reason(size),
        F.col("topic"),
        F.lit(None).cast("int"),
        F.lit(None).cast("long"),
        wall_clock(),
        max_raw_bytes,
    ).cast("binary")
    columns = [
        F.when(too_big, F.lit(query).cast("binary")).otherwise(F.col("key")).alias("key"),
        F.when(too_big, letter).otherwise(F.col("value")).alias("value"),
        F.when(too_big, F.lit(dead_letter_topic)).otherwise(F.col("topic")).alias("topic"),
    ]
    if "partition" in records.columns:
        columns.append(
            F.when(too_big, F.lit(None).cast("int"))
            .otherwise(F.col("partition"))
            .alias("partition")
        )
    return records.select(*columns)


def watermarked_unique(events: DataFrame, watermark: str) -> DataFrame:
    """Event-time watermark plus de-duplication by ``event_id`` within it.

    Producers are at-least-once and a retried feed re-sends identical events; dropping
    duplicates here keeps every downstream count exact, with state bounded by the watermark.
    """
    marked = events.withWatermark("timestamp", watermark)
    if not events.isStreaming:  # batch (backtests, unit tests): the whole input is the window
        return marked.dropDuplicates(["event_id"])
    return marked.dropDuplicatesWithinWatermark(["event_id"])
