"""``compute_baselines``: every metric of one trailing window in the ``baselines`` shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession

from spark_apps.jobs.baseline_stats import WEATHER_METRICS, compute_baselines
from spark_apps.transforms.baselines import BASELINE_COLUMNS

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def test_cpu_weather_and_ip_baselines_in_one_frame(spark: SparkSession) -> None:
    cpu = spark.createDataFrame(
        [
            ("srv-1", 2, 40.0, 2.0, False),
            ("srv-1", 2, 44.0, 2.0, False),
            ("srv-2", 1, 90.0, None, False),
        ],
        "server_id string, samples long, mean_cpu double, std_cpu double, excluded boolean",
    )
    weather = spark.createDataFrame(
        [("Paris", 10.0, 8.0, 2.0), ("Paris", 14.0, 11.0, 3.0)],
        "city string, temperature double, feels_like double, temperature_minus_feels_like double",
    )
    history = spark.createDataFrame(
        [("10.0.0.1", "bytesin", 100.0), ("10.0.0.1", "bytesin", 300.0)],
        "ip string, feature string, value double",
    )
    frame = compute_baselines(cpu, weather, history, START, END)
    assert tuple(frame.columns) == BASELINE_COLUMNS
    rows = {(r["metric"], r["entity"]): r for r in frame.collect()}
    expected_keys = {("cpu_usage", "srv-1"), ("cpu_usage", "srv-2"), ("ip.bytesin", "10.0.0.1")}
    expected_keys |= {(metric, "Paris") for metric in WEATHER_METRICS}
    assert set(rows) == expected_keys
    # srv-1: samples 39, 41, 43, 45 pooled from two windows of (2, mean, σ=√2 rounded to 2.0)
    assert rows[("cpu_usage", "srv-1")]["mean"] == pytest.approx(42.0)
    assert rows[("cpu_usage", "srv-1")]["samples"] == 4
    assert rows[("cpu_usage", "srv-2")]["variance"] == 0.0
    assert rows[("temperature", "Paris")]["mean"] == pytest.approx(12.0)
    assert rows[("temperature_minus_feels_like", "Paris")]["mean"] == pytest.approx(2.5)
    assert rows[("ip.bytesin", "10.0.0.1")]["stddev"] == pytest.approx(141.4213562)
    assert {r["window_end"].replace(tzinfo=UTC) for r in rows.values()} == {END}
