"""Superset 6 in local mode: gunicorn serving Superset from its own virtual environment, metadata
in the stack's PostgreSQL, dashboards provisioned from ``superset/`` on every start.

The data connection uses the ``superset`` role, which may only read the platform database's
``v_*`` views, each statement cut off after ``superset_statement_timeout_s``: a chart cannot
change what it shows, nor hold the database the speed layer writes to. Configuration is
``superset/superset_config.py`` reading the environment rendered here, the same file
docker-compose mounts.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.postgres import ensure_database, ensure_role
from lambdawatch.ops.stack.supervisor import ProgramSpec

SUPERSET_DB = "superset"
SUPERSET_DB_USER = db.ROLE_NAMES["reader"]
PROGRAM = "superset"


def superset_home(settings: Settings) -> Path:
    return settings.var_path / "superset"


def assets_dir(settings: Settings) -> Path:
    return settings.root / "superset"


def _url(settings: Settings, secrets: Secrets, database: str) -> str:
    password = quote(secrets.superset_db_password.get_secret_value(), safe="")
    return (
        f"postgresql+psycopg2://{SUPERSET_DB_USER}:{password}"
        f"@{settings.postgres_host}:{settings.postgres_port}/{database}"
    )


def superset_environment(settings: Settings, secrets: Secrets) -> dict[str, str]:
    """The environment Superset's server and CLI run with (read by superset_config.py)."""
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {
        "SUPERSET_HOME": str(superset_home(settings)),
        "SUPERSET_CONFIG_PATH": str(assets_dir(settings) / "superset_config.py"),
        "SUPERSET_SECRET_KEY": secrets.superset_secret_key.get_secret_value(),
        "SUPERSET_METADATA_URL": _url(settings, secrets, SUPERSET_DB),
        "LAMBDAWATCH_DATABASE_URI": _url(settings, secrets, settings.postgres_db),
        "SUPERSET_ADMIN_PASSWORD": secrets.superset_admin_password.get_secret_value(),
        "LAMBDAWATCH_SQL_LAB": "true" if settings.superset_sql_lab else "false",
        "FLASK_APP": "superset.app:create_app()",
        "PATH": f"{settings.superset_venv_path / 'bin'}:{path}",
        "PYTHONUNBUFFERED": "1",
    }


def superset_program(settings: Settings, secrets: Secrets) -> ProgramSpec:
    """gunicorn with threads: Superset's requests wait on the database, not the CPU."""
    gunicorn = settings.superset_venv_path / "bin" / "gunicorn"
    return ProgramSpec(
        name=PROGRAM,
        command=[
            str(gunicorn),
            "--bind",
            f"{settings.bind_host}:{settings.superset_port}",
            "--workers",
            str(settings.superset_workers),
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--timeout",
            "120",
            "--limit-request-line",
            "0",
            "--limit-request-field_size",
            "0",
            "superset.app:create_app()",
        ],
        directory=superset_home(settings),
        environment=superset_environment(settings, secrets),
        stop_signal="TERM",
        stop_wait_seconds=30,
        start_seconds=3,
    )


def ensure_metadata_database(admin: psycopg.Connection, secrets: Secrets) -> None:
    """The superset role and its database (owned by it); idempotent."""
    ensure_role(admin, SUPERSET_DB_USER, secrets.superset_db_password.get_secret_value())
    ensure_database(admin, SUPERSET_DB, owner=SUPERSET_DB_USER)


def prepare_metadata_database(
    settings: Settings, secrets: Secrets, admin: psycopg.Connection
) -> None:
    """The superset role and database, then ``superset db upgrade`` and ``superset init``
    (skipped when this Superset version already ran them against this database)."""
    ensure_metadata_database(admin, secrets)
    home = superset_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    version = superset_version(settings)
    stamp = home / ".initialised"
    if stamp.exists() and stamp.read_text().strip() == version:
        return
    for step in (["db", "upgrade"], ["init"]):
        result = run_superset_cli(settings, secrets, step)
        if result.returncode != 0:
            raise RuntimeError(f"superset {' '.join(step)} failed:\n{_tail(result)}")
    stamp.write_text(version)


def assets_digest(settings: Settings) -> str:
    """What the provisioned state depends on: the asset files, the version, the credentials."""
    digest = hashlib.sha256(superset_version(settings).encode())
    for path in sorted(assets_dir(settings).rglob("*")):
        if path.is_file() and path.suffix in {".yaml", ".py"}:
            digest.update(path.relative_to(assets_dir(settings)).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def provision(settings: Settings, secrets: Secrets, force: bool = False) -> bool:
    """Admin login and every asset of ``superset/``; returns False when nothing had changed.

    The digest covers the credentials too (hashed), so a regenerated password is applied.
    """
    home = superset_home(settings)
    credentials = hashlib.sha256(
        (
            secrets.superset_admin_password.get_secret_value()
            + secrets.superset_db_password.get_secret_value()
            + settings.postgres_host
            + str(settings.postgres_port)
            + str(settings.superset_sql_lab)
        ).encode()
    ).hexdigest()[:16]
    wanted = f"{assets_digest(settings)}:{credentials}"
    stamp = home / ".provisioned"
    if not force and stamp.exists() and stamp.read_text().strip() == wanted:
        return False
    python = settings.superset_venv_path / "bin" / "python"
    result = subprocess.run(
        [
            str(python),
            str(assets_dir(settings) / "provision.py"),
            "--assets",
            str(assets_dir(settings)),
            "--admin",
            settings.superset_admin_user,
        ],
        env={**os.environ, **superset_environment(settings, secrets)},
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"provisioning Superset from {assets_dir(settings)} failed:\n{_tail(result)}"
        )
    stamp.write_text(wanted)
    return True


def superset_version(settings: Settings) -> str:
    """The installed Superset's version, read from its metadata without importing it."""
    site = next((settings.superset_venv_path / "lib").glob("python*/site-packages"), None)
    if site is None:
        raise FileNotFoundError(
            f"no Superset environment at {settings.superset_venv_path}; "
            "run `bash scripts/bootstrap.sh setup`"
        )
    for metadata in site.glob("apache_superset-*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    raise FileNotFoundError(f"apache-superset is not installed in {site}")


def run_superset_cli(
    settings: Settings, secrets: Secrets, args: list[str], timeout: float | None = 600
) -> subprocess.CompletedProcess[str]:
    """``superset <args>`` with the stack's Superset environment."""
    superset_home(settings).mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(settings.superset_venv_path / "bin" / "superset"), *args],
        env={**os.environ, **superset_environment(settings, secrets)},
        cwd=superset_home(settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _tail(result: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])
