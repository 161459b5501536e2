"""Health probes that speak each service's protocol; each returns None when healthy, else why.

A listening port is not health: PostgreSQL accepts TCP before it accepts logins, and a Kafka
broker listens before its controller has elected itself.
"""

from __future__ import annotations

import logging

import psycopg
import redis
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError


def check_postgres(host: str, port: int, user: str, password: str, dbname: str) -> str | None:
    try:
        with psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return f"postgres: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    return None


def check_redis(host: str, port: int) -> str | None:
    try:
        client = redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2)
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
