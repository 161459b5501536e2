"""Baselines from raw samples and from pre-aggregated windows, on tiny literal DataFrames."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_apps.transforms.baselines import (
    BASELINE_COLUMNS,
    pooled_baselines,
    robust_pooled_baselines,
    sample_baselines,
)

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def _bounds() -> tuple:
    return F.lit(START).cast("timestamp"), F.lit(END).cast("timestamp")


def _by_entity(frame) -> dict[str, dict]:
    return {row["entity"]: row.asDict() for row in frame.collect()}


def test_sample_statistics_per_entity(spark: SparkSession) -> None:
    samples = spark.createDataFrame(
        [("paris", 10.0), ("paris", 12.0), ("paris", 17.0), ("lyon", 5.0)], "city string, t double"
    )
    found = _by_entity(sample_baselines(samples, "temperature", "city", "t", *_bounds()))
    assert tuple(found["paris"]) == BASELINE_COLUMNS
    assert found["paris"]["mean"] == pytest.approx(13.0)
    assert found["paris"]["variance"] == pytest.approx(statistics.variance([10, 12, 17]))
    assert found["paris"]["stddev"] == pytest.approx(statistics.stdev([10, 12, 17]))
    assert (found["paris"]["samples"], found["paris"]["metric"]) == (3, "temperature")
    assert (found["lyon"]["variance"], found["lyon"]["samples"]) == (0.0, 1)  # one sample
    assert found["lyon"]["window_start"].replace(tzinfo=UTC) == START


@pytest.mark.parametrize(
    "groups",
    [
        [[40.0, 42.0], [41.0, 39.0, 50.0]],  # windows of different sizes
        [[10.0], [20.0], [30.0, 34.0]],  # single-sample windows (σ null)
        [[55.0, 55.0, 55.0]],  # one window, no spread
    ],
)
def test_pooled_windows_equal_the_raw_samples(spark: SparkSession, groups: list) -> None:
    """The law of total variance: pooling (n, mean, σ) windows gives the samples' statistics."""
    windows = spark.createDataFrame(
        [
            ("srv-1", len(g), statistics.fmean(g), statistics.stdev(g) if len(g) > 1 else None)
            for g in groups
        ],
        "server_id string, n long, m double, s double",
    )
    pooled = _by_entity(
        pooled_baselines(windows, "cpu_usage", "server_id", "n", "m", "s", *_bounds())
    )
    raw = [x for g in groups for x in g]
    found = pooled["srv-1"]
    assert found["samples"] == len(raw)
    assert found["mean"] == pytest.approx(statistics.fmean(raw))
    assert found["variance"] == pytest.approx(statistics.variance(raw), abs=1e-9)


def _cpu_windows(spark: SparkSession, stuck: int = 0, excluded_from: int | None = None) -> Any:
    """A day of per-minute windows (2 samples each) of a server at 40 ± 5 %, then ``stuck``
    windows at 100 %; windows from index ``excluded_from`` on are flagged excluded."""
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(1440):
        samples = rng.normal(40.0, 5.0, 2)
        rows.append((float(samples.mean()), float(samples.std(ddof=1))))
    rows += [(100.0, 0.0)] * stuck
    return spark.createDataFrame(
        [
            ("srv-1", 2, m, s, excluded_from is not None and i >= excluded_from)
            for i, (m, s) in enumerate(rows)
        ],
        "server_id string, n long, m double, s double, excluded boolean",
    )


def _robust(windows: Any, excluded: str | None = None) -> dict:
    found = robust_pooled_baselines(
        windows, "cpu_usage", "server_id", "n", "m", "s", *_bounds(), excluded=excluded
    )
    return _by_entity(found)["srv-1"]


def test_one_stuck_hour_moves_the_robust_baseline_by_less_than_ten_percent(
    spark: SparkSession,
) -> None:
    """A day with one hour stuck at 100 %: plain pooling learns the anomaly (σ more than
    doubles); the robust baseline stays within 10 % of the day without it."""
    normal = _robust(_cpu_windows(spark))
    plain = _by_entity(
        pooled_baselines(_cpu_windows(spark, stuck=60), "cpu_usage", "server_id", "n", "m", "s",
                         *_bounds())
    )["srv-1"]  # fmt: skip
    robust = _robust(_cpu_windows(spark, stuck=60))
    assert plain["stddev"] > 2 * normal["stddev"]  # what the issue saw: σ learnt the anomaly
    assert robust["mean"] == pytest.approx(normal["mean"], rel=0.10)
    assert robust["stddev"] == pytest.approx(normal["stddev"], rel=0.10)
    assert normal["stddev"] == pytest.approx(5.0, rel=0.10)  # the generator's σ


def test_excluded_windows_are_left_out_unless_they_are_most_of_the_entity(
    spark: SparkSession,
) -> None:
    all_windows = _robust(_cpu_windows(spark), excluded="excluded")
    some = _robust(_cpu_windows(spark, excluded_from=1000), excluded="excluded")
    most = _robust(_cpu_windows(spark, excluded_from=100), excluded="excluded")
    assert some["samples"] < all_windows["samples"]
    assert some["samples"] <= 2 * 1000
    assert most["samples"] == all_windows["samples"]  # 93 % excluded: every window kept
