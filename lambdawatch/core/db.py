"""PostgreSQL access and the ordered, idempotent migrations in ``sql/``.

Each migration file is applied once, in file-name order, inside a transaction holding an
advisory lock, so ``lambdawatch up`` and ``InitialDag`` may both run them at the same time.
Applied files are recorded with a checksum: editing an applied migration is an error, add a
new one instead.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import psycopg
from psycopg import sql

from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import BATCH, SERVICES, SPEED_LAYER, TABLES, VIEWS

if TYPE_CHECKING:  # the pool and Arrow are only in the core environment, not Airflow's
    import pyarrow as pa
    from psycopg_pool import ConnectionPool

# Rows to COPY: tuples, or an Arrow table (its columns named as the target's), which is
# rendered to CSV in Arrow's C++ writer: no Python object per value on the way.
Rows: TypeAlias = "Iterable[Sequence[object]] | pa.Table"

MIGRATION_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
ADVISORY_LOCK_KEY = 0x1A3BDA
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS public.lambdawatch_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover_migrations(directory: Path) -> list[Migration]:
    """Migrations in version order; a file that breaks the naming rule is an error, not skipped."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration names must look like 001_create_tables.sql")
        found.append(Migration(version=path.stem, path=path))
    versions = [int(MIGRATION_NAME.match(m.path.name).group(1)) for m in found]  # type: ignore[union-attr]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{directory}: two migrations share a number")
    return found


