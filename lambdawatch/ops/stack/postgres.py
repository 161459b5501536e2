"""Local PostgreSQL from Debian's binaries: a private cluster under ``var/``, not the system one.

PostgreSQL refuses to run as root, so when lambdawatch runs as root the cluster belongs to a
service user (``SERVICE_USER``, default ``postgres``) and supervisord drops privileges for it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from lambdawatch.ops.stack.supervisor import ProgramSpec

DEBIAN_ROOT = Path("/usr/lib/postgresql")


def find_postgres_bin() -> Path:
    """Newest Debian PostgreSQL ``bin`` directory, or the one holding ``postgres`` on PATH."""
    versions = [path for path in DEBIAN_ROOT.glob("*/bin") if path.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda path: int(path.parent.name))
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL server binaries not found; install Debian's postgresql package "
        "(the README's setup command does)"
    )


def run_as_user(service_user: str) -> str | None:
    """The OS user that must own and run the cluster: none unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(service_user)
    except KeyError as exc:
        raise RuntimeError(f"SERVICE_USER: OS user {service_user!r} does not exist") from exc
    return service_user


def _chown(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_traversable(path: Path, user: str | None) -> None:
    """Fail early with a clear message if the service user cannot reach the data directory."""
    if not user:
        return
    probe = subprocess.run(["test", "-x", str(path)], user=user, check=False)
    if probe.returncode != 0:
        raise RuntimeError(
            f"{path} is not reachable by the OS user {user!r} that runs PostgreSQL; "
            f"make its parent directories world-executable (chmod o+x) or set LAMBDAWATCH_VAR_DIR"
        )


def init_cluster(data_dir: Path, superuser: str, password: str, user: str | None) -> bool:
    """Run initdb once; return False if the cluster already exists."""
    if (data_dir / "PG_VERSION").exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    _chown(data_dir, user)
    _check_traversable(data_dir.parent, user)
    pwfile = data_dir.parent / ".initdb-password"
    descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    _chown(pwfile, user)
    try:
        result = subprocess.run(
            [
                str(find_postgres_bin() / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                superuser,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ],
            user=user,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    return True


def postgres_program(data_dir: Path, host: str, port: int, user: str | None) -> ProgramSpec:
    """The postmaster in the foreground; SIGINT is PostgreSQL's fast, clean shutdown."""
    settings = {
        "listen_addresses": host,
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "200",
        "shared_buffers": "128MB",
        "wal_level": "replica",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    command = [str(find_postgres_bin() / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return ProgramSpec(
        name="postgres",
        command=command,
        directory=data_dir.parent,
        user=user,
        stop_signal="INT",
        stop_wait_seconds=60,
    )


def ensure_database(conn: psycopg.Connection, name: str, owner: str | None = None) -> bool:
    """CREATE DATABASE if missing (it cannot run in a transaction, hence autocommit)."""
    conn.autocommit = True
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists:
        return False
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if owner:
        statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    conn.execute(statement)
    return True


def ensure_role(conn: psycopg.Connection, name: str, password: str) -> None:
    """Create or update a login role (its password follows the secrets file)."""
    conn.autocommit = True
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
    )
