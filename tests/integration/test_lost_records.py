"""Retention passed while the speed layer was down: it skips, logs and counts, never crash-loops.

``ip_averages`` runs available-now on its own copy of the topics (every name prefixed, through
``LAMBDAWATCH_CONFIG``, so no other test's topic is touched). It reads a first batch; then a
second batch is sent and the first part of it deleted from every partition with Kafka's
DeleteRecords, as retention would have done. The next run must end normally, read exactly
what is left, and record the deleted count in ``speed_layer_progress`` and ``v_lost_records``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from kafka import TopicPartition

from generators.ip import IpGenerator
from lambdawatch.core import db
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings, load_settings, project_root
from lambdawatch.ops.stack.local import LocalStack
from tests.integration.kafka_reading import end_offsets, read_topic
from tests.integration.speed_layer_process import send, speed_layer_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "lost-records-"
START = 1_767_657_600_000  # 2026-01-06T00:00:00Z
MINUTE = 60_000


def _own_topics_config(tmp_path: Path) -> Path:
    config = json.loads((project_root() / "config.json").read_text())
    for topic in config["topics"]:
        topic["name"] = PREFIX + topic["name"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _ip_averages(config: Path, checkpoints: Path) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [*speed_layer_command("ip_averages", checkpoints), "--available-now"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "LAMBDAWATCH_CONFIG": str(config)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return run


def _recorded(settings: Settings, secrets: Secrets, topic: str) -> tuple[int, int, int]:
    """What ``speed_layer_progress`` says of ``ip_averages`` on ``topic``: rows read, records
    lost, and the records lost as Pipeline health's view shows them."""
    with db.connect(settings, secrets) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(input_rows), 0), coalesce(sum(lost_rows), 0), "
            "(SELECT coalesce(sum(lost_records), 0) FROM v_lost_records "
            " WHERE query = 'ip_averages' AND source = %(topic)s) "
            "FROM speed_layer_progress WHERE query = 'ip_averages' AND source = %(topic)s",
            {"topic": topic},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_records_retention_deleted_while_down_are_counted_not_a_crash_loop(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    config = _own_topics_config(tmp_path)
    own = load_settings(config_path=config)
    topic = own.topic("ip_events").name
    checkpoints = tmp_path / "checkpoints"
    ips = tuple(own.ips.resolved_addresses)
    generator = IpGenerator(ips, MINUTE, seed=11)

    admin = admin_client(own.kafka_bootstrap)
    try:
        ensure_topics(admin, own.topics)
    finally:
        admin.close()
    send(own, generator.generate(START, START + 2 * MINUTE))
    _ip_averages(config, checkpoints)  # reads the first batch
    read = end_offsets(own.kafka_bootstrap, topic)
    assert sum(read.values()) > 0

    send(own, generator.generate(START + 2 * MINUTE, START + 4 * MINUTE))
    sent = end_offsets(own.kafka_bootstrap, topic)
    deleted_to = {p: read[p] + (sent[p] - read[p]) // 2 for p in sent}
    admin = admin_client(own.kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(topic, p): o for p, o in deleted_to.items()})
    finally:
        admin.close()
    lost = sum(deleted_to[p] - read[p] for p in sent)
    left = sum(sent[p] - deleted_to[p] for p in sent)
    assert lost > 0
    assert left > 0

    run = _ip_averages(config, checkpoints)  # must not fail on the offsets it cannot read
    assert _lost_logged(run, topic) == lost
    rows_read, lost_per_batch, lost_in_view = _recorded(own, local_stack.secrets, topic)
    assert (lost_per_batch, lost_in_view) == (lost, lost)
    # everything still there was read, once: the first batch, then what retention left
    assert rows_read == sum(read.values()) + left
    assert read_topic(own.kafka_bootstrap, own.topic("ip_averages").name)


def _lost_logged(run: subprocess.CompletedProcess[str], topic: str) -> int:
    """The records the speed layer's warnings say it lost (one warning per batch)."""
    total = 0
    for line in run.stderr.splitlines():
        if f"records of {topic}:" in line and " lost " in line:
            total += int(line.split(" lost ")[1].split()[0])
    return total
