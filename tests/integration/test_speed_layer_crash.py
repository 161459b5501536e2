"""Exactly-once in practice: kill -9 the speed layer mid-stream, restart it, lose nothing.

The speed layer runs continuously on the first half of an interval; the second half is sent
while it runs, then the whole process group (Python driver and JVM) is killed with SIGKILL.
A restart from the same checkpoints finishes the work. Every PostgreSQL table must then hold
exactly what the events say it should: computed here independently, with pandas.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from generators.server import ServerGenerator
from generators.weather import WeatherGenerator
from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from tests.integration.speed_layer_process import (
    IN_INTERVAL,
    expected_cpu_windows,
    expected_server_status,
    send,
    speed_layer_command,
    stored_cpu_windows,
    stored_messages,
    stored_server_status,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = 1_767_398_400_000  # 2026-01-03T00:00:00Z: this module's own interval
HALF = 2 * 60_000
END = START + 2 * HALF
QUERIES = "server_status,cpu_anomalies,cpu_windows_store,weather_derived"


def _query(settings: Settings, stack: LocalStack, sql: str, column: str = "window_start") -> list:
    with db.connect(settings, stack.secrets) as conn:
        text = sql.replace("{where}", IN_INTERVAL.format(column=column))
        return conn.execute(text, {"start": START, "end": END}).fetchall()


def _messages(settings: Settings, stack: LocalStack) -> int:
    return stored_messages(settings, stack.secrets, START, END)


@pytest.fixture(scope="module")
def crashed_and_recovered(
    local_stack: LocalStack,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_topics: None,
) -> dict[str, Any]:
    g = settings.generators
    servers = ServerGenerator(g.servers, g.server_interval_ms, seed=5, anomaly_rate=0.3)
    weather = WeatherGenerator(60_000, seed=5)
    first = [servers.generate(START, START + HALF), weather.generate(START, START + HALF)]
    second = [servers.generate(START + HALF, END), weather.generate(START + HALF, END)]
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    log = checkpoints / "speed-layer.log"
    command = speed_layer_command(QUERIES, checkpoints)

    send(settings, *first)
    with log.open("w") as output:
        running = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(
            lambda: _messages(settings, local_stack) > 0, "the first micro-batches", running, log
        )
        send(settings, *second)
        first_count = len(first[0].events)
        wait_for(
            lambda: _messages(settings, local_stack) > first_count,
            "the second half to start",
            running,
            log,
        )
    finally:
        os.killpg(running.pid, signal.SIGKILL)  # driver and JVM, mid-stream, no clean-up
        running.wait()
    assert running.returncode == -signal.SIGKILL
    killed_at = _messages(settings, local_stack)

    recovered = subprocess.run(
        [*command, "--available-now"], capture_output=True, text=True, check=False
    )
    assert recovered.returncode == 0, recovered.stderr[-4000:]
    return {
        "server_events": first[0].events + second[0].events,
        "weather_events": first[1].events + second[1].events,
        "killed_at": killed_at,
        "checkpoints": Path(checkpoints),
    }


def test_the_kill_happened_mid_stream(crashed_and_recovered: dict[str, Any]) -> None:
    assert 0 < crashed_and_recovered["killed_at"] <= len(crashed_and_recovered["server_events"])


def test_server_status_holds_every_event_exactly_once(
    crashed_and_recovered: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    stored = stored_server_status(settings, local_stack.secrets, START, END)
    assert stored == expected_server_status(crashed_and_recovered["server_events"])


def test_cpu_windows_are_complete_and_not_duplicated(
    crashed_and_recovered: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    wanted = expected_cpu_windows(crashed_and_recovered["server_events"])
    actual = stored_cpu_windows(settings, local_stack.secrets, START, END)
    assert set(wanted) <= set(actual)
    assert (
        len(actual) - len(wanted) <= settings.generators.servers * 5
    )  # only the last few open windows
    for key, (mean, size) in wanted.items():
        assert actual[key][1] == size
        assert actual[key][0] == pytest.approx(mean)


def test_weather_rows_exactly_once(
    crashed_and_recovered: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    rows = _query(
        settings,
        local_stack,
        "SELECT city, ts, temperature FROM rt_weather WHERE {where}",
        column="ts",
    )
    wanted = {
        (e["city"], pd.Timestamp(e["timestamp"]).to_pydatetime(), e["temperature"])
        for e in crashed_and_recovered["weather_events"]
    }
    assert len(rows) == len(wanted)
    assert set(rows) == wanted
