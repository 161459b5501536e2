"""Least privilege on the real database: each service role tries every table, and is refused
exactly where ``lambdawatch.core.tables`` does not declare it a writer; Superset's reader sees
only the ``v_*`` views, each statement under a timeout."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import SERVICES, TABLES, VIEWS
from lambdawatch.ops.stack.local import LocalStack

pytestmark = pytest.mark.integration


def attempt(conn: psycopg.Connection, statement: sql.Composable) -> bool:
    """Whether ``conn``'s role may run ``statement`` (rolled back either way): a refusal is
    PostgreSQL's insufficient privilege, anything else fails the test."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_only_the_tables_that_declare_it(
    local_stack: LocalStack, settings: Settings, service: db.Role
) -> None:
    refused, allowed = [], []
    with db.connect(settings, local_stack.secrets, role=service) as conn:
        for table in TABLES.values():
            name = sql.Identifier(table.name)
            assert attempt(conn, sql.SQL("SELECT * FROM {} LIMIT 1").format(name)), table.name
            for verb in ("DELETE FROM {} WHERE false", "UPDATE {} SET {} = {} WHERE false"):
                column = sql.Identifier(table.columns[0].name)
                statement = sql.SQL(verb).format(name, column, column)
                (allowed if attempt(conn, statement) else refused).append(table.name)
        ddl = [
            "CREATE TABLE probe_privileges (x int)",
            "TRUNCATE anomalies",
            "DROP TABLE ip_history",
            "ALTER TABLE anomalies ADD COLUMN probe int",
            "CREATE ROLE probe_privileges",
        ]
        assert [s for s in ddl if attempt(conn, sql.SQL(s))] == []  # type: ignore[arg-type]
    writes = {t.name for t in TABLES.values() if service in t.writers}
    assert writes
    assert set(allowed) == writes  # both verbs on each table it writes
    assert set(refused) == set(TABLES) - writes


def test_superset_s_reader_sees_only_the_views_under_a_statement_timeout(
    local_stack: LocalStack, settings: Settings
) -> None:
    with db.connect(settings, local_stack.secrets, role="reader") as conn:
        views = [
            v
            for v in VIEWS
            if attempt(conn, sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(v)))
        ]
        tables = [
            t
            for t in (*TABLES, "lambdawatch_migrations")
            if attempt(conn, sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(t)))
        ]
        writes = [
            t
            for t in TABLES
            if attempt(conn, sql.SQL("DELETE FROM {} WHERE false").format(sql.Identifier(t)))
        ]
        timeout = conn.execute("SHOW statement_timeout").fetchone()
    assert sorted(views) == sorted(VIEWS)
    assert tables == []
    assert writes == []
    assert timeout == (f"{settings.superset_statement_timeout_s}s",)


def test_no_service_role_is_a_superuser_or_may_create_roles_or_databases(
    local_stack: LocalStack, settings: Settings
) -> None:
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = ANY(%s) ORDER BY rolname",
            (sorted(db.ROLE_NAMES.values()),),
        ).fetchall()
    assert rows == [(name, False, False, False, False) for name in sorted(db.ROLE_NAMES.values())]
