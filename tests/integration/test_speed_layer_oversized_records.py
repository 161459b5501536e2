"""One bad record must not stop the speed layer: the running layer meets oversized records
and records it cannot write, sets them aside, and goes on.

The speed layer runs continuously from the topics' ends (its own checkpoints). Then, to every
event topic: a 600 KB record that is not JSON and a 5 MB one (the event topics accept 10 MB in
config.json); valid events that PostgreSQL refuses (a NUL character in a text
field); then normal events. Every query must go on completing micro-batches past all of them,
the dead letters must carry the bounded bytes, size and hash, and the normal events must land.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from generators.ip import IpGenerator
from generators.server import ServerGenerator
from generators.weather import WeatherGenerator
from lambdawatch.core import db
from lambdawatch.core.catalog import QUERY_VERSIONS, SPEED_LAYER_QUERIES
from lambdawatch.core.events import event_id
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.event_feed import feed_batch
from tests.integration.kafka_reading import end_offsets, read_topic
from tests.integration.speed_layer_process import speed_layer_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = 1_767_571_200_000  # 2026-01-05T00:00:00Z: this module's own interval, after the
# modules before it (a later event time first would hold their windows behind the watermark)
EVENT_ROLES = ("ip_events", "server_events", "cdn_events", "weather_events", "metrics")
SIZES = (600_000, 5_000_000)
WAIT_S = 900  # a give-up, not a performance bound: first start on a busy 2-core machine
NUL_CITY = "Nul\u0000ville"  # valid JSON and a valid event, but no PostgreSQL text
NUL_DC = "dc\u0000nul"


def _not_json(size: int, salt: str) -> bytes:
    """``size`` bytes that are no JSON, different per topic (so each hash is its own)."""
    block = hashlib.sha256(salt.encode()).digest() * 32
    return (b"<" + block * (size // len(block) + 1))[:size]


def _committed_offsets(checkpoint: Path) -> dict[str, dict[str, int]] | None:
    """The Kafka offsets a query's last completed micro-batch read up to."""
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")]
    if not commits:
        return None
    offsets: dict[str, dict[str, int]] = {}
    for line in (checkpoint / "offsets" / str(max(commits))).read_text().splitlines()[2:]:
        document = json.loads(line) if line.startswith("{") else None
        if isinstance(document, dict):
            offsets.update(document)
    return offsets


def _lagging(checkpoints: Path, ends: dict[str, dict[int, int]]) -> list[str]:
    """Queries whose last completed micro-batch has not reached ``ends`` on a topic they read."""
    behind = []
    for name in SPEED_LAYER_QUERIES:
        committed = _committed_offsets(checkpoints / f"{name}-v{QUERY_VERSIONS[name]}")
        if committed is None:
            behind.append(f"{name} (no micro-batch completed)")
            continue
        for topic, partitions in committed.items():
            for partition, end in ends.get(topic, {}).items():
                if int(partitions.get(str(partition), -1)) < end:
                    behind.append(f"{name} ({topic}[{partition}])")
    return behind


def _wait(condition: Any, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"speed layer exited ({process.returncode}):\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}: {condition.__doc__ or ''}")
        time.sleep(2)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _metric_events() -> list[dict[str, Any]]:
    return [
        {
            "event_id": event_id("metric", ("guard-host", "load"), START + minute * 60_000),
            "entity": "guard-host",
            "metric": "load",
            "value": 10.0 + minute,
            "timestamp": datetime.fromtimestamp(
                (START + minute * 60_000) / 1000, tz=UTC
            ).isoformat(),
        }
        for minute in range(3)
    ]


