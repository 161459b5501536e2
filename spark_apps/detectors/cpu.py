"""CPU anomalies: each server's mean CPU per short window against its normal mean and σ.

Two-sided: a window is SAFE inside ±warn σ, WARN outside it, ERROR outside ±error σ of the
server's baseline (from the ``baselines`` table the batch layer maintains), falling back to
the ``.env`` NORMAL_MEAN / NORMAL_STDDEV until a baseline exists.

Latency-critical, so the classified windows go straight to Kafka (status topic, and the
anomalies topic for WARN/ERROR) through the native sink, in update mode: a window is classified
and emitted in every micro-batch that adds to it, not once the watermark has closed it, so an
anomaly is readable one micro-batch after its event. A later record for the same (server,
window) supersedes an earlier one; the status topic carries every verdict, SAFE included, so a
provisional WARN that the window's remaining samples turn SAFE is visibly withdrawn there.
A second query reads the status topic back and keeps each window's last record in PostgreSQL
(``rt_cpu_windows``, and ``anomalies``, from which a withdrawn anomaly is deleted).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.catalog import CPU_WINDOW_COLUMNS
from lambdawatch.core.tables import TABLES
from spark_apps.detectors.anomaly import (
    ANOMALY_COLUMNS,
    ANOMALY_KEY,
    TIMESTAMP_FORMAT,
    anomaly_columns,
)
from spark_apps.transforms.clock import wall_clock

METRIC = "cpu_usage"
# A status record: the window's columns, where its normal mean/σ came from and when this
# verdict was made (the same time as the anomaly record the verdict may have produced).
# ``latest_event_at`` is the newest sample the verdict includes: with ``detected_at``, how
# fresh the verdict is (and, for an anomaly, the event that raised it at the latest).
CPU_STATUS_FIELDS = (*CPU_WINDOW_COLUMNS, "baseline_source", "latest_event_at", "detected_at")
# what ``classify_cpu`` reads of the ``baselines`` table
BASELINES_READ_SCHEMA = TABLES["baselines"].spark_ddl(("metric", "entity", "mean", "stddev"))
CPU_STATUS_SCHEMA = (
    TABLES["rt_cpu_windows"].spark_ddl()
    + ", baseline_source string, latest_event_at timestamp, detected_at timestamp"
)


def cpu_window_stats(events: DataFrame, window: str, watermark: str) -> DataFrame:
    """Mean, σ and count of CPU per server per tumbling event-time window.

    One stateful operator: each window collects its distinct (event_id, cpu, time) samples, so an
    event re-sent by an at-least-once producer (identical by construction) counts once, and
    the statistics are computed from the set. A separate
    de-duplication operator would double the state work of every micro-batch, which is the
    query's latency. In update mode a window's row is its statistics so far.
    """
    collected = (
        events.withWatermark("timestamp", watermark)
        .groupBy(F.window("timestamp", window).alias("w"), "server_id")
        .agg(F.collect_set(F.struct("event_id", "cpu_usage", "timestamp")).alias("events"))
    )
    cpu = F.transform("events", lambda event: event["cpu_usage"].cast("double"))
    samples = F.size("events")
    mean = F.aggregate(cpu, F.lit(0.0), lambda total, x: total + x) / samples
    squares = F.aggregate(cpu, F.lit(0.0), lambda total, x: total + (x - mean) * (x - mean))
    return collected.select(
        "server_id",
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        mean.alias("mean_cpu"),
        F.when(samples > 1, F.sqrt(squares / (samples - 1))).alias("std_cpu"),
        samples.cast("long").alias("samples"),
        F.array_max(F.transform("events", lambda event: event["timestamp"])).alias(
            "latest_event_at"
        ),
    )


def classify_cpu(
    stats: DataFrame,
    baselines: DataFrame,
    fallback_mean: float,
    fallback_std: float,
    warn_sigma: float,
    error_sigma: float,
    fallback_sigmas: tuple[float, float] | None = None,
) -> DataFrame:
    """Attach each server's normal mean/σ (or the fallback), the window's status and when it
    was judged. A server's learned baseline is judged by ``warn_sigma``/``error_sigma``; the
    fallback (a population normal, far wider than one server's) by ``fallback_sigmas``
    (WARN, ERROR; default the same)."""
    fallback_warn, fallback_error = fallback_sigmas or (warn_sigma, error_sigma)
    normal = baselines.where(F.col("metric") == METRIC).select(
        F.col("entity").alias("server_id"),
        F.col("mean").alias("baseline_mean"),
        F.col("stddev").alias("baseline_std"),
    )
    expected_mean = F.coalesce(F.col("baseline_mean"), F.lit(fallback_mean))
    expected_std = F.coalesce(F.col("baseline_std"), F.lit(fallback_std))
    z = F.abs(F.col("mean_cpu") - expected_mean) / F.greatest(expected_std, F.lit(1e-9))
    learned = F.col("baseline_source") == "baselines"
    return (
        stats.join(F.broadcast(normal), "server_id", "left")
        .withColumn("expected_mean", expected_mean)
        .withColumn("expected_std", expected_std)
        .withColumn(
            "baseline_source",
            F.when(F.col("baseline_mean").isNull(), "fallback").otherwise("baselines"),
        )
        .withColumn("z", z)
        .withColumn(
            "status",
            F.when(F.col("z") > F.when(learned, error_sigma).otherwise(fallback_error), "ERROR")
            .when(F.col("z") > F.when(learned, warn_sigma).otherwise(fallback_warn), "WARN")
            .otherwise("SAFE"),
        )
        .withColumn("detected_at", wall_clock())
        .drop("baseline_mean", "baseline_std")
    )


def cpu_anomaly_columns() -> list[Column]:
    """A classified window as the anomaly record (every detector's shape)."""
    return anomaly_columns(
        "cpu_anomalies",
        entity=F.col("server_id"),
        metric=F.lit(METRIC),
        window_start=F.col("window_start"),
        window_end=F.col("window_end"),
        value=F.col("mean_cpu"),
        expected=F.col("expected_mean"),
        score=F.col("z"),
        severity=F.col("status"),
        model_version=F.col("baseline_source"),
        detected_at=F.col("detected_at"),
    )


WINDOW_PREFIX, ANOMALY_PREFIX = "window_", "anomaly_"


def cpu_store_rows(statuses: DataFrame) -> DataFrame:
    """What ``cpu_windows_store`` may write for each status record (``parse_cpu_status`` rows):
    its ``rt_cpu_windows`` row (``window_``-prefixed ``CPU_WINDOW_COLUMNS``) and its anomaly
    record (``anomaly_``-prefixed ``ANOMALY_COLUMNS``), beside its ``status`` and ``offset``.

    Flat and row for row, so that a micro-batch is one Spark stage collected through Arrow
    (``DataFrame.toArrow``): which verdict is a window's last, and what that writes, is
    ``latest_cpu_store_writes`` on the collected table. A ``groupBy`` here would cost a shuffle
    and its second stage every micro-batch, next to the latency-critical query on two cores.
    """
    return statuses.select(
        "offset",
        "status",
        *[F.col(c).alias(WINDOW_PREFIX + c) for c in CPU_WINDOW_COLUMNS],
        *[
            column.alias(ANOMALY_PREFIX + c)
            for c, column in zip(ANOMALY_COLUMNS, cpu_anomaly_columns(), strict=True)
        ],
    )


@dataclass(frozen=True)
class CpuStoreWrites:
    """One micro-batch's writes, as Arrow tables: ``rt_cpu_windows`` rows
    (``CPU_WINDOW_COLUMNS``) and ``anomalies`` rows (``ANOMALY_COLUMNS``) to upsert, and the
    ``ANOMALY_KEY`` of the anomalies to delete (windows whose last verdict is SAFE: an
    earlier, partial verdict on them may have recorded one)."""

    windows: pa.Table
    anomalies: pa.Table
    withdrawn: pa.Table


def latest_cpu_store_writes(rows: pa.Table) -> CpuStoreWrites:
    """Each (server, window)'s last verdict among collected ``cpu_store_rows``, and its writes.

    The last verdict is the record with the highest offset: written after, and from more
    samples than, the ones it supersedes (records are keyed by server, so one server's are in
    one partition, in the order they were written). Arrow compute throughout: a micro-batch
    holds thousands of verdicts, and a Python object per value would cost the driver more
    than the Spark stage that collected them.
    """
    window = [WINDOW_PREFIX + "server_id", WINDOW_PREFIX + "window_start"]
    last_offsets = rows.group_by(window).aggregate([("offset", "max")])
    latest = rows.join(
        last_offsets.rename_columns([*window, "offset"]), [*window, "offset"], join_type="inner"
    )
    safe = pc.equal(latest["status"], "SAFE")

    def unprefixed(prefix: str, names: tuple[str, ...]) -> pa.Table:
        return latest.select([prefix + name for name in names]).rename_columns(list(names))

    anomalies = unprefixed(ANOMALY_PREFIX, ANOMALY_COLUMNS)
    return CpuStoreWrites(
        windows=unprefixed(WINDOW_PREFIX, CPU_WINDOW_COLUMNS),
        anomalies=anomalies.filter(pc.invert(safe)),
        withdrawn=anomalies.filter(safe).select(list(ANOMALY_KEY)),
    )


def cpu_records_to_kafka(
    classified: DataFrame, status_topic: str, anomalies_topic: str
) -> DataFrame:
    """Both outputs as one Kafka sink's rows (``topic``, ``key``, ``value``): each window's
    status, and the WARN/ERROR ones again as anomaly records.

    One projection and an explode rather than a union, which would repeat the stateful
    aggregation upstream of each branch.
    """
    key = F.col("server_id").cast("binary").alias("key")

    def record(topic: str, columns: list[Column]) -> Column:
        body = F.to_json(F.struct(*columns), {"timestampFormat": TIMESTAMP_FORMAT})
        return F.struct(F.lit(topic).alias("topic"), key, body.cast("binary").alias("value"))

    status = record(status_topic, [F.col(name) for name in CPU_STATUS_FIELDS])
    anomaly = record(anomalies_topic, cpu_anomaly_columns())
    records = F.when(F.col("status") == "SAFE", F.array(status)).otherwise(F.array(status, anomaly))
    return classified.select(F.explode(records).alias("record")).select("record.*")


def parse_cpu_status(records: DataFrame) -> DataFrame:
    """Status records read back from Kafka → the classified windows they were written from,
    with their Kafka ``offset`` (a window's later verdicts have larger offsets: records are
    keyed by server, so one server's stay in one partition, in the order they were written)."""
    parsed = F.from_json(
        F.col("value").cast("string"), CPU_STATUS_SCHEMA, {"timestampFormat": TIMESTAMP_FORMAT}
    )
    return (
        records.select(parsed.alias("s"), "offset")
        .select("s.*", "offset")
        .where(F.col("server_id").isNotNull())
    )
