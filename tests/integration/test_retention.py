"""Bounded growth: apply_retention makes the days ahead, drops the days past retention whole,
moves rows the DEFAULT partition took into their day, and is the only DDL the batch role can
cause (through ``lambdawatch_apply_retention``, for the declared tables only).

Retention is counted back from today; so that no other test's rows are touched, the old rows
here are from 2000 and ``keep_days`` reaches back to the middle of that year.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.retention import apply_retention

pytestmark = pytest.mark.integration
OLD = datetime(2000, 1, 10, tzinfo=UTC)
SERVER = "retention-test-srv"


def _keep_days() -> int:
    """Days back from today to 2000-06-01: rows of January 2000 are past it."""
    return (datetime.now(UTC).date() - date(2000, 6, 1)).days


def _windows(settings: Settings, stack: LocalStack) -> dict[datetime, str]:
    """This test's CPU windows and the partition each is in."""
    with db.connect(settings, stack.secrets) as conn:
        rows = conn.execute(
            "SELECT window_start, tableoid::regclass::text FROM rt_cpu_windows "
            "WHERE server_id = %s",
            (SERVER,),
        ).fetchall()
    return dict(rows)


def _partitions(settings: Settings, stack: LocalStack) -> set[str]:
    with db.connect(settings, stack.secrets) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'rt_cpu_windows'::regclass"
        ).fetchall()
    return {row[0] for row in rows}


def test_retention_drops_old_days_makes_new_ones_and_rehomes_default_rows(
    local_stack: LocalStack, settings: Settings
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ahead = today + timedelta(days=2, hours=3)  # no partition yet: lands in DEFAULT
    beyond = today + timedelta(days=30)  # past days_ahead: stays in DEFAULT
    old_day = f"rt_cpu_windows_p{OLD:%Y%m%d}"
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        conn.execute("DELETE FROM rt_cpu_windows WHERE server_id = %s", (SERVER,))
        # a day of 2000 with its own partition (as if retention had made it back then); the
        # next day has none: its row is in DEFAULT
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {old_day} PARTITION OF rt_cpu_windows "
            "FOR VALUES FROM (%s) TO (%s)".replace("%s", "'{}'").format(
                OLD.isoformat(), (OLD + timedelta(days=1)).isoformat()
            )
        )
        for start in (OLD, OLD + timedelta(days=1), ahead, beyond):
            conn.execute(
                "INSERT INTO rt_cpu_windows (server_id, window_start, window_end, mean_cpu, "
                "std_cpu, samples, expected_mean, expected_std, z, status) "
                "VALUES (%s, %s, %s, 50, 1, 2, 45, 12, 0.4, 'SAFE')",
                (SERVER, start, start + timedelta(milliseconds=500)),
            )
        progress_before = conn.execute(
            "INSERT INTO speed_layer_progress (query, batch_id, source, batch_ts, input_rows) "
            "VALUES ('retention_test', 1, 't', %s, 1) RETURNING 1",
            (OLD,),
        ).fetchone()
    assert progress_before is not None
    placed = _windows(settings, local_stack)
    assert (placed[OLD], placed[OLD + timedelta(days=1)]) == (old_day, "rt_cpu_windows_default")
    assert placed[ahead] == "rt_cpu_windows_default"

    keep = _keep_days()
    retention = settings.retention.model_copy(
        update={"days": {"rt_cpu_windows": keep, "speed_layer_progress": keep}, "days_ahead": 3}
    )
    configured = settings.model_copy(update={"retention": retention})
    first = {done.table: done for done in apply_retention(configured, local_stack.secrets)}

    windows = _windows(settings, local_stack)
    assert OLD not in windows  # January 2000 is past retention: its day dropped whole,
    assert OLD + timedelta(days=1) not in windows  # and its rows in DEFAULT deleted
    assert old_day not in _partitions(settings, local_stack)
    assert windows[ahead] == f"rt_cpu_windows_p{ahead:%Y%m%d}"  # moved into its new day
    assert windows[beyond] == "rt_cpu_windows_default"
    days = {f"rt_cpu_windows_p{today + timedelta(days=n):%Y%m%d}" for n in range(4)}
    assert days <= _partitions(settings, local_stack)
    assert first["rt_cpu_windows"].partitions_created >= 1
    assert first["rt_cpu_windows"].partitions_dropped >= 1  # the day of January 2000
    assert first["rt_cpu_windows"].rows_deleted >= 1  # the next one, from DEFAULT
    assert first["speed_layer_progress"].rows_deleted >= 1  # not partitioned: rows deleted

    again = apply_retention(configured, local_stack.secrets)  # the same day: nothing to do
    assert all(
        (done.partitions_created, done.partitions_dropped, done.rows_deleted) == (0, 0, 0)
        for done in again
    )
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        conn.execute("DELETE FROM rt_cpu_windows WHERE server_id = %s", (SERVER,))


@pytest.mark.parametrize(
    ("role", "table", "keep_days", "refusal"),
    [
        ("batch", "model_registry", 30, "no retention for table model_registry"),
        ("batch", "rt_cpu_windows", 0, "keep_days must be >= 1"),
        ("speed_layer", "rt_cpu_windows", 30, "permission denied"),
    ],
)
def test_retention_is_refused_outside_its_declared_tables_and_roles(
    local_stack: LocalStack, settings: Settings, role: str, table: str, keep_days: int,
    refusal: str,
) -> None:  # fmt: skip
    with (
        db.connect(settings, local_stack.secrets, role=role) as conn,  # type: ignore[arg-type]
        pytest.raises(psycopg.Error, match=refusal),
    ):
        conn.execute("SELECT * FROM lambdawatch_apply_retention(%s, %s, 1)", (table, keep_days))
