"""The CPU detector: windows, two-sided verdicts, the store's last verdict (``detectors.cpu``)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from lambdawatch.core.catalog import CPU_WINDOW_COLUMNS
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS
from spark_apps.detectors.cpu import (
    classify_cpu,
    cpu_records_to_kafka,
    cpu_store_rows,
    cpu_window_stats,
    latest_cpu_store_writes,
    parse_cpu_status,
)
from tests.unit.spark_apps.frames import (
    BASELINE_SCHEMA,
    STATS_SCHEMA,
    T0,
    at_ms,
    cpu_anomalies_of,
    cpu_events,
    status_record,
    utc,
)


def test_cpu_windows_are_tumbling_and_half_open(spark: SparkSession) -> None:
    events = cpu_events(
        spark,
        [("a", 0.0, 10.0), ("a", 0.25, 30.0), ("a", 0.5, 50.0), ("a", 0.75, 70.0), ("b", 0.1, 5.0)],
    )
    stats = cpu_window_stats(events, "500 milliseconds", "2 seconds").select(
        "server_id", "window_start", "mean_cpu", "samples", "latest_event_at"
    )
    at = {offset: T0 + timedelta(seconds=offset) for offset in (0.1, 0.25, 0.75)}
    expected = spark.createDataFrame(
        [
            ("a", T0, 20.0, 2, at[0.25]),
            ("a", T0 + timedelta(seconds=0.5), 60.0, 2, at[0.75]),
            ("b", T0, 5.0, 1, at[0.1]),
        ],
        "server_id string, window_start timestamp, mean_cpu double, samples long, "
        "latest_event_at timestamp",
    )
    assertDataFrameEqual(stats, expected)
    spread = {
        (row["server_id"], row["mean_cpu"]): row["std_cpu"]
        for row in cpu_window_stats(events, "500 milliseconds", "2 seconds").collect()
    }
    assert spread[("a", 20.0)] == pytest.approx(200**0.5)  # sample σ of 10 and 30
    assert spread[("b", 5.0)] is None  # one sample has no sample σ, as stddev_samp


@pytest.mark.parametrize(
    ("mean_cpu", "status"),
    [
        (50.0, "SAFE"),
        (60.0, "SAFE"),
        (60.5, "WARN"),
        (39.0, "WARN"),
        (70.5, "ERROR"),
        (29.0, "ERROR"),
    ],
)
def test_cpu_status_is_two_sided_against_the_baseline(
    spark: SparkSession, mean_cpu: float, status: str
) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0 + timedelta(seconds=0.5), mean_cpu, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    baselines = spark.createDataFrame(
        [("cpu_usage", "a", 50.0, 10.0), ("mem_usage", "a", 0.0, 1.0)],
        "metric string, entity string, mean double, stddev double",
    )
    row = classify_cpu(stats, baselines, 45.0, 12.0, 1.0, 2.0).collect()[0]
    assert (row["status"], row["expected_mean"], row["baseline_source"]) == (
        status,
        50.0,
        "baselines",
    )


def test_cpu_falls_back_to_env_normal_until_a_baseline_exists(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("new-server", T0, T0, 70.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    classified = classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0)
    row = classified.collect()[0]
    assert (row["expected_mean"], row["expected_std"], row["baseline_source"], row["status"]) == (
        45.0,
        12.0,
        "fallback",
        "ERROR",
    )
    anomalies = cpu_anomalies_of(classified)
    assert tuple(anomalies.columns) == ANOMALY_COLUMNS
    found = anomalies.collect()[0]
    assert (found["detector"], found["entity"], found["severity"], found["value"]) == (
        "cpu_anomalies",
        "new-server",
        "ERROR",
        70.0,
    )
    assert found["score"] == pytest.approx(25 / 12)


def test_safe_windows_are_not_anomalies(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0, 45.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    assert cpu_anomalies_of(classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0)).count() == 0


def test_cpu_records_carry_every_status_and_each_anomaly_to_its_topic(
    spark: SparkSession,
) -> None:
    stats = spark.createDataFrame(
        [
            ("quiet", T0, T0 + timedelta(seconds=0.5), 45.0, 1.0, 2, T0),
            ("busy", T0, T0 + timedelta(seconds=0.5), 80.0, 1.0, 2, T0),
        ],
        STATS_SCHEMA,
    )
    classified = classify_cpu(
        stats, spark.createDataFrame([], BASELINE_SCHEMA), 45.0, 12.0, 1.0, 2.0
    )
    records = cpu_records_to_kafka(classified, "status-topic", "anomaly-topic").collect()
    by_topic = sorted((r["topic"], r["key"].decode()) for r in records)
    assert by_topic == [
        ("anomaly-topic", "busy"),
        ("status-topic", "busy"),
        ("status-topic", "quiet"),
    ]
    anomaly = next(json.loads(r["value"]) for r in records if r["topic"] == "anomaly-topic")
    expected = cpu_anomalies_of(classified).collect()[0].asDict()
    assert set(anomaly) == set(ANOMALY_COLUMNS)
    assert (anomaly["severity"], anomaly["value"], anomaly["model_version"]) == (
        expected["severity"],
        expected["value"],
        "fallback",
    )
    # read back, the status records are the classified windows they were written from, and
    # the busy window's verdict carries the very detected_at of its anomaly record
    statuses = spark.createDataFrame(
        [
            Row(value=r["value"], offset=i)
            for i, r in enumerate(records)
            if r["topic"] == "status-topic"
        ],
        "value binary, offset long",
    )
    read_back = parse_cpu_status(statuses).drop("offset")
    judged = [name for name in read_back.columns if name != "detected_at"]
    assertDataFrameEqual(read_back.select(*judged), classified.select(*judged))
    busy = read_back.where("server_id = 'busy'").collect()[0]
    assert utc(busy["detected_at"]) == at_ms(anomaly["detected_at"])


def test_a_windows_last_verdict_supersedes_and_withdraws_earlier_ones(
    spark: SparkSession,
) -> None:
    """Update mode re-emits a window as it fills: the store keeps the verdict with the highest
    offset, records the anomalies that still stand, and withdraws those now SAFE."""
    later = T0 + timedelta(seconds=0.5)
    by_offset = {
        3: status_record("s1", T0, "WARN", 1),
        4: status_record("s2", T0, "ERROR", 1),
        5: status_record("s2", T0, "ERROR", 2),
        7: status_record("s1", T0, "SAFE", 2),
        8: status_record("s1", later, "SAFE", 1),
        9: status_record("s2", later, "SAFE", 1),
        11: status_record("s2", later, "WARN", 2),
    }
    statuses = parse_cpu_status(
        spark.createDataFrame(
            [Row(value=v.encode(), offset=o) for o, v in reversed(by_offset.items())],
            "value binary, offset long",
        )
    )
    writes = latest_cpu_store_writes(cpu_store_rows(statuses).toArrow())
    assert writes.windows.column_names == list(CPU_WINDOW_COLUMNS)
    assert writes.anomalies.column_names == list(ANOMALY_COLUMNS)
    verdicts = sorted(
        (w["server_id"], w["window_start"], w["status"], w["samples"])
        for w in writes.windows.to_pylist()
    )
    assert verdicts == [
        ("s1", T0, "SAFE", 2),
        ("s1", later, "SAFE", 1),
        ("s2", T0, "ERROR", 2),
        ("s2", later, "WARN", 2),
    ]
    # each row is one record's: a one-sample verdict's null σ is not filled from another
    assert sorted(
        (w["server_id"], w["window_start"], w["std_cpu"]) for w in writes.windows.to_pylist()
    ) == [("s1", T0, 2.0), ("s1", later, None), ("s2", T0, 2.0), ("s2", later, 2.0)]
    assert sorted(
        (a["entity"], a["window_start"], a["severity"], a["detected_at"])
        for a in writes.anomalies.to_pylist()
    ) == [
        ("s2", T0, "ERROR", T0 + timedelta(seconds=2)),
        ("s2", later, "WARN", later + timedelta(seconds=2)),
    ]
    assert sorted(tuple(k.values()) for k in writes.withdrawn.to_pylist()) == [
        ("cpu_anomalies", "s1", "cpu_usage", T0),
        ("cpu_anomalies", "s1", "cpu_usage", later),
    ]


def test_a_learned_baseline_and_the_fallback_each_have_their_own_sigmas(
    spark: SparkSession,
) -> None:
    """z 4 against a learned baseline is SAFE at WARN 6σ; z 4 against the fallback is ERROR
    at the fallback's 2σ."""
    stats = spark.createDataFrame(
        [("known", T0, T0, 90.0, 1.0, 2, T0), ("new", T0, T0, 93.0, 1.0, 2, T0)], STATS_SCHEMA
    )
    baselines = spark.createDataFrame(
        [("cpu_usage", "known", 50.0, 10.0)],
        "metric string, entity string, mean double, stddev double",
    )
    rows = classify_cpu(stats, baselines, 45.0, 12.0, 6.0, 10.0, (1.0, 2.0)).collect()
    assert sorted((r["server_id"], r["baseline_source"], r["z"], r["status"]) for r in rows) == [
        ("known", "baselines", 4.0, "SAFE"),
        ("new", "fallback", 4.0, "ERROR"),
    ]
