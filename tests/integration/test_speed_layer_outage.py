"""Fault isolation: PostgreSQL stopped for 60 s under a live feed.

The speed layer runs a Kafka → Kafka query (``ip_averages``) beside a PostgreSQL one
(``server_status``). While the database is away the Kafka query keeps producing, the PostgreSQL
sink waits the outage out (retries with backoff, then its query alone would be restarted), the
driver never dies, and once PostgreSQL is back the serving table ends exactly as the events say,
computed here independently with pandas.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import pytest

from generators.ip import IpGenerator
from generators.server import ServerGenerator
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from tests.integration.kafka_reading import end_offsets
from tests.integration.speed_layer_process import (
    expected_server_status,
    send,
    speed_layer_command,
    stored_messages,
    stored_server_status,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = 1_767_484_800_000  # 2026-01-04T00:00:00Z: this module's own interval
HALF = 2 * 60_000
END = START + 2 * HALF
QUERIES = "ip_averages,server_status"
OUTAGE_S = 60


def _messages(settings: Settings, stack: LocalStack) -> int:
    return stored_messages(settings, stack.secrets, START, END)


def _produced(settings: Settings, topic: str) -> int:
    return sum(end_offsets(settings.kafka_bootstrap, topic).values())


@pytest.fixture(scope="module")
def outage(
    local_stack: LocalStack,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_topics: None,
) -> dict[str, Any]:
    g = settings.generators
    servers = ServerGenerator(g.servers, g.server_interval_ms, seed=11, anomaly_rate=0.0)
    ips = IpGenerator(tuple(settings.ips.resolved_addresses), 1_000, seed=11, anomaly_rate=0.0)
    first = [servers.generate(START, START + HALF), ips.generate(START, START + HALF)]
    second = [servers.generate(START + HALF, END), ips.generate(START + HALF, END)]
    averages = settings.topic("ip_averages").name
    checkpoints = tmp_path_factory.mktemp("outage-checkpoints")
    log = checkpoints / "speed-layer.log"
    command = speed_layer_command(QUERIES, checkpoints)
    send(settings, *first)
    with log.open("w") as output:
        running = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: _messages(settings, local_stack) > 0, "first batches", running, log)
        stopped_at = time.monotonic()
        local_stack.supervisor.stop(["postgres"])
        before = _produced(settings, averages)
        send(settings, *second)
        produced_while_down = 0
        while time.monotonic() - stopped_at < OUTAGE_S:
            produced_while_down = _produced(settings, averages) - before
            assert running.poll() is None, log.read_text()[-3000:]
            time.sleep(2)
        local_stack.up(["postgres"], on_event=lambda _m: None)
        total = len(first[0].events) + len(second[0].events)
        wait_for(lambda: _messages(settings, local_stack) >= total, "every event", running, log)
        alive_throughout = running.poll() is None
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    return {
        "server_events": first[0].events + second[0].events,
        "produced_while_down": produced_while_down,
        "alive_throughout": alive_throughout,
        "log": log.read_text(),
    }


def test_the_kafka_query_kept_producing_while_postgres_was_away(outage: dict[str, Any]) -> None:
    assert outage["produced_while_down"] > 0
    assert outage["alive_throughout"], outage["log"][-3000:]
    assert "retrying in" in outage["log"]  # the PostgreSQL sink waited the outage out


def test_the_serving_table_ends_exactly_as_without_the_outage(
    outage: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    stored = stored_server_status(settings, local_stack.secrets, START, END)
    assert stored == expected_server_status(outage["server_events"])
