"""The incidents query's pure helpers (``spark_apps.queries.incidents``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from spark_apps.queries.incidents import FUTURE_TOLERANCE, bounded_clock, max_time, storable

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("latest", "clock"),
    [
        (None, None),
        (NOW - timedelta(hours=1), NOW - timedelta(hours=1)),  # history replayed: its own time
        (NOW + timedelta(minutes=1), NOW + timedelta(minutes=1)),  # a little clock skew
        (datetime(9999, 1, 1, tzinfo=UTC), NOW + FUTURE_TOLERANCE),  # a bad timestamp
    ],
)
def test_the_stream_clock_never_runs_far_ahead_of_now(
    latest: datetime | None, clock: datetime | None
) -> None:
    assert bounded_clock(latest, NOW) == clock


def test_the_batch_time_is_the_latest_of_every_named_column() -> None:
    stamps = pa.timestamp("us", tz="UTC")
    windows = pa.table({"window_end": pa.array([NOW, NOW + timedelta(seconds=1)], stamps)})
    empty = pa.table({"window_end": pa.array([], stamps)})
    seen = pa.table({"last_seen": pa.array([NOW + timedelta(seconds=5), None], stamps)})
    latest = max_time(windows, "window_end", empty, "window_end", seen, "last_seen")
    assert latest == NOW + timedelta(seconds=5)
    assert max_time(empty, "window_end") is None


def test_rows_with_a_nul_in_any_text_are_set_aside_before_the_transaction() -> None:
    table = pa.table({"entity": ["srv-1", "srv\x00evil", None], "score": [1.0, 2.0, 3.0]})
    unstorable: list[dict[str, object]] = []
    kept = storable(table, unstorable)
    assert kept.to_pylist() == [{"entity": "srv-1", "score": 1.0}, {"entity": None, "score": 3.0}]
    assert unstorable == [{"entity": "srv\x00evil", "score": 2.0}]
    assert storable(kept, unstorable) is kept  # nothing to filter: the same table
