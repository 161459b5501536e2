"""The databases and roles every deployment needs, created the same way in local mode and
docker-compose.

One PostgreSQL server holds three databases: the platform's (owned by ``POSTGRES_USER``, schema
from ``sql/``), Airflow's metadata and Superset's metadata (each owned by its own role). The
owner only sets up; every service connects as its own role (``lambdawatch.core.db.ROLE_NAMES``),
granted what ``lambdawatch.core.tables`` declares. Every step is idempotent, so the compose init
service can run on every ``docker compose up``.
"""

from __future__ import annotations

import psycopg

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack import airflow_node, superset_node
from lambdawatch.ops.stack.postgres import ensure_database, ensure_role


def ensure_service_roles(admin: psycopg.Connection, secrets: Secrets) -> None:
    """The platform database's service roles (login, no other attribute), passwords from the
    secrets."""
    for role in db.ROLE_NAMES:
        ensure_role(admin, db.ROLE_NAMES[role], db.role_password(secrets, role))  # type: ignore[arg-type]


def prepare_platform_database(settings: Settings, secrets: Secrets) -> list[str]:
    """The platform database, its roles, migrations and grants; returns the migrations applied."""
    with db.connect(settings, secrets, "postgres", role="owner") as admin:
        ensure_database(admin, settings.postgres_db)
        ensure_service_roles(admin, secrets)
    with db.connect(settings, secrets, role="owner") as conn:
        applied = db.apply_migrations(conn, settings.root / "sql")
        db.grant_privileges(conn, settings)
    return applied


def prepare_databases(settings: Settings, secrets: Secrets) -> list[str]:
    """Every database and role, the platform schema and its grants; returns the migrations
    applied."""
    applied = prepare_platform_database(settings, secrets)
    with db.connect(settings, secrets, "postgres", role="owner") as admin:
        airflow_node.ensure_metadata_database(admin, secrets)
        superset_node.ensure_metadata_database(admin, secrets)
    return applied
