"""Airflow 3 in local mode: api-server, scheduler, dag-processor and triggerer as supervised
programs from their own virtual environment, metadata in the stack's PostgreSQL.

Everything is configured through ``AIRFLOW__SECTION__KEY`` variables rendered from settings, so
there is no airflow.cfg to drift. Traps this module handles: the environment's ``bin`` must be on
``PATH`` (LocalExecutor spawns ``airflow`` task supervisors by name), the execution API URL must
name the api-server's port, and the worker/triggerer log servers get ports from settings instead
of the fixed 8793/8794, so two stacks can share a machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg

from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.postgres import ensure_database, ensure_role
from lambdawatch.ops.stack.supervisor import ProgramSpec

AIRFLOW_DB = "airflow"
AIRFLOW_DB_USER = "airflow"
# supervisord program name → ``airflow`` sub-command
AIRFLOW_PROGRAMS = {
    "airflow-api-server": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
}
# supervisord program name → key of the api-server's /api/v2/monitor/health document
HEALTH_KEYS = {
    "airflow-api-server": "metadatabase",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}


def airflow_home(settings: Settings) -> Path:
    return settings.var_path / "airflow"


def metadata_url(settings: Settings, secrets: Secrets, driver: str = "psycopg") -> str:
    """SQLAlchemy URL of the metadata database; psycopg 3 serves both sync and async engines.

    Airflow would otherwise derive its async URL with asyncpg, one more driver to install.
    """
    password = quote(secrets.airflow_db_password.get_secret_value(), safe="")
    return (
        f"postgresql+{driver}://{AIRFLOW_DB_USER}:{password}"
        f"@{settings.postgres_host}:{settings.postgres_port}/{AIRFLOW_DB}"
    )


def airflow_environment(settings: Settings, secrets: Secrets) -> dict[str, str]:
    """The environment every Airflow process (and every task it spawns) runs with."""
    home = airflow_home(settings)
    venv_bin = settings.airflow_venv_path / "bin"
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    # after Airflow's own: PySpark's spark-submit, which spark_default's hook runs by name
    spark_bin = settings.spark_python_path.parent
    return {
        "AIRFLOW_HOME": str(home),
        "PATH": f"{venv_bin}:{spark_bin}:{path}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.root / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Scheduled DAGs start paused; InitialDag unpauses them once the platform exists.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__FERNET_KEY": secrets.airflow_fernet_key.get_secret_value(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings, secrets),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url(
            settings, secrets, "psycopg_async"
        ),
        "AIRFLOW__API__HOST": settings.bind_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": settings.airflow_base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.airflow_api_secret_key.get_secret_value(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.airflow_jwt_secret.get_secret_value(),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.var_path / "log" / "airflow"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_log_server_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_server_port),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        # Tasks import lambdawatch; they must load the same settings as the stack that runs them.
        "LAMBDAWATCH_ROOT": str(settings.root),
        "LAMBDAWATCH_VAR_DIR": str(settings.var_path),
        "PYTHONUNBUFFERED": "1",
    }


def airflow_program(name: str, settings: Settings, secrets: Secrets) -> ProgramSpec:
    airflow = settings.airflow_venv_path / "bin" / "airflow"
    return ProgramSpec(
        name=name,
        command=[str(airflow), *AIRFLOW_PROGRAMS[name]],
        directory=airflow_home(settings),
        environment=airflow_environment(settings, secrets),
        stop_signal="TERM",
        stop_wait_seconds=60,
        start_seconds=3,
    )


def ensure_metadata_database(admin: psycopg.Connection, secrets: Secrets) -> None:
    """The airflow role and its database (owned by it); idempotent."""
    ensure_role(admin, AIRFLOW_DB_USER, secrets.airflow_db_password.get_secret_value())
    ensure_database(admin, AIRFLOW_DB, owner=AIRFLOW_DB_USER)


def prepare_metadata_database(
    settings: Settings, secrets: Secrets, admin: psycopg.Connection
) -> None:
    """The airflow role and database (owned by it), then ``airflow db migrate``.

    The migration is skipped when this Airflow version already migrated this database (a stamp
    in AIRFLOW_HOME), so a second ``up`` costs nothing.
    """
    ensure_metadata_database(admin, secrets)
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    write_password_file(settings, secrets)
    version = airflow_version(settings)
    stamp = home / ".migrated"
    if stamp.exists() and stamp.read_text().strip() == version:
        return
    result = run_airflow_cli(settings, secrets, ["db", "migrate"])
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise RuntimeError(f"airflow db migrate failed:\n{tail}")
    stamp.write_text(version)


def write_password_file(settings: Settings, secrets: Secrets) -> Path:
    """The simple auth manager's login file, from the generated admin password (mode 600)."""
    path = airflow_home(settings) / "passwords.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {settings.airflow_admin_user: secrets.airflow_admin_password.get_secret_value()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle)
    return path


def airflow_version(settings: Settings) -> str:
    """The installed Airflow's version, read from its metadata without importing it."""
    site = next((settings.airflow_venv_path / "lib").glob("python*/site-packages"), None)
    if site is None:
        raise FileNotFoundError(
            f"no Airflow environment at {settings.airflow_venv_path}; "
            "run `bash scripts/bootstrap.sh setup`"
        )
    for metadata in site.glob("apache_airflow_core-*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    raise FileNotFoundError(f"apache-airflow-core is not installed in {site}")


def run_airflow_cli(
    settings: Settings, secrets: Secrets, args: list[str], timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """``airflow <args>`` with the stack's Airflow environment (e.g. ``dags test``)."""
    environment = {**os.environ, **airflow_environment(settings, secrets)}
    return subprocess.run(
        [str(settings.airflow_venv_path / "bin" / "airflow"), *args],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
