"""The speed layer: one always-on Spark application, several streaming queries over Kafka.

Each query is source → pure transforms (``spark_apps.transforms``) → sink, with its own
checkpoint. PostgreSQL sinks upsert on natural keys inside ``foreachBatch``, so a micro-batch
replayed after a crash rewrites the same rows; Kafka sinks are at-least-once with stable keys.

No record can stop a query: every Kafka sink holds each record to its topic's size limit
(a larger one becomes a dead letter) with a producer sized from the same configuration, and
every ``foreachBatch`` sink sets the records it cannot write aside (``spark_apps.sink_guard``).

Run locally (``lambdawatch up`` supervises it) or submit unchanged to a ``spark://`` master::

    python -m spark_apps.speed_layer
    spark-submit --master spark://spark-master:7077 spark_apps/speed_layer.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lambdawatch import db
from lambdawatch.events import (
    CDN_SCHEMA,
    IP_SCHEMA,
    METRIC_SCHEMA,
    SCHEMAS,
    SERVER_SCHEMA,
    WEATHER_SCHEMA,
)
from lambdawatch.kafka_admin import admin_client, ensure_topics
from lambdawatch.model_registry import ModelCache, promoted_model
from lambdawatch.pipeline_health import progress_rows, write_progress, write_sink_error
from lambdawatch.secrets import Secrets, secrets_for
from lambdawatch.settings import Settings, load_settings
from spark_apps.catalog import DOWNSTREAM_QUERIES, QUERY_VERSIONS, SPEED_LAYER_QUERIES
from spark_apps.jobs.common import read_query
from spark_apps.session import build_session
from spark_apps.sink_guard import BatchSink, SinkError, SinkGuard
from spark_apps.transforms.anomaly import ANOMALY_COLUMNS, ANOMALY_KEY, anomalies_to_kafka
from spark_apps.transforms.cdn_kmeans import (
    CDN_CLUSTER_COLUMNS,
    MODEL_NAME,
    cdn_anomalies,
    cdn_cluster_rows,
    cdn_clusters_to_kafka,
)
from spark_apps.transforms.cpu import (
    CPU_WINDOW_COLUMNS,
    classify_cpu,
    cpu_records_to_kafka,
    cpu_store_rows,
    cpu_window_stats,
    latest_cpu_store_writes,
    parse_cpu_status,
)
from spark_apps.transforms.deviations import (
    FORECAST_LOOKUP_SCHEMA,
    forecast_deviations,
    judge_against_forecast,
)
from spark_apps.transforms.metric_scores import (
    ScoringParams,
    metric_anomalies,
    score_metrics,
    scores_to_kafka,
)
from spark_apps.transforms.parsing import (
    bound_kafka_records,
    dead_letters_to_kafka,
    parse_events,
)
from spark_apps.transforms.rollups import (
    ip_averages_to_kafka,
    ip_running_averages,
    ip_window_aggregates,
    melt_ip_features,
    server_status_counts,
    weather_derived,
)
from spark_apps.transforms.silence import detect_silences, source_signals

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

log = logging.getLogger("lambdawatch.speed_layer")
# RocksDB state with changelog checkpointing: a micro-batch commits only the changed keys, not
# a snapshot per partition, which is most of a small stateful batch's time. (Stored in each
# checkpoint: queries started under the default provider keep it until their version bumps.)
STATE_STORE = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
}
EVENT_SOURCES = ("ip", "server", "cdn", "weather", "metric")
# A small micro-batch's Kafka read stalled for up to the consumer's fetch.max.wait.ms (500 ms by
# default: measured, tasks of 270-550 ms reading 10-70 records, against at most 150 ms with a
# 10 ms wait): the broker holds a fetch at the log end that long before answering empty.
KAFKA_SOURCE_OPTIONS = {"kafka.fetch.max.wait.ms": "10"}


class SpeedLayer:
    """Builds and starts the streaming queries from one settings object."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        secrets: Secrets,
        checkpoint_root: Path,
        trigger: dict[str, Any] | None = None,
        max_offsets_per_trigger: int = 50_000,
        on_sink_error: Callable[[SinkError], None] = lambda _error: None,
        starting_offsets: str = "earliest",
    ) -> None:
        self.spark, self.settings, self.secrets = spark, settings, secrets
        self.checkpoint_root = checkpoint_root
        self.trigger = trigger
        self.max_offsets = max_offsets_per_trigger
        self.starting_offsets = starting_offsets  # for a query without a checkpoint yet
        self.dead_letter_topic = settings.topic("dead_letters").name
        # Kept connections for the foreachBatch sinks (driver threads, one per query) and the
        # progress recorder (``ProgressTable``).
        self.pool = db.connection_pool(settings, secrets, max_size=len(SPEED_LAYER_QUERIES) + 1)
        self.guard = SinkGuard(
            spark, settings.var_path / "quarantine", self._dead_letter_rows, on_sink_error
        )

    def close(self) -> None:
        """Close the sinks' database connections (once the queries have stopped)."""
        self.pool.close()

    # --- sources and sinks ------------------------------------------------------------------
    def _parse(self, raw: DataFrame, schema: Any, query: str) -> tuple[DataFrame, DataFrame]:
        return parse_events(
            raw, schema, query, max_event_bytes=self.settings.dead_letters.max_raw_bytes
        )

    def _kafka_sink_options(self, topics: tuple[str, ...]) -> dict[str, str]:
        """The producer of a sink writing to ``topics`` (dead letters included), sized from
        config.json: ``max.request.size`` is the largest of their ``max.message.bytes``."""
        return {
            "kafka.bootstrap.servers": self.settings.kafka_bootstrap,
            "kafka.max.request.size": str(
                self.settings.producer_max_request_bytes(*topics, self.dead_letter_topic)
            ),
        }

    def _bounded(self, records: DataFrame, query: str, topics: tuple[str, ...]) -> DataFrame:
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

    def _kafka_source(self, *roles: str) -> DataFrame:
        topics = ",".join(self.settings.topic(role).name for role in roles)
        return (
            self.spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", self.settings.kafka_bootstrap)
            .option("subscribe", topics)
            .option("startingOffsets", self.starting_offsets)
            .option("maxOffsetsPerTrigger", self.max_offsets)
            .options(**KAFKA_SOURCE_OPTIONS)
            .load()
        )

    def _start(
        self,
        name: str,
        frame: DataFrame,
        output_mode: str = "append",
        kafka_topics: tuple[str, ...] = (),
        batch_sink: BatchSink | None = None,
        interval: str = "2 seconds",
    ) -> StreamingQuery:
        """A Kafka sink when ``kafka_topics`` names the topics its records go to (through
        ``_bounded``), else the guarded ``batch_sink``."""
        writer = (
            frame.writeStream.queryName(name)
            .outputMode(output_mode)
            .option(
                "checkpointLocation", str(self.checkpoint_root / f"{name}-v{QUERY_VERSIONS[name]}")
            )
        )
        writer = (
            writer.trigger(**self.trigger)
            if self.trigger
            else writer.trigger(processingTime=interval)
        )
        if kafka_topics:
            return writer.format("kafka").options(**self._kafka_sink_options(kafka_topics)).start()
        assert batch_sink is not None
        return writer.foreachBatch(self.guard.wrap(name, batch_sink)).start()

    def _write_kafka(self, frame: DataFrame, role: str, query: str) -> None:
        topic = self.settings.topic(role).name
        (
            self._bounded(frame, query, (topic,))
            .write.format("kafka")
            .options(**self._kafka_sink_options((topic,)))
            .save()
        )

    def _dead_letter_rows(
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
        (
            letters.write.format("kafka")
            .options(**self._kafka_sink_options((self.dead_letter_topic,)))
            .option("topic", self.dead_letter_topic)
            .save()
        )

    def _upsert(
        self, frame: DataFrame, table: str, keys: tuple[str, ...], update: bool = True
    ) -> int:
        # collected through Arrow and COPYed as Arrow-rendered CSV: no Python object per value
        rows = frame.toArrow()
        if rows.num_rows == 0:
            return 0
        with self.pool.connection() as conn:
            return db.upsert_rows(conn, table, rows.column_names, rows, keys, update=update)

    def _baselines(self) -> DataFrame:
        """The baselines table through JDBC. As the static side of a stream-static join it is
        scanned again every micro-batch, so the batch layer's new baselines apply without a
        restart."""
        return read_query(
            self.spark,
            self.settings,
            self.secrets,
            "SELECT metric, entity, mean, stddev FROM baselines",
        )

    # --- queries ------------------------------------------------------------------------------
    def dead_letters(self) -> StreamingQuery:
        """Every event topic in one query: whatever fails to parse goes to the dead-letter topic."""
        raw = self._kafka_source(*(SCHEMAS[s].topic_role for s in EVENT_SOURCES))
        dead = None
        for source in EVENT_SOURCES:
            schema = SCHEMAS[source]
            topic = self.settings.topic(schema.topic_role).name
            _events, rejected = self._parse(
                raw.where(F.col("topic") == topic), schema, f"{source}_events"
            )
            dead = rejected if dead is None else dead.unionByName(rejected)
        assert dead is not None
        letters = dead_letters_to_kafka(dead, self.settings.dead_letters.max_raw_bytes)
        topics = (self.dead_letter_topic,)
        return self._start(
            "dead_letters",
            self._bounded(letters, "dead_letters", topics),
            kafka_topics=topics,
        )

    def server_status(self) -> StreamingQuery:
        events, _dead = self._parse(
            self._kafka_source("server_events"), SERVER_SCHEMA, "server_status"
        )
        counts = server_status_counts(events, "1 minute", "30 seconds")
        keys = ("window_start", "datacenter", "status_color", "severity_level")
        return self._start(
            "server_status",
            counts,
            output_mode="update",
            batch_sink=lambda frame, _id: self._upsert(frame, "rt_server_status", keys),
        )

    def cpu_anomalies(self) -> StreamingQuery:
        """Windows → status and anomalies in Kafka through the native sink, in update mode: no
        Python, no database round trip and no wait for the watermark between an event and the
        verdict on its window being readable (``spark_apps.transforms.cpu``)."""
        model = self.settings.models.cpu_anomaly
        events, _dead = self._parse(
            self._kafka_source("server_events"), SERVER_SCHEMA, "cpu_anomalies"
        )
        classified = classify_cpu(
            cpu_window_stats(events, model.window, model.watermark),
            self._baselines(),
            self.settings.normal_mean,
            self.settings.normal_stddev,
            model.warn_sigma,
            model.error_sigma,
        )
        topics = (self.settings.topic("cpu_status").name, self.settings.topic("anomalies").name)
        records = cpu_records_to_kafka(classified, *topics)
        return self._start(
            "cpu_anomalies",
            self._bounded(records, "cpu_anomalies", topics),
            output_mode="update",
            kafka_topics=topics,
            interval="500 milliseconds",
        )

    def cpu_windows_store(self) -> StreamingQuery:
        """The CPU status topic → ``rt_cpu_windows`` and the ``anomalies`` table: each window's
        last verdict, upserted on natural keys (so records Kafka holds twice land once); an
        anomaly row whose window a later verdict found SAFE is deleted."""
        statuses = parse_cpu_status(self._kafka_source("cpu_status"))

        def sink(frame: DataFrame, _batch_id: int) -> None:
            writes = latest_cpu_store_writes(cpu_store_rows(frame).toArrow())
            if writes.windows.num_rows == 0:
                return
            # one transaction: a micro-batch's windows and anomalies land together or not at all
            with self.pool.connection() as conn, conn.transaction():
                db.upsert_rows(
                    conn,
                    "rt_cpu_windows",
                    CPU_WINDOW_COLUMNS,
                    writes.windows,
                    ("server_id", "window_start"),
                )
                db.upsert_rows(conn, "anomalies", ANOMALY_COLUMNS, writes.anomalies, ANOMALY_KEY)
                db.delete_rows(conn, "anomalies", ANOMALY_KEY, writes.withdrawn)

        return self._start("cpu_windows_store", statuses, batch_sink=sink)

    def cdn_clusters(self) -> StreamingQuery:
        """Each CDN event → cluster and distance under the promoted KMeans model.

        The registry is checked every micro-batch; a newly promoted version is loaded once and
        used from that batch on, so retraining takes effect without a restart. Until a first
        model is promoted, batches are logged and left unassigned (the events stay in Kafka,
        where the retraining job reads them).
        """
        config = self.settings.models.kmeans
        events, _dead = self._parse(self._kafka_source("cdn_events"), CDN_SCHEMA, "cdn_clusters")
        models: ModelCache[PipelineModel] = ModelCache(PipelineModel.load)

        def sink(frame: DataFrame, batch_id: int) -> None:
            with self.pool.connection() as conn:
                resolved = models.resolve(promoted_model(conn, MODEL_NAME))
            if resolved is None:
                log.warning(
                    "cdn_clusters: no promoted %s model yet (batch %d)", MODEL_NAME, batch_id
                )
                return
            registered, model = resolved
            threshold = registered.threshold if registered.threshold is not None else float("inf")
            rows = cdn_cluster_rows(model, frame, registered.version, threshold).persist()
            try:
                self._write_kafka(cdn_clusters_to_kafka(rows), "cdn_clusters", "cdn_clusters")
                self._upsert(
                    rows.select(*CDN_CLUSTER_COLUMNS), "rt_cdn_clusters", ("edge_id", "ts")
                )
                self._record_anomalies(
                    cdn_anomalies(rows, config.error_threshold_factor), "cdn_clusters"
                )
            finally:
                rows.unpersist()

        return self._start("cdn_clusters", events, batch_sink=sink)

    def forecast_deviations(self) -> StreamingQuery:
        """IP samples against the latest forecast for their hour (read per micro-batch, so a
        new forecast run applies at once)."""
        factor = self.settings.models.prophet.deviation_error_factor
        direction = self.settings.models.prophet.deviation_error_direction
        events, _dead = self._parse(
            self._kafka_source("ip_events"), IP_SCHEMA, "forecast_deviations"
        )
        samples = melt_ip_features(events, self.settings.ips.features)

        def sink(frame: DataFrame, _batch_id: int) -> None:
            frame = frame.persist()
            try:
                bounds = frame.agg(
                    F.min(F.unix_micros("timestamp")), F.max(F.unix_micros("timestamp"))
                ).first()
                if bounds is None or bounds[0] is None:
                    return
                forecasts = self._forecasts(bounds[0], bounds[1])
                if not forecasts:
                    return
                lookup = self.spark.createDataFrame(forecasts, FORECAST_LOOKUP_SCHEMA)
                judged = judge_against_forecast(frame, lookup)
                self._record_anomalies(
                    forecast_deviations(judged, factor, direction), "forecast_deviations"
                )
            finally:
                frame.unpersist()

        return self._start("forecast_deviations", samples, batch_sink=sink)

    def _forecasts(self, first_us: int, last_us: int) -> list[tuple[Any, ...]]:
        """Forecast rows for the hours a micro-batch spans."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT ip, feature, ds, yhat, yhat_lower, yhat_upper, run_id FROM ip_forecasts "
                "WHERE ds >= date_trunc('hour', to_timestamp(%s / 1e6)) "
                "AND ds <= to_timestamp(%s / 1e6)",
                (first_us, last_us),
            ).fetchall()

    def silence(self) -> StreamingQuery:
        """IPs, servers and CDN edges that stop reporting for ``missed_intervals`` of their
        expected interval (the generators' cadence) become ERROR anomalies."""
        config, g = self.settings.models.silence, self.settings.generators
        intervals = {
            "ip": g.ip_interval_seconds * 1000,
            "server": g.server_interval_ms,
            "cdn": g.cdn_interval_seconds * 1000,
        }
        per_source = {}
        for source, schema in (("ip", IP_SCHEMA), ("server", SERVER_SCHEMA), ("cdn", CDN_SCHEMA)):
            events, _dead = self._parse(self._kafka_source(schema.topic_role), schema, "silence")
            per_source[source] = (events, schema.key_field)
        gaps = detect_silences(
            source_signals(per_source, config.watermark), intervals, config.missed_intervals
        )
        return self._start(
            "silence", gaps, batch_sink=lambda frame, _id: self._record_anomalies(frame, "silence")
        )

    def metric_scores(self) -> StreamingQuery:
        """Bring-your-own telemetry: every sample of the metrics topic scored by its series'
        online model; scores to the scores topic, high scores to the anomalies."""
        config = self.settings.models.metric_scores
        params = ScoringParams(
            alpha=config.alpha,
            season_beta=config.season_beta,
            warmup=config.warmup,
            clip_sigma=config.clip_sigma,
        )
        events, _dead = self._parse(self._kafka_source("metrics"), METRIC_SCHEMA, "metric_scores")

        def sink(frame: DataFrame, _batch_id: int) -> None:
            frame = frame.persist()
            try:
                self._write_kafka(
                    scores_to_kafka(frame, params.version), "metric_scores", "metric_scores"
                )
                self._record_anomalies(
                    metric_anomalies(frame, config.warn_score, config.error_score, params.version),
                    "metric_scores",
                )
            finally:
                frame.unpersist()

        return self._start("metric_scores", score_metrics(events, params), batch_sink=sink)

    def _record_anomalies(self, anomalies: DataFrame, query: str) -> None:
        """To the ``anomalies`` table and topic."""
        anomalies = anomalies.persist()
        try:
            if self._store_anomalies(anomalies):
                self._write_kafka(anomalies_to_kafka(anomalies), "anomalies", query)
        finally:
            anomalies.unpersist()

    def _store_anomalies(self, anomalies: DataFrame) -> int:
        return self._upsert(anomalies.select(*ANOMALY_COLUMNS), "anomalies", ANOMALY_KEY)

    def ip_averages(self) -> StreamingQuery:
        features = self.settings.ips.features
        events, _dead = self._parse(self._kafka_source("ip_events"), IP_SCHEMA, "ip_averages")
        partitions = F.create_map(
            *[
                item
                for ip, p in self.settings.ip_partitions.items()
                for item in (F.lit(ip), F.lit(p))
            ]
        )
        records = ip_averages_to_kafka(ip_running_averages(events, features), features).withColumn(
            "partition", F.element_at(partitions, F.col("key").cast("string"))
        )
        topics = (self.settings.topic("ip_averages").name,)
        return self._start(
            "ip_averages",
            self._bounded(records, "ip_averages", topics),
            output_mode="update",
            kafka_topics=topics,
        )

    def ip_windows(self) -> StreamingQuery:
        features = self.settings.ips.features
        events, _dead = self._parse(self._kafka_source("ip_events"), IP_SCHEMA, "ip_windows")
        windows = ip_window_aggregates(events, features, "5 minutes", "2 minutes")
        keys = ("window_start", "src_ip", "feature")
        return self._start(
            "ip_windows",
            windows,
            output_mode="update",
            batch_sink=lambda frame, _id: self._upsert(frame, "rt_ip_windows", keys),
        )

    def weather_derived(self) -> StreamingQuery:
        events, _dead = self._parse(
            self._kafka_source("weather_events"), WEATHER_SCHEMA, "weather_derived"
        )
        derived = weather_derived(events).withColumnRenamed("timestamp", "ts")
        return self._start(
            "weather_derived",
            derived,
            batch_sink=lambda frame, _id: self._upsert(frame, "rt_weather", ("city", "ts")),
        )

    def start(self, names: tuple[str, ...] = SPEED_LAYER_QUERIES) -> list[StreamingQuery]:
        return [getattr(self, name)() for name in names]


class ProgressFile(StreamingQueryListener):
    """Writes each query's last progress to a JSON file: the supervisor's health signal.

    Also hands each progress, as its JSON dict, to ``on_progress``: one Python listener for
    every use, because each listener costs Spark a conversion of every progress event through
    Py4J (dozens of calls for a stateful query's metrics, measured at a third of a core with two
    listeners on a 200 events/s feed).
    """

    def __init__(
        self, path: Path, on_progress: Callable[[dict[str, Any]], None] = lambda _p: None
    ) -> None:
        self.path = path
        self.on_progress = on_progress
        self.state: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, Any]] = {}  # query → records it set aside, the last why
        self.names: dict[str, str] = {}  # run id → query name
        self.lock = threading.Lock()  # listener events and sinks' errors come on other threads
        path.parent.mkdir(parents=True, exist_ok=True)
        self._flush()  # replace whatever an earlier run left behind

    def _flush(self) -> None:
        # The pid lets the health check ignore a file an earlier (crashed) process wrote.
        with self.lock:
            tmp = self.path.with_suffix(".tmp")
            document = {"pid": os.getpid(), "queries": self.state, "set_aside": self.errors}
            tmp.write_text(json.dumps(document, default=str))
            tmp.replace(self.path)

    def record_error(self, error: SinkError) -> None:
        """A sink set records aside: counted per query for ``lambdawatch status``."""
        entry = self.errors.setdefault(error.query, {"records": 0, "batches": 0})
        entry["records"] += error.records
        entry["batches"] += 1
        entry.update(last_error=error.error, last_at=error.recorded_at)
        entry.update(disposition=error.disposition, batch_id=error.batch_id)
        self._flush()

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's listener API
        self.names[str(event.runId)] = event.name
        self.state[event.name] = {"status": "started", "updated": time.time()}
        self._flush()

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        progress = event.progress
        self.state[progress.name] = {
            "status": "active",
            "updated": time.time(),
            "batch_id": progress.batchId,
            "input_rows_per_second": progress.inputRowsPerSecond,
            "processed_rows_per_second": progress.processedRowsPerSecond,
        }
        self._flush()
        self.on_progress(json.loads(progress.json))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        name = self.names.get(str(event.runId), str(event.runId))
        self.state.setdefault(name, {}).update({"status": "active", "updated": time.time()})
        self._flush()

    def wait_terminated(self, names: list[str], timeout: float = 30.0) -> bool:
        """Block until the termination of every query in ``names`` has reached the listeners.

        Spark delivers listener events asynchronously and in order, so once a query's
        termination is here, so is its last progress (for every listener registered after).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.state.get(n, {}).get("status") == "terminated" for n in names):
                return True
            time.sleep(0.1)
        return False

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        name = self.names.get(str(event.runId), str(event.runId))
        self.state[name] = {
            "status": "terminated",
            "updated": time.time(),
            "error": event.exception,
        }
        self._flush()


class ProgressTable:
    """Records each micro-batch's events/s and consumer lag per Kafka source in PostgreSQL
    (``speed_layer_progress``), for the Pipeline health dashboard (fed by ``ProgressFile``).

    A failed write is logged and dropped: a health record must never stop the stream.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def record(self, progress: dict[str, Any]) -> None:
        try:
            with self.pool.connection(timeout=5) as conn:
                write_progress(conn, progress_rows(progress))
        except Exception as error:  # see the class docstring
            log.warning("progress not recorded: %s", error)

    def record_error(self, error: SinkError) -> None:
        """Records a sink set aside, for the Pipeline health dashboard."""
        try:
            with self.pool.connection(timeout=5) as conn:
                write_sink_error(conn, error)
        except Exception as failure:  # see the class docstring
            log.warning("set-aside records not recorded: %s", failure)


