"""The databases every deployment needs, created the same way in local mode and docker-compose.

One PostgreSQL server holds three databases: the platform's (owned by ``POSTGRES_USER``, schema
from ``sql/``), Airflow's metadata and Superset's metadata (each owned by its own role), and
Superset's role may read, only read, the platform database. Every step is idempotent, so the
compose init service can run on every ``docker compose up``.
"""

from __future__ import annotations

from lambdawatch import db
from lambdawatch.secrets import Secrets
from lambdawatch.settings import Settings
from lambdawatch.stack.airflow_node import AIRFLOW_DB, AIRFLOW_DB_USER
from lambdawatch.stack.postgres import ensure_database, ensure_role
from lambdawatch.stack.superset_node import SUPERSET_DB, SUPERSET_DB_USER, grant_read_access


def prepare_databases(settings: Settings, secrets: Secrets) -> list[str]:
    """Roles, databases, platform migrations and read grants; returns the migrations applied."""
    with db.connect(settings, secrets, "postgres") as admin:
        ensure_database(admin, settings.postgres_db)
        ensure_role(admin, AIRFLOW_DB_USER, secrets.airflow_db_password.get_secret_value())
        ensure_database(admin, AIRFLOW_DB, owner=AIRFLOW_DB_USER)
        ensure_role(admin, SUPERSET_DB_USER, secrets.superset_db_password.get_secret_value())
        ensure_database(admin, SUPERSET_DB, owner=SUPERSET_DB_USER)
    with db.connect(settings, secrets) as conn:
        applied = db.apply_migrations(conn, settings.root / "sql")
        grant_read_access(conn, settings)
    return applied
