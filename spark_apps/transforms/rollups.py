"""Aggregates for the serving tables: server status, per-IP features, weather derivation."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_apps.detectors.anomaly import TIMESTAMP_FORMAT
from spark_apps.transforms.parsing import all_present, watermarked_unique

SERVER_GROUP = (
    "country_code",
    "country_name",
    "city",
    "datacenter",
    "status_color",
    "severity_level",
)


def server_status_counts(events: DataFrame, window: str, watermark: str) -> DataFrame:
    """Message count and total estimated resolution time per window and location × status.

    Emitted in update mode and upserted on the window key, so a window's row is overwritten
    with its latest totals, never added to (no double counting across micro-batches). An event
    without a location or status (those fields are optional) joins no group: a defaulted
    datacenter must not pool unrelated servers.
    """
    return (
        watermarked_unique(events.where(all_present(SERVER_GROUP)), watermark)
        .groupBy(F.window("timestamp", window).alias("w"), *SERVER_GROUP)
        .agg(
            F.count(F.lit(1)).alias("messages"),
            F.sum("estimated_resolution_time").alias("total_resolution_time"),
        )
        .select(
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            *SERVER_GROUP,
            "messages",
            "total_resolution_time",
        )
    )


def ip_running_averages(events: DataFrame, features: Sequence[str]) -> DataFrame:
    """Running average of every IP feature per source IP since the query started."""
    return events.groupBy("src_ip").agg(
        F.count(F.lit(1)).alias("samples"),
        F.max("timestamp").alias("last_seen"),
        *[F.avg(name).alias(f"avg_{name}") for name in features],
    )


def ip_averages_to_kafka(averages: DataFrame, features: Sequence[str]) -> DataFrame:
    body = F.to_json(
        F.struct("src_ip", "samples", "last_seen", *[f"avg_{name}" for name in features]),
        {"timestampFormat": TIMESTAMP_FORMAT},
    )
    return averages.select(
        F.col("src_ip").cast("binary").alias("key"), body.cast("binary").alias("value")
    )


def melt_ip_features(events: DataFrame, features: Sequence[str]) -> DataFrame:
    """Wide IP events → one ``timestamp, src_ip, feature, value`` row per feature."""
    sample = F.explode(
        F.array(
            *[
                F.struct(F.lit(name).alias("feature"), F.col(name).cast("double").alias("value"))
                for name in features
            ]
        )
    ).alias("sample")
    return events.select("timestamp", "src_ip", sample).select(
        "timestamp", "src_ip", "sample.feature", "sample.value"
    )


def ip_window_aggregates(
    events: DataFrame, features: Sequence[str], window: str, watermark: str
) -> DataFrame:
    """Per window, IP and feature: sample count, total and mean (long shape, one row per
    feature, so adding a feature in config.json needs no schema change)."""
    melted = melt_ip_features(watermarked_unique(events, watermark), features)
    return (
        melted.groupBy(F.window("timestamp", window).alias("w"), "src_ip", "feature")
        .agg(
            F.count(F.lit(1)).alias("samples"),
            F.sum("value").alias("total"),
            F.avg("value").alias("mean"),
        )
        .select(
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "src_ip",
            "feature",
            "samples",
            "total",
            "mean",
        )
    )


def weather_derived(events: DataFrame) -> DataFrame:
    """Each reading with temperature − feels-like (the weather speed layer's serving value)."""
    return events.select(
        "city",
        "timestamp",
        "lat",
        "lon",
        "temperature",
        "feels_like",
        (F.col("temperature") - F.col("feels_like")).alias("temperature_minus_feels_like"),
        "event_id",
    )
