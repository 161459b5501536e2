"""The migrations create exactly the tables and views ``lambdawatch.core.tables`` declares."""

from __future__ import annotations

from typing import Any

import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import TABLES, VIEWS, Relation
from lambdawatch.ops.stack.local import LocalStack

pytestmark = pytest.mark.integration
BOOKKEEPING = {"lambdawatch_migrations"}  # the migration runner's own table


@pytest.fixture(scope="module")
def catalog(local_stack: LocalStack, settings: Settings) -> dict[str, Any]:
    """What the migrated database holds: columns in order, kind and primary key per relation."""
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        columns = conn.execute(
            "SELECT c.table_name, t.table_type, c.column_name, c.data_type, c.is_nullable "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' "
            "ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
        partitions = {
            row[0] for row in conn.execute("SELECT relname FROM pg_class WHERE relispartition")
        }
        partitioned = dict(
            conn.execute(
                "SELECT c.relname, a.attname FROM pg_partitioned_table p "
                "JOIN pg_class c ON c.oid = p.partrelid "
                "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
            ).fetchall()
        )
        keys = conn.execute(
            "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage k "
            "USING (constraint_schema, constraint_name, table_name) "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public' "
            "ORDER BY tc.table_name, k.ordinal_position"
        ).fetchall()
    found: dict[str, Any] = {}
    for name, kind, column, data_type, nullable in columns:
        if name in BOOKKEEPING or name in partitions:  # a day of a partitioned table
            continue
        entry = found.setdefault(
            name, {"kind": kind, "columns": [], "key": [], "partitioned_by": partitioned.get(name)}
        )
        entry["columns"].append((column, data_type, nullable == "YES"))
    for name, column in keys:
        if name in found:
            found[name]["key"].append(column)
    return found


def _declared(relation: Relation) -> list[tuple[str, str, bool]]:
    return [(c.name, c.type, c.nullable) for c in relation.columns]


def test_every_relation_in_the_database_is_declared(catalog: dict[str, Any]) -> None:
    assert {n for n, e in catalog.items() if e["kind"] == "BASE TABLE"} == set(TABLES)
    assert {n for n, e in catalog.items() if e["kind"] == "VIEW"} == set(VIEWS)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_table_matches_its_declaration(catalog: dict[str, Any], name: str) -> None:
    assert catalog[name]["columns"] == _declared(TABLES[name])
    assert tuple(catalog[name]["key"]) == TABLES[name].key
    declared = TABLES[name]
    expected = declared.time_column if declared.partitioned_by_day else None
    assert catalog[name]["partitioned_by"] == expected


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_each_view_matches_its_declaration(catalog: dict[str, Any], name: str) -> None:
    assert catalog[name]["columns"] == _declared(VIEWS[name])
