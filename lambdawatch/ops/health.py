"""Health probes that speak each service's protocol; each returns None when healthy, else why.

A listening port is not health: PostgreSQL accepts TCP before it accepts logins, and a Kafka
broker listens before its controller has elected itself.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import redis
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from lambdawatch.core.catalog import SPEED_LAYER_QUERIES
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings


def check_postgres(host: str, port: int, user: str, password: str, dbname: str) -> str | None:
    try:
        with psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return f"postgres: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    return None


def check_redis(host: str, port: int, password: str | None = None) -> str | None:
    try:
        client = redis.Redis(
            host=host, port=port, password=password, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            if not client.ping():
                return "redis: PING did not answer PONG"
            if client.info("persistence").get("loading"):
                return "redis: still loading its dataset"
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"redis: {exc}"
    return None


def check_kafka(bootstrap: str) -> str | None:
    """The broker answers metadata and the KRaft controller is known."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=3000,
            client_id="lambdawatch-health",
        )
    except (KafkaError, OSError, ValueError) as exc:
        return f"kafka: {type(exc).__name__}: {exc}"
    try:
        cluster = admin.describe_cluster()
        if cluster.get("controller_id", -1) in (-1, None):
            return "kafka: no active controller yet"
    except (KafkaError, OSError) as exc:
        return f"kafka: {type(exc).__name__}: {exc}"
    finally:
        admin.close()
    return None


def check_speed_layer(
    progress_file: Path, expected: tuple[str, ...], pid: int | None, stale_s: float = 120
) -> str | None:
    """Every query has completed a micro-batch, none terminated, progress fresher than ``stale_s``.

    The speed layer's query listener writes this file with its pid; an idle query still
    refreshes it. A file written by any process but ``pid`` (the one now supervised) is stale.
    """
    if not progress_file.exists():
        return "speed layer: no query has started yet"
    try:
        document = json.loads(progress_file.read_text())
    except (OSError, ValueError) as exc:
        return f"speed layer: unreadable progress file ({exc})"
    if document.get("pid") != pid:
        return "speed layer: progress file is from an earlier run"
    state = document.get("queries", {})
    missing = [name for name in expected if name not in state]
    if missing:
        return f"speed layer: waiting for {', '.join(missing)}"
    dead = [name for name, entry in state.items() if entry.get("status") == "terminated"]
    if dead:
        return f"speed layer: query terminated: {', '.join(dead)}"
    restarting = {n: e for n, e in state.items() if e.get("status") == "restarting"}
    if restarting:  # the others run on; this one waits out its backoff
        return "speed layer: restarting " + "; ".join(
            f"{name} after failure {entry.get('failures')} ({entry.get('error')})"
            for name, entry in sorted(restarting.items())
        )
    starting = [name for name in expected if state[name].get("status") != "active"]
    if starting:  # a query is healthy once it has completed a micro-batch (or reported idle)
        return f"speed layer: first micro-batch pending for {', '.join(starting)}"
    newest = max(entry.get("updated", 0) for entry in state.values())
    if time.time() - newest > stale_s:
        return f"speed layer: no progress for {time.time() - newest:.0f}s"
    return None


def speed_layer_notice(progress_file: Path, pid: int | None) -> str | None:
    """What the running speed layer's queries set aside (records they could not write), or
    None. Not a health failure: each query went on; this says what it skipped and where to."""
    try:
        document = json.loads(progress_file.read_text())
    except (OSError, ValueError):
        return None
    if document.get("pid") != pid:
        return None
    notices = [
        f"{query} set aside {entry['records']} record(s) to {entry['disposition']}, last at "
        f"{entry['last_at']}: {entry['last_error']}"
        for query, entry in sorted((document.get("set_aside") or {}).items())
    ]
    return "; ".join(notices) or None


def check_airflow(base_url: str, part: str) -> str | None:
    """One part (metadatabase, scheduler, dag_processor, triggerer) of Airflow's own health.

    The api-server answers for all of them from the heartbeats in the metadata database, so
    a scheduler that is running but not heartbeating is reported unhealthy too.
    """
    try:
        response = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=3)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"airflow api-server: {type(exc).__name__}: {exc}"
    status = (document.get(part) or {}).get("status")
    if status != "healthy":
        return f"airflow {part}: {status or 'not reported yet'}"
    return None


def check_superset(base_url: str) -> str | None:
    """Superset's ``/health`` answers ``OK`` once the app (and its metadata database) is up."""
    try:
        response = httpx.get(f"{base_url}/health", timeout=3)
    except httpx.HTTPError as exc:
        return f"superset: {type(exc).__name__}: {exc}"
    if response.status_code != 200 or response.text.strip() != "OK":
        return f"superset /health: HTTP {response.status_code} {response.text[:80]!r}"
    return None


def progress_writer_pid(progress_file: Path) -> int | None:
    """The pid that wrote the speed layer's progress file, if that process still runs here."""
    try:
        pid = json.loads(progress_file.read_text()).get("pid")
    except (OSError, ValueError):
        return None
    return pid if isinstance(pid, int) and psutil.pid_exists(pid) else None


SERVICES = ("postgres", "redis", "kafka", "airflow", "superset", "speed-layer")


def check_service(name: str, settings: Settings, secrets: Secrets | None = None) -> str | None:
    """The probe for one service at the settings' endpoints (a compose healthcheck runs this)."""
    if name == "postgres":
        password = secrets.postgres_password.get_secret_value() if secrets else ""
        return check_postgres(
            settings.postgres_host, settings.postgres_port, settings.postgres_user, password,
            settings.postgres_db,
        )  # fmt: skip
    if name == "redis":
        password = secrets.redis_password.get_secret_value() if secrets else None
        return check_redis(settings.redis_host, settings.redis_port, password)
    if name == "kafka":
        return check_kafka(settings.kafka_bootstrap)
    if name == "airflow":
        return check_airflow(settings.airflow_base_url, "scheduler")
    if name == "superset":
        return check_superset(settings.superset_base_url)
    if name == "speed-layer":
        progress = settings.var_path / "run" / "speed_layer.json"
        return check_speed_layer(progress, SPEED_LAYER_QUERIES, progress_writer_pid(progress))
    raise ValueError(f"unknown service {name!r}; expected one of {SERVICES}")
