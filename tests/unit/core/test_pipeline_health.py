"""Parsing Spark's query progress into per-source throughput and consumer-lag rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lambdawatch.core.pipeline_health import (
    archive_lag,
    lost_rows,
    offsets_behind,
    progress_rows,
    source_name,
)
from lambdawatch.core.tables import ANOMALY_SHAPE

ANOMALY_COLUMNS = [column.name for column in ANOMALY_SHAPE]

PROGRESS = {
    "id": "5f2b...",
    "name": "ip_averages",
    "timestamp": "2026-11-23T10:00:00.000Z",
    "batchId": 41,
    "batchDuration": 812,
    "sources": [
        {
            "description": "KafkaV2[Subscribe[ip-events]]",
            "startOffset": {"ip-events": {"0": 10, "1": 20}},
            "endOffset": json.dumps({"ip-events": {"0": 15, "1": 30}}),
            "latestOffset": json.dumps({"ip-events": {"0": 18, "1": 30}}),
            "numInputRows": 15,
            "inputRowsPerSecond": 7.5,
            "processedRowsPerSecond": "NaN",
            "metrics": {"maxOffsetsBehindLatest": "3"},
        },
        {
            "description": "KafkaV2[Subscribe[cdn-events]]",
            "endOffset": {"cdn-events": {"0": 5}},
            "numInputRows": 0,
            "metrics": {"maxOffsetsBehindLatest": "9.0"},
        },
    ],
}


def test_source_name_is_the_subscribed_topic() -> None:
    assert source_name("KafkaV2[Subscribe[ip-events]]") == "ip-events"
    assert source_name("KafkaV2[SubscribePattern[ip-.*]]") == "ip-.*"
    assert source_name("MemoryStream[value]") == "MemoryStream[value]"


def test_lag_is_latest_minus_processed_summed_over_partitions() -> None:
    assert offsets_behind(PROGRESS["sources"][0]) == 3  # (18 - 15) + (30 - 30)
    # without latest offsets, the connector's own metric
    assert offsets_behind(PROGRESS["sources"][1]) == 9
    assert offsets_behind({"description": "RateStream"}) is None


def test_a_partition_the_batch_has_not_seen_claims_no_lag() -> None:
    source = {"endOffset": {"t": {"0": 5}}, "latestOffset": {"t": {"0": 5, "1": 4}}}
    assert offsets_behind(source) == 0  # partition 1 unknown to the batch: no lag claimed


def test_one_row_per_source_with_non_finite_rates_dropped() -> None:
    rows = progress_rows(PROGRESS)
    assert [(r.query, r.batch_id, r.source) for r in rows] == [
        ("ip_averages", 41, "ip-events"),
        ("ip_averages", 41, "cdn-events"),
    ]
    first = rows[0]
    assert (first.input_rows, first.input_rows_per_second) == (15, 7.5)
    assert first.processed_rows_per_second is None  # Spark's "NaN" for an empty interval
    assert first.batch_duration_ms == 812
    assert rows[1].input_rows == 0


def test_a_progress_without_sources_gives_no_rows() -> None:
    assert progress_rows({"name": "q", "batchId": 0, "timestamp": "t", "sources": []}) == []


def test_a_windowed_query_records_its_watermark_and_spark_s_late_count() -> None:
    windowed = {
        **PROGRESS,
        "name": "cpu_anomalies",
        "sources": PROGRESS["sources"][:1],
        "eventTime": {"watermark": "2026-11-23T09:59:58.000Z", "max": "2026-11-23T10:00:00.000Z"},
        "stateOperators": [
            {"operatorName": "dedupe", "numRowsDroppedByWatermark": 3},
            {"operatorName": "stateStoreSave", "numRowsDroppedByWatermark": 4},
        ],
    }
    (row,) = progress_rows(windowed)
    assert (row.watermark, row.late_rows) == ("2026-11-23T09:59:58.000Z", 7)
    # a query without a watermark (or before its first event) has neither
    before = {**windowed, "eventTime": {"watermark": "1970-01-01T00:00:00.000Z"}}
    assert [(r.watermark, r.late_rows) for r in progress_rows(before)] == [(None, None)]
    assert {(r.watermark, r.late_rows) for r in progress_rows(PROGRESS)} == {(None, None)}


@pytest.mark.parametrize(
    ("start", "end", "read", "lost"),
    [
        ({"t": {"0": 10, "1": 20}}, {"t": {"0": 15, "1": 30}}, 15, 0),  # everything read
        ({"t": {"0": 10, "1": 20}}, {"t": {"0": 15, "1": 30}}, 9, 6),  # 6 deleted before
        ({"t": {"0": 100}}, {"t": {"0": 200}}, 0, 100),  # the whole range was gone
        (json.dumps({"t": {"0": 5}}), json.dumps({"t": {"0": 7}}), 2, 0),  # JSON strings
        (None, {"t": {"0": 15}}, 15, None),  # a query's first batch: no start to compare
        ({"t": {"0": 10}}, {"t": {"0": 15, "1": 4}}, 5, None),  # partition 1 new: unknown
        ({"t": {"0": -2}}, {"t": {"0": 15}}, 5, None),  # a symbolic start (earliest)
        ({"t": {"0": 10}}, {"t": {"0": 15}}, 8, 0),  # more than the range (never negative)
    ],
)
def test_records_lost_are_the_offset_range_minus_the_rows_read(
    start: object, end: object, read: int, lost: int | None
) -> None:
    source = {"startOffset": start, "endOffset": end, "numInputRows": read}
    assert lost_rows(source) == lost


def test_each_row_carries_the_records_its_batch_lost() -> None:
    assert [row.lost_rows for row in progress_rows(PROGRESS)] == [0, None]


@pytest.mark.parametrize(
    ("lag_hours", "severity"),
    [(None, None), (47.9, None), (48.0, None), (49, "WARN"), (97, "ERROR")],
)
def test_a_late_archive_is_an_anomaly_keyed_by_its_oldest_sample(
    lag_hours: float | None, severity: str | None
) -> None:
    sampled = datetime(2026, 3, 1, 12, tzinfo=UTC)
    oldest = None if lag_hours is None else sampled - timedelta(hours=lag_hours)
    finding = archive_lag(sampled, oldest, 48.0)
    if severity is None:
        assert finding is None
        return
    assert finding is not None
    row = dict(zip(ANOMALY_COLUMNS, finding, strict=False))
    assert (row["detector"], row["entity"], row["window_start"]) == (
        "archive_lag", "hot_store", oldest,
    )  # fmt: skip
    assert row["value"] == pytest.approx(lag_hours)
    assert (row["expected"], row["severity"]) == (48.0, severity)
