"""Faults under a live feed: what is lost or doubled, how long each query stalls, how long
recovery takes.

Each scenario starts the speed layer as its own process on two queries, one Kafka → Kafka
(``ip_averages``) and one Kafka → PostgreSQL (``server_status``), with fresh checkpoints, and
feeds them live: every second of wall time, one second of generated server and IP events (its
own interval, so scenarios never mix). Scenarios:

- ``reference``: nothing breaks; what the same feed costs on this machine in this run.
- ``postgres_down_60s``: PostgreSQL is stopped for 60 s in the middle of the feed.
- ``fuzzed_100k``: for 60 s in the middle of the feed, 100,000 hostile records
  (``tests.fuzz_records``: random bytes, deep nesting, huge numbers, wrong types, control
  characters, cut-off, mutated and oversized events) are sent to the server-events topic beside
  the live events, with the ``dead_letters`` query running too. Each is found again by its
  partition and offset: the dead letters must be exactly the records a batch ``parse_events``
  of the same offsets rejects, once each, with a reason, the original size, and the raw bytes
  cut to ``dead_letters.max_raw_bytes``; the queries must neither restart nor stall.

Per scenario: ``events_lost`` and ``duplicates`` (``rt_server_status`` against a pandas
reference computed from the events sent), ``stalled_s`` per query (the longest wall time
between two completed micro-batches while events were arriving, from the layer's progress
file), ``recovery_s`` (from the fault's end until the table holds every event; for the
reference, from the last send) and the Kafka → Kafka query's output while the database was
away. On the cluster profile (three Kafka nodes at RF 3, the speed layer on a standalone
master with two workers), ``cluster_reference`` and one broker (``broker_killed_60s``) or one
worker (``worker_killed_60s``) killed with SIGKILL at 45 s and brought back 60 s later. Lost
offsets are an integration test (``test_lost_records``).

Goals (issue 19): events_lost 0, duplicates 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer
from rich.console import Console

from bench.common import running_stack, write_result
from generators.ip import IpGenerator
from generators.server import ServerGenerator
from lambdawatch.core.events import SERVER_SCHEMA
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.settings import DEAD_LETTER_ENVELOPE_BYTES, Settings
from tests.fuzz_records import fuzzed_record
from tests.integration.kafka_reading import end_offsets, read_topic
from tests.integration.speed_layer_process import (
    expected_server_status,
    send,
    speed_layer_command,
    stored_messages,
    stored_server_status,
    wait_for,
)

QUERIES = ("ip_averages", "server_status")
SCENARIOS = {  # name → the speed-layer queries it runs
    "reference": QUERIES,
    "postgres_down_60s": QUERIES,
    "fuzzed_100k": (*QUERIES, "dead_letters"),
    "cluster_reference": QUERIES,
    "broker_killed_60s": QUERIES,
    "worker_killed_60s": QUERIES,
}
# What each fault takes down for OUTAGE_S: PostgreSQL is stopped; a broker or a worker is
# killed with SIGKILL (and kept down: supervisord would restart it at once).
FAULTS = {
    "postgres_down_60s": ("postgres",),
    "broker_killed_60s": ("kafka-2",),
    "worker_killed_60s": ("spark-worker-1",),
}
PROFILE_SCENARIOS = {
    "single": ("reference", "postgres_down_60s", "fuzzed_100k"),
    "cluster": ("cluster_reference", "broker_killed_60s", "worker_killed_60s"),
}
FEED_S = 150
FAULT_AT_S = 45
OUTAGE_S = 60
T0 = 1_767_830_400_000  # 2026-01-08T00:00:00Z; each scenario takes its own hour after it
FUZZ_RECORDS = 100_000
FUZZ_S = 60  # sent over this many seconds of the feed, from FAULT_AT_S
FUZZ_DATACENTER = "fuzz-dc"  # what a fuzzed record that parses is counted under, apart


class FuzzFeed:
    """Hostile records sent to the server-events topic during the feed, each remembered with
    the partition and offset Kafka gave it, to find its dead letter afterwards."""

    def __init__(self, settings: Settings, seed: int) -> None:
        self.topic = settings.topic("server_events").name
        self.rng = random.Random(seed)
        self.sizes: list[int] = []
        self.at: dict[tuple[int, int], int] = {}  # (partition, offset) → record index
        self.failed = 0
        self.producer = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True}
        )

    def send(self, count: int, at_ms: int) -> None:
        """``count`` records built on a valid event dated ``at_ms`` (the live feed's second)."""
        from tests.unit.spark_apps.frames import server_event

        stamp = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        base = {"timestamp": stamp, "datacenter": FUZZ_DATACENTER, "server_id": "fuzz-srv"}

        def event(**overrides: object) -> dict[str, object]:
            return server_event(**{**base, **overrides})

        for _ in range(count):
            record = fuzzed_record(self.rng, event)
            index = len(self.sizes)
            self.sizes.append(len(record))
            while True:
                try:
                    self.producer.produce(
                        self.topic, record, on_delivery=partial(self._delivered, index)
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    self.producer.poll(0.1)
            self.producer.poll(0)

    def _delivered(self, index: int, error: Any, message: Message) -> None:
        if error is not None:
            self.failed += 1
        else:
            self.at[(message.partition(), message.offset())] = index

    def flush(self) -> None:
        self.producer.flush(120)


def rejected_by_batch_parse(settings: Settings, fuzz: FuzzFeed) -> set[tuple[int, int]]:
    """The fuzzed records a batch ``parse_events`` rejects, read back from Kafka: what the
    live layer must have dead-lettered."""
    from pyspark.sql.functions import broadcast

    from spark_apps.session import build_session
    from spark_apps.transforms.parsing import parse_events

    spark = build_session("lambdawatch-bench-fuzz", settings, master="local[2]")
    try:
        raw = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
            .option("subscribe", fuzz.topic)
            .load()
        )
        wanted = spark.createDataFrame(list(fuzz.at), "partition int, offset long")
        mine = raw.join(broadcast(wanted), ["partition", "offset"])
        _events, dead = parse_events(
            mine, SERVER_SCHEMA, "server_events",
            max_event_bytes=settings.dead_letters.max_raw_bytes,
        )  # fmt: skip
        return {(r.partition, r.offset) for r in dead.select("partition", "offset").collect()}
    finally:
        spark.stop()


def judge_fuzz(settings: Settings, fuzz: FuzzFeed, rejected: set[tuple[int, int]]) -> dict:
    """The live dead letters of the fuzzed records against the batch parse: each rejected
    record once, with a reason, its size, and its raw bytes cut to the configured limit."""
    limit = settings.dead_letters.max_raw_bytes
    bound = 4 * (limit + 2) // 3 + DEAD_LETTER_ENVELOPE_BYTES
    letters: list[tuple[tuple[int, int], dict[str, Any], int]] = []
    for record in read_topic(settings.kafka_bootstrap, settings.topic("dead_letters").name, 300):
        letter = json.loads(record.value)
        where = (letter.get("partition"), letter.get("offset"))
        if letter.get("source_topic") == fuzz.topic and where in fuzz.at:
            letters.append((where, letter, len(record.value)))
    found = Counter(where for where, _, _ in letters)
    early = {where for where, letter, _ in letters if not letter["reason"].startswith("late:")}
    return {
        "records_sent": len(fuzz.sizes),
        "records_not_delivered": fuzz.failed,
        "rejected_by_batch_parse": len(rejected),
        "dead_letters": len(letters),
        "dead_letters_missing": len(rejected - early),
        "dead_letters_unexpected": len(early - rejected),
        "dead_letters_doubled": sum(n - 1 for n in found.values() if n > 1),
        "late_dead_letters": len(letters) - sum(1 for w, _, _ in letters if w in early),
        "without_reason": sum(1 for _, letter, _ in letters if not letter["reason"]),
        "size_mismatches": sum(
            1 for w, letter, _ in letters if letter["raw_bytes"] != fuzz.sizes[fuzz.at[w]]
        ),
        "truncated": sum(1 for _, letter, _ in letters if letter["raw_truncated"]),
        "largest_record_bytes": max(fuzz.sizes, default=0),
        "largest_dead_letter_bytes": max((size for _, _, size in letters), default=0),
        "dead_letter_bound_bytes": bound,
        "reasons": dict(
            Counter(letter["reason"].split(":")[0] for _, letter, _ in letters).most_common(12)
        ),
    }


class ProgressWatch(threading.Thread):
    """Polls the speed layer's progress file: when each query's micro-batch id moved."""

    def __init__(self, path: Path, queries: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.path, self.stop = path, threading.Event()
        self.moves: dict[str, list[float]] = {name: [] for name in queries}
        self.last: dict[str, Any] = {}
        self.restarts: Counter[str] = Counter()  # times a query was seen failing
        self.status: dict[str, Any] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                state = json.loads(self.path.read_text()).get("queries", {})
            except (OSError, ValueError):
                state = {}
            now = time.monotonic()
            for name in self.moves:
                status = state.get(name, {}).get("status")
                if status != self.status.get(name) and status in ("restarting", "terminated"):
                    self.restarts[name] += 1
                self.status[name] = status
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
    queries = SCENARIOS[name]
    fuzz = FuzzFeed(settings, seed=hour) if name == "fuzzed_100k" else None
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
            speed_layer_command(",".join(queries), checkpoints),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    watch = ProgressWatch(progress, queries)
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
            if fuzz is not None and FAULT_AT_S <= second < FAULT_AT_S + FUZZ_S:
                due = FUZZ_RECORDS * (second - FAULT_AT_S + 1) // FUZZ_S - len(fuzz.sizes)
                fuzz.send(due, start_ms + second * 1_000)
            if name in FAULTS and second == FAULT_AT_S:
                take_down(stack, FAULTS[name])
                fault["start"] = time.monotonic()
                produced_before = sum(end_offsets(settings.kafka_bootstrap, averages).values())
            if "start" in fault and "end" not in fault and second == FAULT_AT_S + OUTAGE_S:
                fault["produced"] = (
                    sum(end_offsets(settings.kafka_bootstrap, averages).values()) - produced_before
                )
                stack.up(list(FAULTS[name]), on_event=lambda _m: None)
                fault["end"] = time.monotonic()
            at = start_ms + second * 1_000
            batch = servers.generate(at, at + 1_000)
            send(settings, batch, ips.generate(at, at + 1_000))
            sent += batch.events
            time.sleep(max(0.0, began + second - time.monotonic()))
        fed_until = time.monotonic()
        if fuzz is not None:
            fuzz.flush()
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
        fuzzed = None if fuzz is None else wait_for_dead_letters(settings, fuzz, running, log)
        alive = running.poll() is None
    finally:
        watch.stop.set()
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()
    stored = stored_server_status(settings, stack.secrets, start_ms, start_ms + 3_600_000)
    live_datacenters = {key[1] for key in expected}
    fuzz_counted = sum(m for key, (m, _) in stored.items() if key[1] not in live_datacenters)
    stored = {key: value for key, value in stored.items() if key[1] in live_datacenters}
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
        "kafka_records_during_fault": fault.get("produced"),
        "driver_alive_throughout": alive,
        "query_failures": dict(watch.restarts),
        **(
            {}
            if fuzzed is None
            else {"fuzzed": {**fuzzed, "valid_events_counted_by_server_status": fuzz_counted}}
        ),
    }


def wait_for_dead_letters(
    settings: Settings, fuzz: FuzzFeed, running: subprocess.Popen, log: Path
) -> dict[str, Any]:
    """Judge the fuzzed records' dead letters once the batch parse's rejects are all there, or
    once their count stops growing (a missing one is then reported, not waited on forever)."""
    rejected = rejected_by_batch_parse(settings, fuzz)
    deadline = time.monotonic() + 600
    previous = -1
    while True:
        judged = judge_fuzz(settings, fuzz, rejected)
        settled = judged["dead_letters"] == previous or time.monotonic() > deadline
        if judged["dead_letters_missing"] == 0 or settled or running.poll() is not None:
            return judged
        previous = judged["dead_letters"]
        time.sleep(20)


def take_down(stack: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if name != "postgres":
            os.kill(int(stack.supervisor.info(name)["pid"]), signal.SIGKILL)
        stack.supervisor.stop([name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    console = Console()
    results: dict[str, Any] = {}
    for profile, names in PROFILE_SCENARIOS.items():
        components = ["postgres", "redis", "kafka"]
        with running_stack(components, profile=profile) as (settings, stack):
            admin = admin_client(settings.kafka_bootstrap)
            try:
                ensure_topics(admin, settings.kafka_topics)
            finally:
                admin.close()
            work = settings.var_path / "faults"
            for name in names:
                hour = list(SCENARIOS).index(name)
                results[name] = {
                    "profile": profile,
                    **run_scenario(settings, stack, name, hour, work),
                }
                console.print(f"{name}: {results[name]}")
    path = write_result(
        "faults",
        {
            "queries": {name: list(queries) for name, queries in SCENARIOS.items()},
            "feed_s": FEED_S,
            "fuzz_records": FUZZ_RECORDS,
            "fuzz_s": FUZZ_S,
            "fault_at_s": FAULT_AT_S,
            "outage_s": OUTAGE_S,
            "scenarios": results,
            "goals": {
                "events_lost": 0,
                "duplicates": 0,
                "query_failures": 0,
                "fuzzed": {"dead_letters_missing": 0, "dead_letters_doubled": 0},
            },
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
