"""The natural-key writers every sink uses, against the real PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack

pytestmark = pytest.mark.integration
TABLE = "test_natural_keys"


def test_upsert_keeps_the_last_duplicate_and_delete_removes_only_given_keys(
    local_stack: LocalStack, settings: Settings
) -> None:
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (host text, slot int, verdict text NOT NULL, "
            "PRIMARY KEY (host, slot))"
        )
        conn.commit()
        columns, keys = ("host", "slot", "verdict"), ("host", "slot")
        rows = [("a", 1, "WARN"), ("a", 2, "SAFE"), ("a", 1, "ERROR"), ("b", 1, "WARN")]
        assert db.upsert_rows(conn, TABLE, columns, rows, keys) == 3

        # absent keys are fine; twice on one connection reuses the emptied staging table
        assert db.delete_rows(conn, TABLE, keys, [("a", 2), ("c", 9)]) == 1
        assert db.delete_rows(conn, TABLE, keys, [("a", 2)]) == 0
        assert db.delete_rows(conn, TABLE, keys, []) == 0

        left = conn.execute(f"SELECT host, slot, verdict FROM {TABLE} ORDER BY 1, 2").fetchall()
        assert left == [("a", 1, "ERROR"), ("b", 1, "WARN")]
        conn.execute(f"DROP TABLE {TABLE}")
        conn.commit()


def test_an_arrow_table_is_written_value_for_value(
    local_stack: LocalStack, settings: Settings
) -> None:
    """The Arrow path renders CSV: nulls, empty strings, quoting, time zones and NaN must
    arrive as they left, and duplicates and deletes behave as with tuples."""
    import pyarrow as pa

    at = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    rows = pa.table(
        {
            "host": ["a", "a", 'b,"q"\nline', "c"],
            "slot": pa.array([1, 1, 1, 2], pa.int64()),
            "verdict": ["WARN", "ERROR", "", "SAFE"],
            "note": [None, "kept", None, "x"],
            "score": [0.1, 1e-9, float("nan"), None],
            "at": pa.array([at, at, None, at + timedelta(hours=1)], pa.timestamp("us", "UTC")),
        }
    )
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (host text, slot int, verdict text NOT NULL, note text, "
            "score double precision, at timestamptz, PRIMARY KEY (host, slot))"
        )
        conn.commit()
        keys = ("host", "slot")
        assert db.upsert_rows(conn, TABLE, rows.column_names, rows, keys) == 3
        got = conn.execute(f"SELECT * FROM {TABLE} ORDER BY host, slot").fetchall()
        assert got[0] == ("a", 1, "ERROR", "kept", 1e-9, at)  # the last duplicate
        host, slot, verdict, note, score, when = got[1]
        assert (host, slot, verdict, note, when) == ('b,"q"\nline', 1, "", None, None)
        assert math.isnan(score)
        assert got[2] == ("c", 2, "SAFE", "x", None, at + timedelta(hours=1))

        deleted = pa.table({"host": ["c", "zz"], "slot": pa.array([2, 1], pa.int64())})
        assert db.delete_rows(conn, TABLE, keys, deleted) == 1
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (2,)
        conn.execute(f"DROP TABLE {TABLE}")
        conn.commit()


def test_the_cdn_minute_rollup_is_recomputed_not_added_to(
    local_stack: LocalStack, settings: Settings
) -> None:
    """A replayed micro-batch (same rows, or rows re-clustered) leaves each minute exact, and
    the rollup keeps no minute older than rt_cdn_clusters' oldest row."""
    version = "rollup-test"
    minute = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    events = [  # (edge, seconds into the minute, cluster, anomalous)
        ("e1", 5, 1, True),
        ("e2", 10, 1, False),
        ("e3", 59, 2, False),
        ("e1", 65, 2, False),
    ]

    def rollup(conn: Any) -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT minute, cluster, events, anomalous FROM rt_cdn_cluster_minutes "
            "WHERE model_version = %s ORDER BY 1, 2",
            (version,),
        ).fetchall()

    with db.connect(settings, local_stack.secrets, role="speed_layer") as conn:
        conn.execute("DELETE FROM rt_cdn_clusters WHERE model_version = %s", (version,))
        conn.execute("DELETE FROM rt_cdn_cluster_minutes WHERE model_version = %s", (version,))
        for edge, second, cluster, anomalous in events:
            conn.execute(
                "INSERT INTO rt_cdn_clusters VALUES (%s, %s, 'fra', 'eu', %s, %s, 1, 2, %s, %s)",
                (edge, minute + timedelta(seconds=second), f"{edge}-{second}", cluster,
                 anomalous, version),
            )  # fmt: skip
        # a minute no longer in rt_cdn_clusters (its day dropped by retention)
        conn.execute(
            "INSERT INTO rt_cdn_cluster_minutes VALUES ('1999-01-01T00:00Z', 1, %s, 7, 0)",
            (version,),
        )
        last = minute + timedelta(seconds=65)
        expected = [(minute, 1, 2, 1), (minute, 2, 1, 0), (minute + timedelta(minutes=1), 2, 1, 0)]
        assert db.refresh_cdn_cluster_minutes(conn, minute, last) >= 3
        assert rollup(conn) == expected
        db.refresh_cdn_cluster_minutes(conn, minute, last)  # the same batch again
        assert rollup(conn) == expected
        conn.execute(  # replayed under another model: e2 is now in cluster 2
            "UPDATE rt_cdn_clusters SET cluster = 2 WHERE edge_id = 'e2' AND model_version = %s",
            (version,),
        )
        db.refresh_cdn_cluster_minutes(conn, minute, minute)  # e2's minute alone
        assert rollup(conn)[:2] == [(minute, 1, 1, 1), (minute, 2, 2, 0)]
        conn.rollback()
