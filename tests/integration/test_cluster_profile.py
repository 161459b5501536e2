"""The cluster path on one machine: a broker and a Spark worker killed under a live feed.

The cluster profile's infrastructure (``lambdawatch up --profile cluster``: three KRaft nodes,
broker and controller each, topics at RF 3 with min.insync.replicas 2; a Spark standalone master
with two workers) runs beside the session's stack, on its own var directory and ports. The
speed layer is submitted to its ``spark://`` master on a subset of queries and fed live. Midway,
one broker and one worker are killed with SIGKILL and kept down while the feed goes on, then
brought back. ``rt_server_status`` must end exactly as a pandas reference says; every event of
a closed CPU window must be in it or, made late by the stall, be a late dead letter counted in
``speed_layer_progress``; every anomalous window must have its anomaly (and no anomaly lack its
window); and the driver must have lived through it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from generators.server import ServerGenerator
from lambdawatch.core import db
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.ops.stack import spark_node
from lambdawatch.ops.stack.isolation import isolated_environment
from lambdawatch.ops.stack.local import LocalStack, infrastructure
from tests.integration.kafka_reading import read_topic
from tests.integration.speed_layer_process import (
    expected_cpu_windows,
    expected_server_status,
    send,
    speed_layer_command,
    stored_cpu_windows,
    stored_messages,
    stored_server_status,
    unmatched_cpu_anomalies,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = 1_767_916_800_000  # 2026-01-09T00:00:00Z: this module's own interval
STEP_MS = 10_000  # ten seconds of events per send
QUERIES = "server_status,cpu_anomalies,cpu_windows_store"
BROKER, WORKER = "kafka-2", spark_node.WORKERS[0]
OUTAGE_SENDS = 6


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Settings, LocalStack]]:
    """The cluster profile's infrastructure, isolated, with the platform's topics."""
    with isolated_environment(prefix="lambdawatch-cluster-"):
        os.environ["STACK_PROFILE"] = "cluster"
        try:
            settings = load_settings()
            stack = LocalStack(settings)
            try:
                stack.up(list(infrastructure(settings)), on_event=lambda _message: None)
                admin = admin_client(settings.kafka_bootstrap)
                try:
                    ensure_topics(admin, settings.kafka_topics)
                finally:
                    admin.close()
                yield settings, stack
            finally:
                stack.down()
        finally:
            os.environ.pop("STACK_PROFILE", None)


def kill(stack: LocalStack, name: str) -> None:
    """SIGKILL, then keep it down (supervisord would restart it at once)."""
    os.kill(int(stack.supervisor.info(name)["pid"]), signal.SIGKILL)
    stack.supervisor.stop([name])


def test_the_cluster_profile_is_three_voting_brokers_and_two_workers(
    cluster: tuple[Settings, LocalStack],
) -> None:
    settings, _ = cluster
    admin = admin_client(settings.kafka_bootstrap)
    try:
        brokers = admin.describe_cluster()["brokers"]
        topic = settings.topic("server_events").name
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert sorted(b["broker_id"] for b in brokers) == [1, 2, 3]
    assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}
    assert {(t.replication_factor, t.min_insync_replicas) for t in settings.kafka_topics} == {
        (3, 2)
    }
    assert settings.spark_master_url == f"spark://{settings.bind_host}:{settings.spark_master_port}"
    workers = spark_node.master_state(settings)["workers"]
    assert [w["state"] for w in workers] == ["ALIVE", "ALIVE"]


def test_a_broker_and_a_worker_killed_under_a_live_feed_lose_and_double_nothing(
    cluster: tuple[Settings, LocalStack], tmp_path: Path
) -> None:
    settings, stack = cluster
    g = settings.generators
    servers = ServerGenerator(g.servers, g.server_interval_ms, seed=9, anomaly_rate=0.3)
    log = tmp_path / "speed-layer.log"
    sent: list[dict[str, Any]] = []
    at = START

    def feed(sends: int) -> None:
        nonlocal at
        for _ in range(sends):
            batch = servers.generate(at, at + STEP_MS)
            send(settings, batch)
            sent.extend(batch.events)
            at += STEP_MS
            time.sleep(1)

    def messages() -> int:
        return stored_messages(settings, stack.secrets, START, START + 3_600_000)

    wanted: dict[Any, tuple[float, int]] = {}

    def accounted() -> bool:
        """Every event of a closed CPU window is in its stored window or a late dead letter."""
        stored = stored_cpu_windows(settings, stack.secrets, START, START + 3_600_000)
        late = late_cpu_events(settings)
        return all(stored.get(key, (0, 0))[1] + late[key] == n for key, (_, n) in wanted.items())

    with log.open("w") as output:
        running = subprocess.Popen(
            speed_layer_command(QUERIES, tmp_path / "checkpoints"),
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        feed(3)
        wait_for(lambda: messages() > 0, "the first micro-batches on spark://", running, log)
        feed(3)
        kill(stack, BROKER)
        kill(stack, WORKER)
        feed(OUTAGE_SENDS)  # one broker of three and one worker of two down meanwhile
        stack.up([BROKER, WORKER], on_event=lambda _message: None)
        feed(3)
        wait_for(lambda: messages() >= len(sent), "every event after the faults", running, log)
        wanted.update(expected_cpu_windows(sent))
        wait_for(accounted, "every closed CPU window, or its events as late", running, log)
        alive = running.poll() is None
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    assert alive, log.read_text()[-3000:]
    end = START + 3_600_000
    stored = stored_server_status(settings, stack.secrets, START, end)
    assert stored == expected_server_status(sent)
    # Through Kafka → Kafka (the status topic) → PostgreSQL: a partition whose leader was on
    # the killed broker delivers late, behind the 2 s watermark of the 500 ms windows; those
    # events are dead letters ("late: …") and counted, never lost: with them, every closed
    # window holds all its events, once. Each anomalous window has its anomaly, none is stray.
    windows = stored_cpu_windows(settings, stack.secrets, START, end)
    late = late_cpu_events(settings)
    for key, (mean, size) in wanted.items():
        assert windows.get(key, (0, 0))[1] + late[key] == size, key
        if not late[key]:
            assert windows[key][0] == pytest.approx(mean)
    assert sum(late.values()) == recorded_late_rows(settings, stack, "cpu_anomalies")
    assert unmatched_cpu_anomalies(settings, stack.secrets, START, end) == (0, 0)


def late_cpu_events(settings: Settings) -> Counter[tuple[str, pd.Timestamp]]:
    """The late dead letters of ``cpu_anomalies``, per server and 500 ms window."""
    counts: Counter[tuple[str, pd.Timestamp]] = Counter()
    for record in read_topic(settings.kafka_bootstrap, settings.topic("dead_letters").name):
        letter = json.loads(record.value)
        if letter["query"] == "cpu_anomalies" and letter["reason"].startswith("late:"):
            event = json.loads(base64.b64decode(letter["raw_base64"]))
            window = pd.Timestamp(event["timestamp"]).floor("500ms")
            counts[(event["server_id"], window)] += 1
    return counts


def recorded_late_rows(settings: Settings, stack: LocalStack, query: str) -> int:
    """What the speed layer counted as behind its watermark (Spark's own count)."""
    with db.connect(settings, stack.secrets) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(late_rows), 0) FROM speed_layer_progress WHERE query = %s",
            (query,),
        ).fetchone()
    assert row is not None
    return int(row[0])
