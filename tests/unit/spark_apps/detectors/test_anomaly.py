"""The one anomaly record every detector emits (``detectors.anomaly``)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_apps.detectors.cpu import (
    classify_cpu,
)
from tests.unit.spark_apps.frames import BASELINE_SCHEMA, STATS_SCHEMA, T0, cpu_anomalies_of


def test_anomaly_shape_matches_the_table(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0, 99.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    anomalies = cpu_anomalies_of(classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0))
    assert [f.dataType.simpleString() for f in anomalies.schema.fields] == [
        "string",
        "string",
        "string",
        "timestamp",
        "timestamp",
        "double",
        "double",
        "double",
        "string",
        "string",
        "timestamp",
    ]
    assert anomalies.where(F.col("severity").isin("WARN", "ERROR")).count() == 1