def pending_of(migrations: list[Migration], ledger: dict[str, str]) -> list[Migration]:
    """The migrations the ledger (version → checksum) lacks; an applied one that changed since
    is an error."""
    pending = []
    for migration in migrations:
        recorded = ledger.get(migration.version)
        if recorded is None:
            pending.append(migration)
        elif recorded != migration.checksum:
            raise RuntimeError(
                f"migration {migration.version} changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return pending


def pending_migrations(conn: psycopg.Connection, directory: Path) -> list[str]:
    """The versions not applied yet, read only: what a service role may check (it cannot
    change the schema)."""
    exists = conn.execute("SELECT to_regclass('public.lambdawatch_migrations')").fetchone()
    ledger = (
        dict(conn.execute("SELECT version, checksum FROM public.lambdawatch_migrations").fetchall())
        if exists and exists[0]
        else {}
    )
    return [m.version for m in pending_of(discover_migrations(directory), ledger)]


def apply_migrations(conn: psycopg.Connection, directory: Path) -> list[str]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    applied_now = []
    conn.autocommit = False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(LEDGER_DDL)
        rows = conn.execute("SELECT version, checksum FROM public.lambdawatch_migrations")
        ledger = dict(rows.fetchall())
        for migration in pending_of(discover_migrations(directory), ledger):
            conn.execute(migration.path.read_text())
            conn.execute(
                "INSERT INTO public.lambdawatch_migrations (version, checksum) VALUES (%s, %s)",
                (migration.version, migration.checksum),
            )
            applied_now.append(migration.version)
    return applied_now


# Who connects. ``owner`` (the superuser initdb created) only sets up: roles, databases,
# migrations, grants. Services connect as their own role, which may write only the tables that
# declare it a writer; ``reader`` (Superset) may only read the ``v_*`` views.
Role: TypeAlias = Literal["owner", "speed_layer", "batch", "reader"]
ROLE_NAMES: dict[str, str] = {
    SPEED_LAYER: "lambdawatch_speed_layer",
    BATCH: "lambdawatch_batch",
    "reader": "superset",  # also the owner of Superset's metadata database
}


def role_name(settings: Settings, role: Role) -> str:
    return settings.postgres_user if role == "owner" else ROLE_NAMES[role]


def role_password(secrets: Secrets, role: Role) -> str:
    secret = {
        "owner": secrets.postgres_password,
        SPEED_LAYER: secrets.speed_layer_db_password,
        BATCH: secrets.batch_db_password,
        "reader": secrets.superset_db_password,
    }[role]
    return secret.get_secret_value()


def _connection_kwargs(
    settings: Settings, secrets: Secrets | None, dbname: str | None, role: Role
) -> dict[str, Any]:
    secrets = secrets or secrets_for(settings)
    return {
        "host": settings.postgres_host,
        "port": settings.postgres_port,
        "user": role_name(settings, role),
        "password": role_password(secrets, role),
        "dbname": dbname or settings.postgres_db,
        "connect_timeout": 5,
        "application_name": f"lambdawatch-{role}",
    }


def connect(
    settings: Settings,
    secrets: Secrets | None = None,
    dbname: str | None = None,
    role: Role = BATCH,
) -> psycopg.Connection:
    """A connection to the platform database as ``role`` (credentials from the secrets file or
    environment). The batch role by default: Airflow's tasks, the batch jobs and the CLI."""
    return psycopg.connect(**_connection_kwargs(settings, secrets, dbname, role))


RETENTION_FUNCTION = sql.SQL("lambdawatch_apply_retention(text, integer, integer)")
CDN_MINUTES_FUNCTION = sql.SQL(
    "lambdawatch_refresh_cdn_cluster_minutes(timestamp with time zone, timestamp with time zone)"
)


def privilege_statements(settings: Settings) -> list[sql.Composable]:
    """Every grant of the platform database, derived from the declarations in
    ``lambdawatch.core.tables``; run by the owner after the migrations, each time (revoking
    first, so a table that loses a writer loses the grant)."""
    services = [sql.Identifier(ROLE_NAMES[s]) for s in SERVICES]
    reader = sql.Identifier(ROLE_NAMES["reader"])
    everyone = sql.SQL(", ").join([*services, reader])
    statements: list[sql.Composable] = [
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(settings.postgres_db), everyone
        ),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(everyone),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(everyone),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(everyone),
        # earlier versions let the reader see every table created later
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public REVOKE ALL ON TABLES FROM {}"
        ).format(sql.Identifier(settings.postgres_user), reader),
        sql.SQL("GRANT SELECT ON public.lambdawatch_migrations TO {}").format(
            sql.SQL(", ").join(services)
        ),
    ]
    for relation in (*TABLES.values(), *VIEWS.values()):
        statements.append(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier(relation.name), sql.SQL(", ").join(services)
            )
        )
        if relation.writers:
            writers = sql.SQL(", ").join(sql.Identifier(ROLE_NAMES[w]) for w in relation.writers)
            statements.append(
                sql.SQL("GRANT INSERT, UPDATE, DELETE ON {} TO {}").format(
                    sql.Identifier(relation.name), writers
                )
            )
    for view in VIEWS:
        statements.append(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(view), reader))
    statements += [
        # the one way a service changes a table's layout (sql/017): the batch role's retention
        sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(RETENTION_FUNCTION),
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
            RETENTION_FUNCTION, sql.Identifier(ROLE_NAMES[BATCH])
        ),
        # the speed layer's per-minute rollup of its CDN clusters (sql/020)
        sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(CDN_MINUTES_FUNCTION),
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
            CDN_MINUTES_FUNCTION, sql.Identifier(ROLE_NAMES[SPEED_LAYER])
        ),
        sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(
            sql.SQL(", ").join(services)
        ),
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = {}").format(
            reader,
            sql.Identifier(settings.postgres_db),
            sql.Literal(f"{settings.superset_statement_timeout_s}s"),
        ),
    ]
    return statements


def grant_privileges(conn: psycopg.Connection, settings: Settings) -> None:
    """Apply ``privilege_statements`` in one transaction (the roles must exist:
    ``lambdawatch.ops.stack.databases.ensure_service_roles`` creates them)."""
    with conn.transaction():
        for statement in privilege_statements(settings):
            conn.execute(statement)


def connection_pool(
    settings: Settings, secrets: Secrets | None = None, max_size: int = 8, role: Role = BATCH
) -> ConnectionPool:
    """Connections kept open for a long-running process's many short writes.

    A speed-layer sink writes every micro-batch; a new connection each time is a TCP and
    SCRAM handshake on the latency path. A connection is checked before it is lent, so a
    restarted PostgreSQL costs a reconnect, not a failed batch. Close the pool when done.
    """
    from psycopg_pool import ConnectionPool  # noqa: PLC0415 - not in the Airflow environment

    return ConnectionPool(
        kwargs=_connection_kwargs(settings, secrets, None, role),
        min_size=1,
        max_size=max_size,
        check=ConnectionPool.check_connection,
        name="lambdawatch",
        open=True,
    )


