"""Windowed rollups of the speed layer (``transforms.rollups``)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from lambdawatch.core.events import SERVER_SCHEMA, WEATHER_SCHEMA
from spark_apps.transforms.parsing import (
    parse_events,
)
from spark_apps.transforms.rollups import (
    ip_running_averages,
    ip_window_aggregates,
    server_status_counts,
    weather_derived,
)
from tests.unit.spark_apps.frames import T0, kafka_rows, server_event


def test_server_status_counts_per_window_and_status(spark: SparkSession) -> None:
    rows = [
        server_event(
            event_id="s1",
            timestamp="2026-01-01T00:00:01Z",
            status_color="Red",
            severity_level=3,
            estimated_resolution_time=90,
        ),
        server_event(
            event_id="s2",
            timestamp="2026-01-01T00:00:02Z",
            status_color="Red",
            severity_level=3,
            estimated_resolution_time=30,
        ),
        server_event(event_id="s3", timestamp="2026-01-01T00:00:03Z"),
        server_event(event_id="s4", timestamp="2026-01-01T00:01:01Z"),
        # a server of a user's two-column file: no location, so no location's group
        {"server_id": "cpu-file", "cpu_usage": 99.0, "timestamp": "2026-01-01T00:00:04Z"},
    ]
    events, _ = parse_events(kafka_rows(spark, [json.dumps(r) for r in rows]), SERVER_SCHEMA, "q")
    counts = server_status_counts(events, "1 minute", "1 minute").select(
        "window_start", "status_color", "messages", "total_resolution_time"
    )
    expected = spark.createDataFrame(
        [(T0, "Red", 2, 120), (T0, "Green", 1, 0), (T0 + timedelta(minutes=1), "Green", 1, 0)],
        "window_start timestamp, status_color string, messages long, total_resolution_time long",
    )
    assertDataFrameEqual(counts, expected)


def test_ip_running_averages(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("1.1.1.1", T0, 10, 100), ("1.1.1.1", T0, 20, 300), ("2.2.2.2", T0, 5, 5)],
        "src_ip string, timestamp timestamp, unq_dst_ip long, bytesin long",
    )
    averages = ip_running_averages(events, ["unq_dst_ip", "bytesin"]).select(
        "src_ip", "samples", "avg_unq_dst_ip", "avg_bytesin"
    )
    expected = spark.createDataFrame(
        [("1.1.1.1", 2, 15.0, 200.0), ("2.2.2.2", 1, 5.0, 5.0)],
        "src_ip string, samples long, avg_unq_dst_ip double, avg_bytesin double",
    )
    assertDataFrameEqual(averages, expected)


def test_weather_derived_value(spark: SparkSession) -> None:
    event = {
        "event_id": "w",
        "city": "Lyon",
        "lat": 45.7,
        "lon": 4.8,
        "temperature": 3.5,
        "feels_like": -1.25,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    events, _ = parse_events(kafka_rows(spark, [json.dumps(event)]), WEATHER_SCHEMA, "q")
    row = weather_derived(events).collect()[0]
    assert row["temperature_minus_feels_like"] == pytest.approx(4.75)
    assert row["timestamp"] == T0.replace(tzinfo=None)


def test_ip_window_aggregates_are_long_per_feature(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("a", "1.1.1.1", T0, 10, 100),
            ("b", "1.1.1.1", T0 + timedelta(minutes=1), 20, 300),
            ("c", "1.1.1.1", T0 + timedelta(minutes=6), 1, 1),
        ],
        "event_id string, src_ip string, timestamp timestamp, unq_dst_ip long, bytesin long",
    )
    windows = ip_window_aggregates(events, ["unq_dst_ip", "bytesin"], "5 minutes", "1 minute")
    expected = spark.createDataFrame(
        [
            (T0, "1.1.1.1", "unq_dst_ip", 2, 30.0, 15.0),
            (T0, "1.1.1.1", "bytesin", 2, 400.0, 200.0),
            (T0 + timedelta(minutes=5), "1.1.1.1", "unq_dst_ip", 1, 1.0, 1.0),
            (T0 + timedelta(minutes=5), "1.1.1.1", "bytesin", 1, 1.0, 1.0),
        ],
        "window_start timestamp, src_ip string, feature string, "
        "samples long, total double, mean double",
    )
    assertDataFrameEqual(windows.drop("window_end"), expected)
