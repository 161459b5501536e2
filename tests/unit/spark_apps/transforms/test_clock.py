"""The wall clock as a column (``transforms.clock``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from spark_apps.transforms.clock import wall_clock
from tests.unit.spark_apps.frames import utc


def test_wall_clock_is_read_when_rows_are_computed(spark: SparkSession) -> None:
    frame = spark.range(3).select(wall_clock().alias("now"))
    before = datetime.now(UTC)
    first = [utc(r["now"]) for r in frame.collect()]
    time.sleep(0.05)
    second = [utc(r["now"]) for r in frame.collect()]
    after = datetime.now(UTC)
    assert all(before - timedelta(milliseconds=1) <= t <= after for t in first + second)
    assert min(second) > max(first)  # evaluated at each run, not fixed when planned
