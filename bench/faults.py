"""Faults under a live feed: what is lost or doubled, how long each query stalls, how long
recovery takes.

Each scenario starts the speed layer as its own process on two queries, one Kafka → Kafka
(``ip_averages``) and one Kafka → PostgreSQL (``server_status``), with fresh checkpoints, and
feeds them live: every second of wall time, one second of generated server and IP events (its
own interval, so scenarios never mix). Scenarios:

- ``reference``: nothing breaks; what the same feed costs on this machine in this run.
- ``postgres_down_60s``: PostgreSQL is stopped for 60 s in the middle of the feed.

Per scenario: ``events_lost`` and ``duplicates`` (``rt_server_status`` against a pandas
reference computed from the events sent), ``stalled_s`` per query (the longest wall time
between two completed micro-batches while events were arriving, from the layer's progress
file), ``recovery_s`` (from the fault's end until the table holds every event; for the
reference, from the last send) and the Kafka → Kafka query's output while the database was
away. The rest of issue 19's matrix (a broker and a Spark worker killed on the cluster
profile, lost offsets, 100,000 fuzzed records) is not here yet.

Goals (issue 19): events_lost 0, duplicates 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.common import running_stack, write_result
from generators.ip import IpGenerator
from generators.server import ServerGenerator
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from tests.integration.kafka_reading import end_offsets
from tests.integration.speed_layer_process import (
    expected_server_status,
    send,
    speed_layer_command,
    stored_messages,
    stored_server_status,
    wait_for,
)

QUERIES = ("ip_averages", "server_status")
FEED_S = 150
FAULT_AT_S = 45
OUTAGE_S = 60
T0 = 1_767_830_400_000  # 2026-01-08T00:00:00Z; each scenario takes its own hour after it


class ProgressWatch(threading.Thread):
    """Polls the speed layer's progress file: when each query's micro-batch id moved."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.stop = path, threading.Event()
        self.moves: dict[str, list[float]] = {name: [] for name in QUERIES}
        self.last: dict[str, Any] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                state = json.loads(self.path.read_text()).get("queries", {})
            except (OSError, ValueError):
                state = {}
            now = time.monotonic()
            for name in QUERIES:
                batch = state.get(name, {}).get("batch_id")
                if batch is not None and batch != self.last.get(name):
                    self.last[name] = batch
                    self.moves[name].append(now)
            time.sleep(0.25)

    def stalled_s(self, start: float, end: float) -> dict[str, float]:
        """Per query, the longest gap between micro-batches inside ``[start, end]``."""
        gaps = {}
        for name, moves in self.moves.items():
            inside = [start, *(t for t in moves if start < t < end), end]
            gaps[name] = round(max(b - a for a, b in pairwise(inside)), 1)
        return gaps


def run_scenario(settings: Any, stack: Any, name: str, hour: int, work: Path) -> dict[str, Any]:
    start_ms = T0 + hour * 3_600_000
    g = settings.generators
    servers = ServerGenerator(g.servers, g.server_interval_ms, seed=hour, anomaly_rate=0.0)
    ips = IpGenerator(tuple(settings.ips.resolved_addresses), 1_000, seed=hour, anomaly_rate=0.0)
    checkpoints = work / name
    checkpoints.mkdir(parents=True)
    log = checkpoints / "speed-layer.log"
    averages = settings.topic("ip_averages").name
    progress = settings.var_path / "run" / "speed_layer.json"
    with log.open("w") as output:
        running = subprocess.Popen(
            speed_layer_command(",".join(QUERIES), checkpoints),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    watch = ProgressWatch(progress)
    watch.start()
    sent: list[dict[str, Any]] = []
    try:
        first = servers.generate(start_ms, start_ms + 1_000)
        send(settings, first, ips.generate(start_ms, start_ms + 1_000))
        sent += first.events
        wait_for(
            lambda: stored_server_status(settings, stack.secrets, start_ms, start_ms + 3_600_000),
            "the first micro-batch",
            running,
            log,
        )
        began = time.monotonic()
        fault: dict[str, float] = {}
        produced_before = sum(end_offsets(settings.kafka_bootstrap, averages).values())
        for second in range(1, FEED_S):
            if name != "reference" and second == FAULT_AT_S:
                stack.supervisor.stop(["postgres"])
                fault["start"] = time.monotonic()
                produced_before = sum(end_offsets(settings.kafka_bootstrap, averages).values())
            if "start" in fault and "end" not in fault and second == FAULT_AT_S + OUTAGE_S:
                fault["produced"] = (
                    sum(end_offsets(settings.kafka_bootstrap, averages).values()) - produced_before
                )
                stack.up(["postgres"], on_event=lambda _m: None)
                fault["end"] = time.monotonic()
            at = start_ms + second * 1_000
            batch = servers.generate(at, at + 1_000)
            send(settings, batch, ips.generate(at, at + 1_000))
            sent += batch.events
            time.sleep(max(0.0, began + second - time.monotonic()))
        fed_until = time.monotonic()
        expected = expected_server_status(sent)
        wanted = sum(messages for messages, _ in expected.values())
        hour_end = start_ms + 3_600_000
        wait_for(
            lambda: stored_messages(settings, stack.secrets, start_ms, hour_end) >= wanted,
            "every event",
            running,
            log,
        )
        caught_up = time.monotonic()
        alive = running.poll() is None
    finally:
        watch.stop.set()
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    stored = stored_server_status(settings, stack.secrets, start_ms, start_ms + 3_600_000)
    counted = {key: stored.get(key, (0, 0))[0] for key in expected}
    lost = sum(max(0, messages - counted[key]) for key, (messages, _) in expected.items())
    doubled = sum(max(0, counted[key] - messages) for key, (messages, _) in expected.items())
    doubled += sum(messages for key, (messages, _) in stored.items() if key not in expected)
    return {
        "events_sent": wanted,
        "events_lost": lost,
        "duplicates": doubled,
        "exact": stored == expected,
        "stalled_s": watch.stalled_s(began, fed_until),
        "recovery_s": round(caught_up - fault.get("end", fed_until), 1),
        "kafka_records_while_postgres_away": fault.get("produced"),
        "driver_alive_throughout": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    console = Console()
    results: dict[str, Any] = {}
    with running_stack(["postgres", "redis", "kafka"]) as (settings, stack):
        admin = admin_client(settings.kafka_bootstrap)
        try:
            ensure_topics(admin, settings.topics)
        finally:
            admin.close()
        work = settings.var_path / "faults"
        for hour, name in enumerate(("reference", "postgres_down_60s")):
            results[name] = run_scenario(settings, stack, name, hour, work)
            console.print(f"{name}: {results[name]}")
    path = write_result(
        "faults",
        {
            "queries": list(QUERIES),
            "feed_s": FEED_S,
            "fault_at_s": FAULT_AT_S,
            "outage_s": OUTAGE_S,
            "scenarios": results,
            "goals": {"events_lost": 0, "duplicates": 0},
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
