"""Silence detection: the pure rules the streaming query and a batch backtest share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spark_apps.detectors.silence import find_silences, silence_anomaly, silence_deadline

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reports", "end", "expected"),
    [
        ([0, 10, 20, 30], 60, []),  # steady; the open tail (30 → 60) is within 3 intervals
        ([0, 10, 20, 30], 61, [(30, None)]),  # ... until the deadline has passed
        ([0, 10, 50, 60], 60, [(10, 50)]),  # a 4-interval gap, ended by the report at 50
        ([0, 10, 40, 50], 60, []),  # exactly 3 intervals late is still on time
        ([20, 0, 10, 10], 30, []),  # unsorted and duplicated reports
        ([], 100, []),
    ],
)
def test_find_silences(
    reports: list[int], end: int, expected: list[tuple[int, int | None]]
) -> None:
    assert find_silences(reports, interval_ms=10, missed=3, end_ms=end) == expected


def test_a_gap_becomes_one_error_keyed_by_its_first_missed_tick() -> None:
    last = int(T0.timestamp() * 1000)
    assert silence_deadline(last, 60_000, 3) == last + 180_000
    first = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, now_ms=last + 300_000)
    again = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, now_ms=last + 200_000)
    assert first["window_start"] == T0 + timedelta(minutes=1) == again["window_start"]
    assert first["window_end"] == T0 + timedelta(minutes=3)
    assert first["severity"] == "ERROR"
    assert first["metric"] == "ip:reports_missing"
    assert (first["value"], again["value"]) == (5.0, 3.0)  # the gap so far, in intervals
    closed = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, last, resumed_ms=last + 600_000)
    assert closed["window_start"] == first["window_start"]  # the same record, completed
    assert closed["window_end"] == T0 + timedelta(minutes=10)
    assert closed["value"] == 10.0
