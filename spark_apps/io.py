"""Kafka and PostgreSQL for the Spark applications: source and sink options, JDBC reads, upserts.

``StreamIO`` is what a streaming query is built on: its Kafka source, its parsing, its sinks
(Kafka sinks held to each topic's size limit with a producer sized from config.json;
``foreachBatch`` sinks guarded by ``spark_apps.sink_guard``), the upserts into PostgreSQL and
the lookups a query joins against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from functools import reduce
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core import db
from lambdawatch.core.catalog import QUERY_VERSIONS, SPEED_LAYER_QUERIES
from lambdawatch.core.model_registry import forecasts_between
from lambdawatch.core.pipeline_health import SinkError
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import BATCH, SPEED_LAYER, TABLES
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS, anomalies_to_kafka
from spark_apps.sink_guard import BatchSink, SinkGuard
from spark_apps.transforms.exclusions import EXCLUSIONS_QUERY
from spark_apps.transforms.parsing import (
    bound_kafka_records,
    dead_letters_to_kafka,
    parse_events,
)

log = logging.getLogger("lambdawatch.speed_layer")

# A small micro-batch's Kafka read stalled for up to the consumer's fetch.max.wait.ms (500 ms by
# default: measured, tasks of 270-550 ms reading 10-70 records, against at most 150 ms with a
# 10 ms wait): the broker holds a fetch at the log end that long before answering empty.
KAFKA_SOURCE_OPTIONS = {
    "kafka.fetch.max.wait.ms": "10",
    # Records retention deleted before they were read (the layer was down longer than a topic
    # keeps data) are skipped with Spark's warning, counted per batch (``lost_rows`` in
    # speed_layer_progress) and shown on Pipeline health, instead of failing every restart.
    "failOnDataLoss": "false",
}
# Records per topic read per micro-batch at most: bounds a batch's latency and memory.
MAX_OFFSETS_PER_TRIGGER = 50_000


def jdbc_url(settings: Settings) -> str:
    return f"jdbc:postgresql://{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"


def read_query(
    spark: SparkSession,
    settings: Settings,
    secrets: Secrets,
    query: str,
    partition_column: str | None = None,
    partitions: int = 1,
    role: db.Role = BATCH,
) -> DataFrame:
    """A PostgreSQL query as a DataFrame through the JDBC driver.

    With ``partition_column`` (an integer in [0, partitions)), executors read slices in parallel.
    """
    reader = (
        spark.read.format("jdbc")
        .option("url", jdbc_url(settings))
        .option("driver", "org.postgresql.Driver")
        .option("user", db.role_name(settings, role))
        .option("password", db.role_password(secrets, role))
        .option("fetchsize", "10000")
    )
    if partition_column and partitions > 1:
        return (
            reader.option("dbtable", f"({query}) AS source")
            .option("partitionColumn", partition_column)
            .option("lowerBound", "0")
            .option("upperBound", str(partitions))
            .option("numPartitions", str(partitions))
            .load()
        )
    return reader.option("query", query).load()


def read_exclusions(spark: SparkSession, settings: Settings, secrets: Secrets) -> DataFrame:
    """``v_training_exclusions`` (incident and false-positive spans per entity): a few rows,
    read through psycopg so a job needs no JDBC driver for them."""
    with db.connect(settings, secrets) as conn:
        rows = conn.execute(EXCLUSIONS_QUERY).fetchall()
    return spark.createDataFrame(rows, "entity string, start_ts timestamp, end_ts timestamp")


class StreamIO:
    """Sources, sinks and lookups of the speed layer's queries, from one settings object."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        secrets: Secrets,
        checkpoint_root: Path,
        trigger: dict[str, Any] | None = None,
        max_offsets_per_trigger: int = MAX_OFFSETS_PER_TRIGGER,
        on_sink_error: Callable[[SinkError], None] = lambda _error: None,
        starting_offsets: str = "earliest",
    ) -> None:
        self.spark, self.settings, self.secrets = spark, settings, secrets
        self.checkpoint_root = checkpoint_root
        self.trigger = trigger
        self.max_offsets = max_offsets_per_trigger
        self.starting_offsets = starting_offsets  # for a query without a checkpoint yet
        self.dead_letter_topic = settings.topic("dead_letters").name
        self.companions: dict[str, Any] = {}  # ``once``
        # Kept connections for the foreachBatch sinks (driver threads, one per query) and the
        # progress recorder (``ProgressTable``).
        self.pool = db.connection_pool(
            settings, secrets, max_size=len(SPEED_LAYER_QUERIES) + 1, role=SPEED_LAYER
        )
        self.guard = SinkGuard(
            spark, settings.var_path / "quarantine", self.dead_letter_rows, on_sink_error
        )

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the same object after: what a query
        starts beside itself (a notifier thread) survives the query's restart."""
        if key not in self.companions:
            self.companions[key] = make()
        return self.companions[key]

    def close(self) -> None:
        """Close the sinks' database connections (once the queries have stopped)."""
        self.pool.close()

    def checkpoint(self, name: str) -> Path:
        """Where query ``name`` keeps its progress; its micro-batch ids count from here."""
        return self.checkpoint_root / f"{name}-v{QUERY_VERSIONS[name]}"

    # --- sources and sinks ------------------------------------------------------------------
    def parse(self, raw: DataFrame, schema: Any, query: str) -> tuple[DataFrame, DataFrame]:
        return parse_events(
            raw, schema, query, max_event_bytes=self.settings.dead_letters.max_raw_bytes
        )

    def kafka_sink_options(self, topics: tuple[str, ...]) -> dict[str, str]:
        """The producer of a sink writing to ``topics`` (dead letters included), sized from
        config.json: ``max.request.size`` is the largest of their ``max.message.bytes``."""
        return {
            "kafka.bootstrap.servers": self.settings.kafka_bootstrap,
            "kafka.max.request.size": str(
                self.settings.producer_max_request_bytes(*topics, self.dead_letter_topic)
            ),
        }

    def bounded(self, records: DataFrame, query: str, topics: tuple[str, ...]) -> DataFrame:
        """Records for ``topics`` (one topic, or a ``topic`` column naming one of them) with
        every record over its topic's limit turned into a dead letter."""
        limits = {name: self.settings.record_limit(name) for name in topics}
        return bound_kafka_records(
            records,
            limits,
            self.dead_letter_topic,
            query,
            topic=topics[0] if len(topics) == 1 and "topic" not in records.columns else None,
            max_raw_bytes=self.settings.dead_letters.max_raw_bytes,
        )

    def kafka_source(self, *roles: str, max_offsets: int | None = None) -> DataFrame:
        """``roles``' topics as a stream, at most ``max_offsets`` records (default: the
        speed layer's) per micro-batch."""
        topics = ",".join(self.settings.topic(role).name for role in roles)
        return (
            self.spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", self.settings.kafka_bootstrap)
            .option("subscribe", topics)
            .option("startingOffsets", self.starting_offsets)
            .option("maxOffsetsPerTrigger", max_offsets or self.max_offsets)
            .options(**KAFKA_SOURCE_OPTIONS)
            .load()
        )

    def kafka_range(
        self, start: dict[str, dict[str, int]], end: dict[str, dict[str, int]]
    ) -> DataFrame:
        """A batch read of the records a micro-batch read: from its start offsets (inclusive;
        a partition without one, from the earliest) to its end offsets (exclusive)."""
        first = {
            topic: {p: start.get(topic, {}).get(p, -2) for p in partitions}
            for topic, partitions in end.items()
        }  # -2: Kafka's "earliest"
        return (
            self.spark.read.format("kafka")
            .option("kafka.bootstrap.servers", self.settings.kafka_bootstrap)
            .option("assign", json.dumps({t: [int(p) for p in parts] for t, parts in end.items()}))
            .option("startingOffsets", json.dumps(first))
            .option("endingOffsets", json.dumps(end))
            .option("failOnDataLoss", KAFKA_SOURCE_OPTIONS["failOnDataLoss"])
            .load()
        )

    def start_query(
        self,
        name: str,
        frame: DataFrame,
        output_mode: str = "append",
        kafka_topics: tuple[str, ...] = (),
        batch_sink: BatchSink | None = None,
        interval: str = "2 seconds",
    ) -> StreamingQuery:
        """A Kafka sink when ``kafka_topics`` names the topics its records go to (through
        ``bounded``), else the guarded ``batch_sink``."""
        writer = (
            frame.writeStream.queryName(name)
            .outputMode(output_mode)
            .option("checkpointLocation", str(self.checkpoint(name)))
        )
        writer = (
            writer.trigger(**self.trigger)
            if self.trigger
            else writer.trigger(processingTime=interval)
        )
        if kafka_topics:
            return writer.format("kafka").options(**self.kafka_sink_options(kafka_topics)).start()
        assert batch_sink is not None
        return writer.foreachBatch(self.guard.wrap(name, batch_sink)).start()

    def write_kafka(self, frame: DataFrame, role: str, query: str) -> None:
        self.write_kafka_all({role: frame}, query)

    def write_kafka_all(self, frames: Mapping[str, DataFrame], query: str) -> None:
        """``key, value`` records for several topics (role → frame) in one Spark job."""
        named = [(self.settings.topic(role).name, frame) for role, frame in frames.items()]
        records = reduce(
            DataFrame.unionByName, (frame.withColumn("topic", F.lit(t)) for t, frame in named)
        )
        topics = tuple(t for t, _frame in named)
        (
            self.bounded(records, query, topics)
            .write.format("kafka")
            .options(**self.kafka_sink_options(topics))
            .save()
        )

    def dead_letter_rows(
        self, query: str, batch_id: int, rows: list[tuple[dict[str, Any], str]]
    ) -> None:
        """Rows a sink could not write, as dead letters (the row's JSON is the raw record)."""
        frame = self.spark.createDataFrame(
            [
                (json.dumps(row, default=str).encode(), query, f"{reason} (batch {batch_id})")
                for row, reason in rows
            ],
            "raw binary, query string, reason string",
        ).select(
            "*",
            F.lit(None).cast("string").alias("source_topic"),
            F.lit(None).cast("int").alias("partition"),
            F.lit(None).cast("long").alias("offset"),
            F.current_timestamp().alias("dead_at"),
        )
        letters = dead_letters_to_kafka(frame, self.settings.dead_letters.max_raw_bytes)
        self.write_kafka(letters, "dead_letters", query)

    def upsert(self, frame: DataFrame, table: str, update: bool = True) -> int:
        """Rows upserted on ``table``'s declared natural key (``lambdawatch.core.tables``)."""
        # collected through Arrow and COPYed as Arrow-rendered CSV: no Python object per value
        rows = frame.toArrow()
        if rows.num_rows == 0:
            return 0
        with self.pool.connection() as conn:
            return db.upsert_rows(
                conn, table, rows.column_names, rows, TABLES[table].key, update=update
            )

    def baselines(self) -> DataFrame:
        """The baselines table through JDBC. As the static side of a stream-static join it is
        scanned again every micro-batch, so the batch layer's new baselines apply without a
        restart."""
        return read_query(
            self.spark,
            self.settings,
            self.secrets,
            "SELECT metric, entity, mean, stddev FROM baselines",
            role=SPEED_LAYER,
        )

    def forecasts(self, first_us: int, last_us: int) -> list[tuple[Any, ...]]:
        """Forecast rows for the hours a micro-batch spans."""
        with self.pool.connection() as conn:
            return forecasts_between(conn, first_us, last_us)

    def record_anomalies(
        self,
        anomalies: DataFrame,
        query: str,
        other_records: Mapping[str, DataFrame] | None = None,
    ) -> None:
        """To the ``anomalies`` table, then topic; ``other_records`` (role → Kafka records) go
        in the same Kafka write, one Spark job fewer per micro-batch."""
        anomalies = anomalies.persist()
        try:
            records = dict(other_records or {})
            if self.store_anomalies(anomalies):
                records["anomalies"] = anomalies_to_kafka(anomalies)
            if records:
                self.write_kafka_all(records, query)
        finally:
            anomalies.unpersist()

    def store_anomalies(self, anomalies: DataFrame) -> int:
        return self.upsert(anomalies.select(*ANOMALY_COLUMNS), "anomalies")
