"""The natural-key writers every sink uses, against the real PostgreSQL."""

from __future__ import annotations

import pytest

from lambdawatch import db
from lambdawatch.settings import Settings
from lambdawatch.stack.local import LocalStack

pytestmark = pytest.mark.integration
TABLE = "test_natural_keys"


def test_upsert_keeps_the_last_duplicate_and_delete_removes_only_given_keys(
    local_stack: LocalStack, settings: Settings
) -> None:
    with db.connect(settings, local_stack.secrets) as conn:
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
