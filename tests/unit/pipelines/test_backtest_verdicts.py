"""Verdicts summarised from Parquet in batches equal the same verdicts held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from lambdawatch.pipelines import backtest_verdicts
from lambdawatch.pipelines.backtest_verdicts import (
    RESULT_COLUMNS,
    stored_verdicts,
    verdicts_of,
    write_output,
)


def _verdicts(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2026-03-02", tz="UTC") + pd.to_timedelta(
        np.arange(rows) // 4 * 500, unit="ms"
    )
    score = rng.normal(0, 2, rows)
    return pd.DataFrame(
        {
            "detector": "cpu_anomalies",
            "entity": [f"s{i % 4}" for i in range(rows)],
            "metric": "cpu_usage",
            "window_start": start,
            "window_end": start + pd.Timedelta(milliseconds=500),
            "value": rng.normal(50, 5, rows),
            "expected": 50.0,
            "score": score,
            "severity": np.select(
                [np.abs(score) >= 5, np.abs(score) >= 2], ["ERROR", "WARN"], "SAFE"
            ),
            "model_version": [f"baseline:{i % 2}" for i in range(rows)],
        }
    )[list(RESULT_COLUMNS)]


def test_parquet_verdicts_read_in_batches_equal_the_same_in_memory(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backtest_verdicts, "BATCH_ROWS", 97)  # many batches, cut anywhere
    table = _verdicts(2_000)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    (
        spark.createDataFrame(table)
        .repartition(3, "entity")
        .sortWithinPartitions("entity", "metric", "window_start")
        .write.parquet(str(tmp_path / "stored"))
    )
    stored, held = stored_verdicts(tmp_path / "stored"), verdicts_of(table)
    pd.testing.assert_frame_equal(stored.series, held.series)
    pd.testing.assert_frame_equal(stored.findings, held.findings)
    assert (stored.first, stored.last) == (held.first, held.last)
    assert stored.model_versions == held.model_versions == ("baseline:0", "baseline:1")
    assert (stored.judged, stored.warn, stored.error) == (
        2_000, int((table["severity"] == "WARN").sum()), int((table["severity"] == "ERROR").sum())
    )  # fmt: skip
    assert write_output(stored, tmp_path / "stored.csv") == 2_000
    write_output(held, tmp_path / "held.csv")
    by_series = ["entity", "metric", "window_start"]
    from_parquet = pd.read_csv(tmp_path / "stored.csv").sort_values(by_series, ignore_index=True)
    pd.testing.assert_frame_equal(from_parquet, pd.read_csv(tmp_path / "held.csv"))
    for _entity, rows in pd.read_csv(tmp_path / "stored.csv").groupby("entity", sort=False):
        assert rows["window_start"].is_monotonic_increasing  # each series in time order


def test_no_verdict_still_writes_the_header(tmp_path: Path) -> None:
    empty = verdicts_of(pd.DataFrame({name: [] for name in RESULT_COLUMNS}))
    assert (empty.judged, empty.first, empty.findings.empty) == (0, None, True)
    assert write_output(empty, tmp_path / "out.csv") == 0
    assert (tmp_path / "out.csv").read_text().strip() == ",".join(RESULT_COLUMNS[:-1])
