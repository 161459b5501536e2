"""Forecast deviations: each IP sample against its hour's forecast interval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession

from spark_apps.detectors.anomaly import ANOMALY_COLUMNS
from spark_apps.detectors.forecast_deviations import (
    FORECAST_LOOKUP_SCHEMA,
    forecast_deviations,
    judge_against_forecast,
)
from spark_apps.transforms.rollups import melt_ip_features

IP = "198.18.0.7"


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "minute", "direction", "expected"),
    [
        (100.0, 0, "both", None),  # on the point forecast
        (119.0, 59, "both", None),  # inside the interval, last minute of the hour
        (125.0, 30, "both", "WARN"),  # outside, 1.25 half-widths
        (50.0, 30, "both", "ERROR"),  # 2.5 half-widths below
        (141.0, 30, "both", "ERROR"),  # just past the ERROR factor above
        (141.0, 30, "above", "ERROR"),
        (50.0, 30, "above", "WARN"),  # far below, but only surges are ERROR
        (141.0, 30, "below", "WARN"),
        (50.0, 30, "below", "ERROR"),
    ],
)
def test_severity_follows_the_interval(
    spark: SparkSession, value: float, minute: int, direction: str, expected: str | None
) -> None:
    events = spark.createDataFrame(
        [(at(10, minute), IP, value, 3.0)],
        "timestamp timestamp, src_ip string, unq_dst_ip double, drop double",
    )
    forecasts = spark.createDataFrame(
        [
            (IP, "unq_dst_ip", at(10, 0), 100.0, 80.0, 120.0, "run-1"),
            (IP, "unq_dst_ip", at(11, 0), 500.0, 400.0, 600.0, "run-1"),  # next hour: not used
        ],
        FORECAST_LOOKUP_SCHEMA,
    )
    judged = judge_against_forecast(melt_ip_features(events, ["unq_dst_ip", "drop"]), forecasts)
    assert judged.count() == 1  # `drop` has no forecast: not judged
    anomalies = forecast_deviations(judged, error_factor=2.0, error_direction=direction)
    assert tuple(anomalies.columns) == ANOMALY_COLUMNS
    rows = anomalies.collect()
    assert [r["severity"] for r in rows] == ([expected] if expected else [])
    if expected:
        assert rows[0]["entity"] == IP
        assert rows[0]["metric"] == "unq_dst_ip"
        assert rows[0]["expected"] == 100.0
        assert rows[0]["model_version"] == "run-1"
        assert rows[0]["score"] == pytest.approx(abs(value - 100.0) / 20.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (125.0, None),  # outside the interval, but 1.25 half-widths: within the WARN factor
        (131.0, "WARN"),  # 1.55 half-widths
        (141.0, "ERROR"),
    ],
)
def test_a_warn_factor_raises_the_warn_bar_past_the_interval_edge(
    spark: SparkSession, value: float, expected: str | None
) -> None:
    events = spark.createDataFrame(
        [(at(10, 30), IP, value)], "timestamp timestamp, src_ip string, unq_dst_ip double"
    )
    forecasts = spark.createDataFrame(
        [(IP, "unq_dst_ip", at(10, 0), 100.0, 80.0, 120.0, "run-1")], FORECAST_LOOKUP_SCHEMA
    )
    judged = judge_against_forecast(melt_ip_features(events, ["unq_dst_ip"]), forecasts)
    anomalies = forecast_deviations(judged, 2.0, "both", warn_factor=1.5).collect()
    assert [r["severity"] for r in anomalies] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("value", "expected", "score"),
    [
        (150.0, None, 50.0 / 60.0),  # inside the wide upper side of the band
        (175.0, "WARN", 75.0 / 60.0),  # past the upper edge, within the ERROR factor
        (85.0, "WARN", 1.5),  # the lower side is narrow: 15 below is 1.5 of its half-widths
        (75.0, "ERROR", 2.5),
    ],
)
def test_each_side_is_judged_by_its_own_half_of_the_band(
    spark: SparkSession, value: float, expected: str | None, score: float
) -> None:
    """A multiplicative series scatters further above its forecast than below it: the band
    is asymmetric, and a sample's score is in half-widths of its own side."""
    events = spark.createDataFrame(
        [(at(10, 30), IP, value)], "timestamp timestamp, src_ip string, unq_dst_ip double"
    )
    forecasts = spark.createDataFrame(
        [(IP, "unq_dst_ip", at(10, 0), 100.0, 90.0, 160.0, "run-1")], FORECAST_LOOKUP_SCHEMA
    )
    judged = judge_against_forecast(melt_ip_features(events, ["unq_dst_ip"]), forecasts)
    assert judged.first()["score"] == pytest.approx(score)
    anomalies = forecast_deviations(judged, 2.0, "both").collect()
    assert [r["severity"] for r in anomalies] == ([expected] if expected else [])
