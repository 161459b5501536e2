"""CPU anomalies: each server's mean CPU per short window against its normal mean and σ.

Two-sided: a window is SAFE inside ±warn σ, WARN outside it, ERROR outside ±error σ of the
server's baseline (from the ``baselines`` table the batch layer maintains), falling back to
the ``.env`` NORMAL_MEAN / NORMAL_STDDEV until a baseline exists.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_apps.catalog import CPU_WINDOW_COLUMNS
from spark_apps.transforms.anomaly import to_anomalies
from spark_apps.transforms.parsing import watermarked_unique

METRIC = "cpu_usage"


def cpu_window_stats(events: DataFrame, window: str, watermark: str) -> DataFrame:
    """Mean, σ and count of CPU per server per tumbling event-time window."""
    return (
        watermarked_unique(events, watermark)
        .groupBy(F.window("timestamp", window).alias("w"), "server_id")
        .agg(
            F.avg("cpu_usage").alias("mean_cpu"),
            F.stddev_samp("cpu_usage").alias("std_cpu"),
            F.count(F.lit(1)).alias("samples"),
        )
        .select(
            "server_id",
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "mean_cpu",
            "std_cpu",
            "samples",
        )
    )


def classify_cpu(
    stats: DataFrame,
    baselines: DataFrame,
    fallback_mean: float,
    fallback_std: float,
    warn_sigma: float,
    error_sigma: float,
) -> DataFrame:
    """Attach each server's normal mean/σ (or the fallback) and the window's status."""
    normal = baselines.where(F.col("metric") == METRIC).select(
        F.col("entity").alias("server_id"),
        F.col("mean").alias("baseline_mean"),
        F.col("stddev").alias("baseline_std"),
    )
    expected_mean = F.coalesce(F.col("baseline_mean"), F.lit(fallback_mean))
    expected_std = F.coalesce(F.col("baseline_std"), F.lit(fallback_std))
    z = F.abs(F.col("mean_cpu") - expected_mean) / F.greatest(expected_std, F.lit(1e-9))
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
            F.when(F.col("z") > error_sigma, "ERROR")
            .when(F.col("z") > warn_sigma, "WARN")
            .otherwise("SAFE"),
        )
        .drop("baseline_mean", "baseline_std")
    )


def cpu_anomalies(classified: DataFrame) -> DataFrame:
    flagged = classified.where(F.col("status") != "SAFE")
    return to_anomalies(
        flagged,
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
    )


def cpu_status_to_kafka(classified: DataFrame) -> DataFrame:
    body = F.to_json(
        F.struct(*CPU_WINDOW_COLUMNS),
        {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"},
    )
    return classified.select(
        F.col("server_id").cast("binary").alias("key"), body.cast("binary").alias("value")
    )
