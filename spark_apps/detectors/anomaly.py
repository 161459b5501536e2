"""The one anomaly record every detector emits (DESIGN.md, "Contracts")."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.tables import TABLES
from spark_apps.transforms.clock import wall_clock

TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
ANOMALY_COLUMNS = TABLES["anomalies"].names
# The natural key of the ``anomalies`` table: one row per detector, entity, metric and window.
ANOMALY_KEY = TABLES["anomalies"].key


def anomaly_columns(
    detector: str,
    entity: Column,
    metric: Column,
    window_start: Column,
    window_end: Column,
    value: Column,
    expected: Column,
    score: Column,
    severity: Column,
    model_version: Column | None = None,
    detected_at: Column | None = None,
) -> list[Column]:
    """The anomaly record's columns (``ANOMALY_COLUMNS``, in order) from a detector's own;
    ``detected_at`` is the time the row is computed unless the detector recorded its own."""
    return [
        F.lit(detector).alias("detector"),
        entity.cast("string").alias("entity"),
        metric.cast("string").alias("metric"),
        window_start.alias("window_start"),
        window_end.alias("window_end"),
        value.cast("double").alias("value"),
        expected.cast("double").alias("expected"),
        score.cast("double").alias("score"),
        severity.alias("severity"),
        (model_version if model_version is not None else F.lit("")).alias("model_version"),
        (detected_at if detected_at is not None else wall_clock()).alias("detected_at"),
    ]


def anomalies_to_kafka(anomalies: DataFrame) -> DataFrame:
    """Keyed by entity so one entity's anomalies stay ordered in one partition."""
    body = F.to_json(
        F.struct(*[F.col(name) for name in ANOMALY_COLUMNS]), {"timestampFormat": TIMESTAMP_FORMAT}
    )
    return anomalies.select(
        F.col("entity").cast("binary").alias("key"), body.cast("binary").alias("value")
    )
