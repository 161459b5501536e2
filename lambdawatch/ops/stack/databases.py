"""The databases every deployment needs, created the same way in local mode and docker-compose.

One PostgreSQL server holds three databases: the platform's (owned by ``POSTGRES_USER``, schema
from ``sql/``), Airflow's metadata and Superset's metadata (each owned by its own role), and
Superset's role may read, only read, the platform database. Every step is idempotent, so the
compose init service can run on every ``docker compose up``.
"""

from __future__ import annotations

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack import airflow_node, superset_node
from lambdawatch.ops.stack.postgres import ensure_database


def prepare_databases(settings: Settings, secrets: Secrets) -> list[str]:
    """Roles, databases, platform migrations and read grants; returns the migrations applied."""
    with db.connect(settings, secrets, "postgres") as admin:
        ensure_database(admin, settings.postgres_db)
        airflow_node.ensure_metadata_database(admin, secrets)
        superset_node.ensure_metadata_database(admin, secrets)
    with db.connect(settings, secrets) as conn:
        applied = db.apply_migrations(conn, settings.root / "sql")
        superset_node.grant_read_access(conn, settings)
    return applied
