"""Which hours of arrival an archive run writes (each hour's directory is replaced whole)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spark_apps.jobs.archive_raw_events import archived_hours


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        # a scheduled run: its hour
        ("2026-03-01T14:00", "2026-03-01T15:00", ["2026-03-01T14:00"]),
        # a manual run at 15:27: the hour before and this one so far
        ("2026-03-01T14:27", "2026-03-01T15:27", ["2026-03-01T14:00", "2026-03-01T15:00"]),
        # a day's catch-up
        (
            "2026-03-01T22:00",
            "2026-03-02T01:00",
            ["2026-03-01T22:00", "2026-03-01T23:00", "2026-03-02T00:00"],
        ),
        ("2026-03-01T14:00", "2026-03-01T14:00", []),
    ],
)
def test_a_run_archives_the_whole_hours_its_interval_touches(
    start: str, end: str, hours: list[str]
) -> None:
    assert archived_hours(_at(start), _at(end)) == [_at(hour) for hour in hours]
