"""``hourly_history``: the hourly means the models fit, and each series' within-hour scatter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession

from spark_apps.jobs.forecast_ip_traffic import hourly_history

HOUR = datetime(2026, 3, 2, 10, tzinfo=UTC)


def test_hourly_means_with_the_series_within_hour_ratios(spark: SparkSession) -> None:
    # bytesin: 38 samples at 100 and a burst of 2 at 400 in the hour (5 % of its samples);
    # drop: one sample per hour (ratio 1 always); allow: never above zero (no ratio)
    rows = [("10.0.0.1", "bytesin", HOUR + timedelta(minutes=m), 100.0) for m in range(38)]
    rows += [("10.0.0.1", "bytesin", HOUR + timedelta(minutes=m), 400.0) for m in (40, 41)]
    rows += [("10.0.0.1", "drop", HOUR + timedelta(hours=h), 3.0 + h) for h in range(3)]
    rows += [("10.0.0.1", "allow", HOUR, 0.0)]
    rows += [("10.0.0.1", "load", HOUR + timedelta(minutes=m), 0.5 + m) for m in range(3)]
    history = spark.createDataFrame(rows, "ip string, feature string, ts timestamp, value double")
    # the session runs in UTC and collects naive timestamps
    frame = {
        (r["feature"], r["ds"].replace(tzinfo=UTC)): r
        for r in hourly_history(history, 0.95).collect()
    }
    bytesin = frame[("bytesin", HOUR)]
    mean = (38 * 100 + 2 * 400) / 40
    assert bytesin["y"] == pytest.approx(mean)
    assert bytesin["ratio_low"] == pytest.approx(100 / mean)
    assert bytesin["ratio_high"] == pytest.approx(400 / mean)  # the top 2.5 %: the burst
    assert len([key for key in frame if key[0] == "drop"]) == 3
    assert {frame[("drop", HOUR)][c] for c in ("ratio_low", "ratio_high")} == {1.0}
    assert frame[("allow", HOUR)]["ratio_low"] is None
    # whole numbers >= 0 throughout: counts; one fraction makes a series not one
    assert {r["is_count"] for key, r in frame.items() if key[0] != "load"} == {True}
    assert frame[("load", HOUR)]["is_count"] is False