def ensure_input_topics(settings: Settings) -> None:
    """The topics of config.json, created if missing, before anything subscribes to them.

    InitialDag creates them too (both idempotent), but the speed layer starts with the stack,
    before anyone has triggered InitialDag, and a Kafka source cannot subscribe to a topic the
    broker does not have.
    """
    admin = admin_client(settings.kafka_bootstrap)
    try:
        changes = ensure_topics(admin, settings.kafka_topics)
    finally:
        admin.close()
    created = [change for change in changes if change.action != "unchanged"]
    if created:
        log.info("topics prepared: %s", ", ".join(f"{c.name} {c.action}" for c in created))


def speed_layer_session(
    settings: Settings,
    app_name: str = "lambdawatch-speed-layer",
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """The session the speed layer's queries are tuned for (benchmarks build it too)."""
    return build_session(
        app_name,
        settings,
        with_jdbc=True,  # the baselines' stream-static join
        shuffle_partitions=settings.speed_layer_partitions,
        extra={**STATE_STORE, **(extra or {})},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--queries", default=",".join(SPEED_LAYER_QUERIES), help="comma-separated subset"
    )
    parser.add_argument(
        "--available-now", action="store_true", help="process what is there, then stop"
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="default: $LAMBDAWATCH_VAR_DIR/checkpoints"
    )
    parser.add_argument(
        "--starting-offsets",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a query without a checkpoint starts reading (latest skips the backlog)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    secrets = secrets_for(settings)
    ensure_input_topics(settings)
    spark = speed_layer_session(
        settings,
        extra={
            "spark.ui.port": str(settings.spark_ui_port),
            "spark.driver.bindAddress": settings.bind_host,
            "spark.driver.host": settings.driver_host,
        },
    )
    spark.sparkContext.setLogLevel("WARN")
    trigger = {"availableNow": True} if args.available_now else None
    checkpoints = args.checkpoint_dir or settings.var_path / "checkpoints"
    layer = SpeedLayer(
        spark,
        settings,
        secrets,
        checkpoints,
        trigger=trigger,
        starting_offsets=args.starting_offsets,
    )
    progress_table = ProgressTable(layer.pool)
    listener = ProgressFile(settings.var_path / "run" / "speed_layer.json", progress_table.record)
    layer.guard.on_error = lambda error: (
        listener.record_error(error),
        progress_table.record_error(error),
    )
    spark.streams.addListener(listener)
    names = tuple(name for name in args.queries.split(",") if name)
    try:
        if args.available_now:  # upstream queries to the end first, then their readers
            for stage in (
                [n for n in names if n not in DOWNSTREAM_QUERIES],
                [n for n in names if n in DOWNSTREAM_QUERIES],
            ):
                queries = layer.start(tuple(stage))
                log.info("started %d queries: %s", len(queries), ", ".join(stage))
                for query in queries:
                    query.awaitTermination()
                listener.wait_terminated(stage)
        else:
            queries = layer.start(names)
            log.info("started %d queries: %s", len(queries), ", ".join(names))
            spark.streams.awaitAnyTermination()
    finally:
        spark.streams.removeListener(listener)  # no callbacks into an exiting Python
        spark.stop()
        layer.close()


if __name__ == "__main__":
    main()
