"""The local stack against its real services: PostgreSQL, Redis and a KRaft Kafka broker.

Order matters in this module: the last test takes the whole stack down and brings it back,
checking that nothing survives ``down`` and that data survives the restart.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lambdawatch.core import db
from lambdawatch.core.config_model import TopicConfig
from lambdawatch.core.hot_store import redis_client
from lambdawatch.core.kafka_admin import admin_client, ensure_topics, partition_counts
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack import postgres
from lambdawatch.ops.stack.local import INFRASTRUCTURE, LocalStack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ROUND_TRIP_TOPIC = TopicConfig(role="metrics", name="roundtrip-test", partitions=4)
PERSISTED_KEY = "lambdawatch:test:persisted"


def _pg(settings: Settings, stack: LocalStack, dbname: str | None = None) -> psycopg.Connection:
    return db.connect(settings, stack.secrets, dbname, role="owner")


def _redis(settings: Settings) -> redis.Redis:
    return redis_client(settings)


def test_up_from_nothing_brings_every_component_to_healthy(local_stack: LocalStack) -> None:
    rows = [row for row in local_stack.status() if row.name in INFRASTRUCTURE]
    assert [row.name for row in rows] == list(INFRASTRUCTURE)
    for row in rows:
        assert row.state == "RUNNING", row
        assert row.healthy, row
        assert row.pid
        assert psutil.pid_exists(row.pid)
        assert row.rss_bytes > 0


def test_services_bind_loopback_only(local_stack: LocalStack, settings: Settings) -> None:
    wanted = {settings.postgres_port, settings.redis_port, settings.kafka_port}
    listening = {
        conn.laddr.port: conn.laddr.ip
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in wanted
    }
    assert set(listening) == wanted
    assert all(_is_loopback(ip) for ip in listening.values()), listening


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_kafka_round_trip_on_a_multi_partition_topic(
    local_stack: LocalStack, settings: Settings
) -> None:
    admin = admin_client(settings.kafka_bootstrap)
    try:
        ensure_topics(admin, [ROUND_TRIP_TOPIC])
        assert partition_counts(admin, [ROUND_TRIP_TOPIC.name]) == {ROUND_TRIP_TOPIC.name: 4}
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    sent: dict[int, list[dict[str, int]]] = {p: [] for p in range(4)}
    for index in range(200):
        partition = index % 4
        record = {"index": index, "partition": partition}
        producer.send(
            ROUND_TRIP_TOPIC.name,
            key=str(index).encode(),
            value=json.dumps(record).encode(),
            partition=partition,
        )
        sent[partition].append(record)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    partitions = [TopicPartition(ROUND_TRIP_TOPIC.name, p) for p in range(4)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received: dict[int, list[dict[str, int]]] = {p: [] for p in range(4)}
    for message in consumer:
        received[message.partition].append(json.loads(message.value))
        if sum(map(len, received.values())) == 200:
            break
    consumer.close()
    assert received == sent


def test_topics_from_config_are_created_once_and_grow_on_demand(
    local_stack: LocalStack, settings: Settings
) -> None:
    admin = admin_client(settings.kafka_bootstrap)
    try:
        first = {change.name: change.action for change in ensure_topics(admin, settings.topics)}
        second = {change.name: change.action for change in ensure_topics(admin, settings.topics)}
        assert set(first.values()) <= {"created", "unchanged"}
        assert set(second.values()) == {"unchanged"}
        counts = partition_counts(admin, [t.name for t in settings.topics])
        assert counts == {t.name: t.partitions for t in settings.topics}

        grown = TopicConfig(role="metrics", name="grow-test", partitions=2, retention_ms=1000)
        ensure_topics(admin, [grown])
        bigger = grown.model_copy(update={"partitions": 3, "retention_ms": 5000})
        assert ensure_topics(admin, [bigger])[0].action == "partitions_increased"
        assert partition_counts(admin, ["grow-test"]) == {"grow-test": 3}
        longer = bigger.model_copy(update={"retention_ms": 9000})
        assert ensure_topics(admin, [longer])[0].action == "config_updated"
    finally:
        admin.close()


def test_postgres_round_trip_and_migrations_are_idempotent(
    local_stack: LocalStack, settings: Settings
) -> None:
    with _pg(settings, local_stack) as conn:
        assert db.apply_migrations(conn, ROOT / "sql") == []  # `up` applied them already
        conn.autocommit = True
        row = (
            "round-trip",
            "server-1",
            "cpu",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:01Z",
            97.0,
            45.0,
            4.3,
            "ERROR",
        )
        insert = """
            INSERT INTO anomalies (detector, entity, metric, window_start, window_end,
                                   value, expected, score, severity)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (detector, entity, metric, window_start) DO NOTHING
        """
        conn.execute(insert, row)
        conn.execute(insert, row)  # a retried write must not duplicate
        found = conn.execute(
            "SELECT count(*), max(value) FROM anomalies WHERE detector = 'round-trip'"
        ).fetchone()
        assert found == (1, 97.0)


def test_editing_an_applied_migration_is_refused(
    local_stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    with _pg(settings, local_stack, "postgres") as admin:
        postgres.ensure_database(admin, scratch)
    migration = tmp_path / "001_first.sql"
    migration.write_text("CREATE TABLE IF NOT EXISTS t (x int);")
    with _pg(settings, local_stack, scratch) as conn:
        assert db.apply_migrations(conn, tmp_path) == ["001_first"]
        assert db.apply_migrations(conn, tmp_path) == []
        migration.write_text("CREATE TABLE IF NOT EXISTS t (x bigint);")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            db.apply_migrations(conn, tmp_path)


def test_redis_refuses_a_client_without_the_generated_password(
    local_stack: LocalStack, settings: Settings
) -> None:
    anonymous = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get(PERSISTED_KEY)
    wrong = redis.Redis(host=settings.redis_host, port=settings.redis_port, password="guess")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    assert _redis(settings).ping()


def test_redis_round_trip_survives_a_redis_restart(
    local_stack: LocalStack, settings: Settings
) -> None:
    client = _redis(settings)
    client.set(PERSISTED_KEY, "still-here")
    client.hset("lambdawatch:test:hash", mapping={"a": "1", "b": "2"})
    old_pid = local_stack.supervisor.info("redis")["pid"]
    local_stack.supervisor.stop(["redis"])  # SIGTERM: Redis flushes the AOF and exits
    local_stack.up(["redis"], on_event=lambda _m: None)
    assert local_stack.supervisor.info("redis")["pid"] != old_pid
    client = _redis(settings)
    assert client.get(PERSISTED_KEY) == b"still-here"
    assert client.hgetall("lambdawatch:test:hash") == {b"a": b"1", b"b": b"2"}


def test_up_twice_is_harmless(local_stack: LocalStack) -> None:
    before = {row.name: row.pid for row in local_stack.status()}
    local_stack.up(list(INFRASTRUCTURE), on_event=lambda _m: None)
    after = {row.name: row.pid for row in local_stack.status()}
    assert before == after


def test_cli_status_config_check_and_bad_config(local_stack: LocalStack, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "lambdawatch.ops.cli"]
    selected = [arg for name in INFRASTRUCTURE for arg in ("--only", name)]
    status = subprocess.run(
        [*cli, "status", *selected], capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("postgres", "redis", "kafka"):
        assert name in status.stdout
    bad = json.loads((ROOT / "config.json").read_text())
    bad["topics"][2]["partitions"] = 0
    (tmp_path / "config.json").write_text(json.dumps(bad))
    env = {**os.environ, "LAMBDAWATCH_CONFIG": str(tmp_path / "config.json")}
    check = subprocess.run(
        [*cli, "config", "check"], capture_output=True, text=True, check=False, env=env
    )
    assert check.returncode == 2
    assert "topics[2].partitions: must be >= 1" in check.stderr


def test_down_leaves_no_process_and_up_restores_the_data(
    local_stack: LocalStack, settings: Settings
) -> None:
    with _pg(settings, local_stack) as conn:
        conn.autocommit = True
        conn.execute(
            "INSERT INTO ground_truth (label_id, source, entity, kind, start_ts, end_ts) "
            "VALUES ('restart-check', 'test', 'x', 'none', now(), now()) ON CONFLICT DO NOTHING"
        )
    pids = [row.pid for row in local_stack.status() if row.pid]
    supervisor_pid = int(local_stack.supervisor.paths.pidfile.read_text())
    local_stack.down()

    survivors = [pid for pid in [*pids, supervisor_pid] if pid and psutil.pid_exists(pid)]
    assert survivors == []
    var = str(settings.var_path)
    strays = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(var in part for part in (p.info["cmdline"] or []))
    ]
    assert strays == []
    assert all(row.state == "STOPPED" for row in local_stack.status())

    local_stack.up(list(INFRASTRUCTURE), on_event=lambda _m: None)
    assert _redis(settings).get(PERSISTED_KEY) == b"still-here"
    with _pg(settings, local_stack) as conn:
        assert conn.execute(
            "SELECT count(*) FROM ground_truth WHERE label_id = 'restart-check'"
        ).fetchone() == (1,)
    admin = admin_client(settings.kafka_bootstrap)
    try:
        assert partition_counts(admin, [ROUND_TRIP_TOPIC.name]) == {ROUND_TRIP_TOPIC.name: 4}
    finally:
        admin.close()


def test_distributed_mode_prepares_and_probes_the_same_services(
    local_stack: LocalStack, settings: Settings
) -> None:
    """What the compose init service and healthchecks run, pointed at this stack's services:
    secrets from the environment only, databases and grants idempotent, probes by name."""
    cli = [sys.executable, "-m", "lambdawatch.ops.cli"]
    secrets = {
        name.upper(): value.get_secret_value()
        for name, value in local_stack.secrets.model_dump().items()
    }
    env = {**os.environ, "STACK_MODE": "distributed"}
    for name in secrets:
        env.pop(name, None)
    refused = subprocess.run(
        [*cli, "prepare"], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode == 2
    assert "POSTGRES_PASSWORD: is required" in refused.stderr
    env.update(secrets)
    for _ in range(2):  # every `docker compose up` runs it again
        prepared = subprocess.run(
            [*cli, "prepare"], capture_output=True, text=True, env=env, check=False
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        assert "up to date" in prepared.stdout
    for service in ("postgres", "redis", "kafka"):
        probe = subprocess.run(
            [*cli, "check", service], capture_output=True, text=True, env=env, check=False
        )
        assert probe.returncode == 0, (service, probe.stdout + probe.stderr)
    down = subprocess.run(
        [*cli, "check", "superset"],
        capture_output=True,
        text=True,
        env={**env, "SUPERSET_URL": "http://127.0.0.1:9"},
        check=False,
    )
    assert down.returncode == 1
    assert "superset" in down.stderr
    with psycopg.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user="superset",
        password=secrets["SUPERSET_DB_PASSWORD"],
        dbname=settings.postgres_db,
    ) as reader:
        reader.execute("SELECT count(*) FROM v_anomalies").fetchone()  # the read grant
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT count(*) FROM anomalies")  # views only
