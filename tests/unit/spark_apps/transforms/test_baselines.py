"""Baselines from raw samples and from pre-aggregated windows, on tiny literal DataFrames."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_apps.transforms.baselines import BASELINE_COLUMNS, pooled_baselines, sample_baselines

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
