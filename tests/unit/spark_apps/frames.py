"""Small literal Kafka records and events shared by the speed layer's unit tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark_apps.detectors.anomaly import ANOMALY_COLUMNS
from spark_apps.detectors.cpu import (
    ANOMALY_PREFIX,
    cpu_store_rows,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


STATS_SCHEMA = (
    "server_id string, window_start timestamp, window_end timestamp, "
    "mean_cpu double, std_cpu double, samples long, latest_event_at timestamp"
)


BASELINE_SCHEMA = "metric string, entity string, mean double, stddev double"


def kafka_rows(spark: SparkSession, values: list[str | bytes]):
    rows = [
        Row(
            key=None,
            value=value if isinstance(value, bytes) else value.encode(),
            topic="t",
            partition=0,
            offset=i,
        )
        for i, value in enumerate(values)
    ]
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long"
    )


def server_event(**overrides: object) -> dict[str, object]:
    event = {
        "event_id": "e1",
        "server_id": "srv-1",
        "server_type": "Web",
        "datacenter": "fr-paris-dc1",
        "country_code": "FR",
        "country_name": "France",
        "city": "Paris",
        "status_color": "Green",
        "severity_level": 1,
        "estimated_resolution_time": 0,
        "cpu_usage": 40.5,
        "mem_usage": 50.0,
        "timestamp": "2026-01-01T00:00:00.250Z",
    }
    event.update(overrides)
    return event


FUTURE = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def kafka_records(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int")


def cpu_events(spark: SparkSession, samples: list[tuple[str, float, float]]):
    rows = [
        (f"{server}:{offset}", server, T0 + timedelta(seconds=offset), cpu)
        for server, offset, cpu in samples
    ]
    return spark.createDataFrame(
        rows, "event_id string, server_id string, timestamp timestamp, cpu_usage double"
    )


def cpu_anomalies_of(classified: DataFrame) -> DataFrame:
    """The anomaly records the store writes for these verdicts."""
    rows = cpu_store_rows(classified.withColumn("offset", F.lit(0)))
    return rows.where(F.col("status") != "SAFE").select(
        *[F.col(ANOMALY_PREFIX + c).alias(c) for c in ANOMALY_COLUMNS]
    )


def at_ms(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def utc(collected: datetime) -> datetime:
    """A collected timestamp (naive, in the session's UTC) as an aware datetime."""
    return collected.replace(tzinfo=UTC)


def iso_ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_record(server: str, start: datetime, status: str, samples: int) -> str:
    return json.dumps(
        {
            "server_id": server,
            "window_start": iso_ms(start),
            "window_end": iso_ms(start + timedelta(seconds=0.5)),
            "mean_cpu": 50.0 + samples,
            "std_cpu": None if samples == 1 else float(samples),
            "samples": samples,
            "expected_mean": 45.0,
            "expected_std": 5.0,
            "z": 0.1 if status == "SAFE" else 3.0,
            "status": status,
            "baseline_source": "baselines",
            "latest_event_at": iso_ms(start + timedelta(seconds=0.25 * (samples - 1))),
            "detected_at": iso_ms(start + timedelta(seconds=samples)),
        }
    )
