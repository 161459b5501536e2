"""apply_retention: each large table keeps ``retention.days`` of data (config.json).

The work happens in the database, in ``lambdawatch_apply_retention`` (sql/017): it runs as the
owner, because only an owner may create and drop partitions, and the batch role may only call
it. Per table, it makes the daily partitions of the next ``retention.days_ahead`` days, drops
the days past retention (deleting rows instead for a table not partitioned), and reports what it
did. Safe to repeat: a second run the same day changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings


@dataclass(frozen=True)
class TableRetention:
    table: str
    keep_days: int
    partitions_created: int
    partitions_dropped: int
    rows_deleted: int


def retain_table(
    conn: psycopg.Connection, table: str, keep_days: int, days_ahead: int
) -> TableRetention:
    """One table's retention, committed on its own (a failing table leaves the others done)."""
    with conn.transaction():
        row = conn.execute(
            "SELECT partitions_created, partitions_dropped, rows_deleted "
            "FROM lambdawatch_apply_retention(%s, %s, %s)",
            (table, keep_days, days_ahead),
        ).fetchone()
    assert row is not None
    return TableRetention(table, keep_days, int(row[0]), int(row[1]), int(row[2]))


def apply_retention(settings: Settings, secrets: Secrets | None = None) -> list[TableRetention]:
    """Every table ``retention.days`` names, as the batch role."""
    retention = settings.retention
    with db.connect(settings, secrets) as conn:
        return [
            retain_table(conn, table, days, retention.days_ahead)
            for table, days in retention.days.items()
        ]