def refresh_cdn_cluster_minutes(conn: psycopg.Connection, first: datetime, last: datetime) -> int:
    """``rt_cdn_cluster_minutes`` recomputed from ``rt_cdn_clusters`` for the minutes from
    ``first`` to ``last`` (sql/020); returns the rows written."""
    row = conn.execute(
        "SELECT lambdawatch_refresh_cdn_cluster_minutes(%s, %s)", (first, last)
    ).fetchone()
    return int(row[0]) if row else 0


def upsert_rows(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Rows,
    key_columns: Sequence[str],
    update: bool = True,
) -> int:
    """COPY ``rows`` (tuples or an Arrow table) into a staging table, then merge them on
    their natural key.

    ``update=True`` overwrites existing rows (a window's latest totals replace its earlier
    ones); ``update=False`` keeps them (``ON CONFLICT DO NOTHING``). Duplicate keys inside one
    batch keep their last occurrence. Returns the number of rows inserted or changed.
    """
    staging = sql.Identifier(f"staging_{table}")
    target = sql.Identifier(table)
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    keys = sql.SQL(", ").join(map(sql.Identifier, key_columns))
    values = [c for c in columns if c not in key_columns]
    if update and values:
        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values
        )
    else:
        action = sql.SQL("DO NOTHING")
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(staging, target)
        )
        _copy_rows(cursor, staging, columns, rows)
        cursor.execute(
            sql.SQL(
                "INSERT INTO {target} ({names}) "
                # staging is emptied at every commit, so physical order (ctid) is COPY order
                "SELECT DISTINCT ON ({keys}) {names} FROM {staging} "
                "ORDER BY {keys}, ctid DESC "
                "ON CONFLICT ({keys}) {action}"
            ).format(target=target, names=names, keys=keys, staging=staging, action=action)
        )
        return cursor.rowcount


def copy_rows(conn: psycopg.Connection, table: str, rows: pa.Table) -> None:
    """COPY an Arrow table straight into ``table`` by its column names: for rows whose keys
    are known to be new (``upsert_rows`` merges)."""
    with conn.transaction(), conn.cursor() as cursor:
        _copy_rows(cursor, sql.Identifier(table), rows.column_names, rows)


def delete_rows(
    conn: psycopg.Connection,
    table: str,
    key_columns: Sequence[str],
    keys: Rows,
) -> int:
    """Delete the rows of ``table`` whose natural key is among ``keys`` (absent keys are
    fine). The keys are COPYed into a staging table and joined, so thousands cost one
    statement. Returns the number of rows deleted."""
    staging = sql.Identifier(f"deleting_{table}")
    target = sql.Identifier(table)
    names = sql.SQL(", ").join(map(sql.Identifier, key_columns))
    matches = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = s.{0}").format(sql.Identifier(c)) for c in key_columns
    )
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS "
                "AS SELECT {} FROM {} WITH NO DATA"
            ).format(staging, names, target)
        )
        _copy_rows(cursor, staging, key_columns, keys)
        cursor.execute(
            sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {}").format(target, staging, matches)
        )
        return cursor.rowcount


def _copy_rows(
    cursor: psycopg.Cursor[Any], staging: sql.Identifier, columns: Sequence[str], rows: Rows
) -> None:
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    arrow = sys.modules.get("pyarrow")  # an Arrow table can only come from a process that has it
    if arrow is not None and isinstance(rows, arrow.Table):
        from pyarrow import csv  # noqa: PLC0415 - only where Arrow is

        rendered = arrow.BufferOutputStream()
        # Arrow quotes every string, so an empty one stays '' while a null is an empty field
        csv.write_csv(
            rows.select(list(columns)),
            rendered,
            csv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(staging, names)
        with cursor.copy(query) as copy:
            copy.write(memoryview(rendered.getvalue()))
        return
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(staging, names)) as copy:
        for row in rows:
            copy.write_row(row)