@pytest.fixture(scope="module")
def after_bad_records(
    local_stack: LocalStack,
    settings: Settings,
    kafka_topics: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("bad-records")
    event_topic_limit = min(settings.topic(role).max_message_bytes for role in EVENT_ROLES)
    assert event_topic_limit > max(SIZES)  # the shipped limits take the large records

    checkpoints, log = work / "checkpoints", work / "speed-layer.log"
    command = speed_layer_command(",".join(SPEED_LAYER_QUERIES), checkpoints)
    with log.open("w") as output:
        running = subprocess.Popen(
            [*command, "--starting-offsets", "latest"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    progress = settings.var_path / "run" / "speed_layer.json"

    def every_query_active() -> bool:
        """every query reports a micro-batch or an idle trigger"""
        try:
            document = json.loads(progress.read_text())
        except (OSError, ValueError):
            return False
        queries = document.get("queries", {}) if document.get("pid") == running.pid else {}
        return all(queries.get(n, {}).get("status") == "active" for n in SPEED_LAYER_QUERIES)

    try:
        _wait(every_query_active, "every query to start", running, log)

        bad: dict[tuple[str, int, int], bytes] = {}
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            max_request_size=event_topic_limit,
            acks="all",
        )
        try:
            for role in EVENT_ROLES:
                topic = settings.topic(role).name
                for size in SIZES:
                    record = _not_json(size, f"{topic}-{size}")
                    sent = producer.send(topic, key=b"bad", value=record).get(timeout=60)
                    bad[(topic, sent.partition, sent.offset)] = record
        finally:
            producer.close()

        g = settings.generators
        server = ServerGenerator(g.servers, g.server_interval_ms, seed=9, anomaly_rate=0.0)
        servers = server.generate(START, START + 2_000)
        weather = WeatherGenerator(60_000, seed=9).generate(START, START + 60_000)
        ips = tuple(settings.ips.resolved_addresses)[:10]
        ip_batch = IpGenerator(ips, 60_000, seed=9).generate(START, START + 60_000)
        unwritable = {
            "weather_events": {**weather.events[0], "event_id": "guard-nul", "city": NUL_CITY},
            "server_events": {**servers.events[0], "event_id": "guard-nul", "datacenter": NUL_DC},
        }
        sender = make_producer(settings.kafka_bootstrap, "confluent")
        try:
            for role, event in unwritable.items():
                sender.send(settings.topic(role).name, b"nul", orjson.dumps(event), None)
            for batch in (servers, weather, ip_batch):
                feed_batch(batch, settings, sender)
            sender.send_many(
                settings.topic("metrics").name,
                ((b"guard-host", orjson.dumps(e), None) for e in _metric_events()),
            )
            sender.flush()
        finally:
            sender.close()

        def caught_up() -> bool:
            """every query's last completed micro-batch reaches the end of what it reads"""
            cpu_status = settings.topic("cpu_status").name
            roles = (*EVENT_ROLES, "cpu_status")
            ends = {
                name: end_offsets(settings.kafka_bootstrap, name)
                for name in (settings.topic(r).name for r in roles)
            }
            return cpu_status in ends and not _lagging(checkpoints, ends)

        _wait(caught_up, "every query to pass the bad records", running, log)
        time.sleep(5)  # a few more triggers: still running?
        assert running.poll() is None, _tail(log)
        yield {
            "bad": bad,
            "servers": servers.events,
            "weather": weather.events,
            "ip": ip_batch.events,
            "progress": json.loads(progress.read_text()),
            "log": log.read_text(errors="replace"),
        }
    finally:
        os.killpg(running.pid, signal.SIGTERM)
        try:
            running.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait()


def _dead_letters(settings: Settings) -> list[dict[str, Any]]:
    topic = settings.topic("dead_letters").name
    return [json.loads(r.value) for r in read_topic(settings.kafka_bootstrap, topic)]


def test_oversized_records_become_bounded_dead_letters(
    after_bad_records: dict[str, Any], settings: Settings
) -> None:
    limit = settings.dead_letters.max_raw_bytes
    letters = {
        (x["source_topic"], x["partition"], x["offset"]): x
        for x in _dead_letters(settings)
        if x["source_topic"] is not None
    }
    for coordinates, record in after_bad_records["bad"].items():
        letter = letters.get(coordinates)
        assert letter is not None, f"no dead letter for {coordinates}"
        assert letter["reason"] == f"oversized: {len(record)} bytes"
        assert letter["raw_bytes"] == len(record)
        assert letter["raw_sha256"] == hashlib.sha256(record).hexdigest()
        assert letter["raw_truncated"] is True
        assert base64.b64decode(letter["raw_base64"], validate=True) == record[:limit]


def test_every_query_went_on_without_failing(after_bad_records: dict[str, Any]) -> None:
    queries = after_bad_records["progress"]["queries"]
    assert {name: queries[name]["status"] for name in SPEED_LAYER_QUERIES} == dict.fromkeys(
        SPEED_LAYER_QUERIES, "active"
    )
    assert "RecordTooLargeException" not in after_bad_records["log"]


def test_rows_postgresql_refuses_are_dead_lettered_and_reported(
    after_bad_records: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    unwritable = [x for x in _dead_letters(settings) if x["reason"].startswith("unwritable:")]
    rows = {x["query"]: json.loads(base64.b64decode(x["raw_base64"])) for x in unwritable}
    assert rows["weather_derived"]["city"] == NUL_CITY
    assert rows["server_status"]["datacenter"] == NUL_DC
    set_aside = after_bad_records["progress"]["set_aside"]
    assert {"weather_derived", "server_status"} <= set(set_aside)
    assert set_aside["weather_derived"]["disposition"] == "dead_letters"
    with db.connect(settings, local_stack.secrets) as conn:
        recorded = conn.execute(
            "SELECT query, disposition, records FROM speed_layer_errors "
            "WHERE query IN ('weather_derived', 'server_status')"
        ).fetchall()
    assert {query for query, _disposition, _records in recorded} == {
        "weather_derived",
        "server_status",
    }


def test_normal_events_after_them_are_processed(
    after_bad_records: dict[str, Any], local_stack: LocalStack, settings: Settings
) -> None:
    interval = {"start": START, "end": START + 60_000}
    in_interval = "{c} >= to_timestamp(%(start)s / 1000.0) AND {c} < to_timestamp(%(end)s / 1000.0)"
    with db.connect(settings, local_stack.secrets) as conn:
        weather = conn.execute(
            f"SELECT count(*) FROM rt_weather WHERE {in_interval.format(c='ts')}", interval
        ).fetchone()
        messages = conn.execute(
            "SELECT coalesce(sum(messages), 0) FROM rt_server_status "
            f"WHERE {in_interval.format(c='window_start')}",
            interval,
        ).fetchone()
        ip_windows = conn.execute(
            "SELECT count(DISTINCT src_ip) FROM rt_ip_windows "
            "WHERE window_start <= to_timestamp(%(start)s / 1000.0) "
            "AND window_end > to_timestamp(%(start)s / 1000.0)",
            interval,
        ).fetchone()
    assert weather[0] == len(after_bad_records["weather"])
    assert messages[0] == len(after_bad_records["servers"])
    assert ip_windows[0] >= len({e["src_ip"] for e in after_bad_records["ip"]})
    scores = read_topic(settings.kafka_bootstrap, settings.topic("metric_scores").name)
    assert sum(json.loads(r.value)["entity"] == "guard-host" for r in scores) == 3
