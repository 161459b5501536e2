"""Ingestion against the real broker, PostgreSQL and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from generators.ip import IpGenerator
from generators.server import ServerGenerator
from lambdawatch.core import db
from lambdawatch.core.hot_store import PlainRedisStore, ensure_ip_series, redis_client
from lambdawatch.core.kafka_admin import topic_names
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.pipelines.event_feed import feed_batch
from tests.integration.kafka_reading import end_offsets, read_topic

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000
HOUR = 3_600_000


def _ip_generator(settings: Settings, rate: float = 0.0) -> IpGenerator:
    return IpGenerator(tuple(settings.ips.resolved_addresses), 60_000, 5, rate)


@pytest.mark.usefixtures("kafka_topics")
def test_every_ip_lands_in_its_mapped_partition(settings: Settings) -> None:
    batch = _ip_generator(settings).generate(T0, T0 + 5 * 60_000)
    producer = make_producer(settings.kafka_bootstrap, "kafka-python")
    try:
        feed_batch(batch, settings, producer)
    finally:
        producer.close()
    records = read_topic(settings.kafka_bootstrap, settings.topic("ip_events").name)
    ours = [r for r in records if orjson.loads(r.value)["timestamp"].startswith("2026-01-01T00:0")]
    assert len(ours) >= len(batch.events) == settings.ips.count * 5
    for record in ours:
        ip = record.key.decode()
        assert orjson.loads(record.value)["src_ip"] == ip
        assert record.partition == settings.ip_partitions[ip], ip


@pytest.mark.usefixtures("kafka_topics")
def test_both_clients_partition_keys_alike(settings: Settings) -> None:
    """confluent-kafka is told to use murmur2 like kafka-python and Java: same key, same
    partition."""
    topic = settings.topic("server_events").name
    batch = ServerGenerator(servers=40, interval_ms=1000, seed=9).generate(T0, T0 + 2000)
    placed: dict[str, dict[str, int]] = {}
    for client in ("kafka-python", "confluent"):
        producer = make_producer(settings.kafka_bootstrap, client)  # type: ignore[arg-type]
        try:
            feed_batch(batch, settings, producer)
        finally:
            producer.close()
    for record in read_topic(settings.kafka_bootstrap, topic):
        placed.setdefault(record.key.decode(), {})[str(record.partition)] = 1
    assert placed
    assert all(len(partitions) == 1 for partitions in placed.values()), placed


@pytest.mark.usefixtures("kafka_topics")
def test_retrying_an_interval_duplicates_nothing_downstream(
    settings: Settings, local_stack
) -> None:
    interval = (T0 + 10 * HOUR, T0 + 12 * HOUR)
    batch = _ip_generator(settings, rate=0.3).generate(*interval)
    assert batch.labels, "expected injected anomalies in two hours at rate 0.3"
    store = PlainRedisStore(redis_client(settings))
    ensure_ip_series(store, settings)
    key = settings.hot_store.key_template.format(ip=batch.keys[0], feature="bytesin")

    def downstream() -> tuple[int, int, int]:
        with db.connect(settings, local_stack.secrets) as conn:
            labels = conn.execute(
                "SELECT count(*) FROM ground_truth WHERE label_id = ANY(%s)",
                ([label["label_id"] for label in batch.labels],),
            ).fetchone()[0]
        samples = sum(
            len(
                store.range(
                    settings.hot_store.key_template.format(ip=ip, feature="bytesin"), *interval
                )
            )
            for ip in settings.ips.resolved_addresses
        )
        return labels, samples, len(store.range(key, *interval))

    results = []
    for _attempt in range(2):  # the original run and an Airflow-style retry of the same interval
        regenerated = _ip_generator(settings, rate=0.3).generate(*interval)
        producer = make_producer(settings.kafka_bootstrap)
        with db.connect(settings, local_stack.secrets) as conn:
            try:
                feed_batch(regenerated, settings, producer, store, conn)
            finally:
                producer.close()
        results.append(downstream())
    assert results[0] == results[1]
    assert results[0][0] == len(batch.labels)
    assert results[0][1] == len(batch.events)

    records = read_topic(settings.kafka_bootstrap, settings.topic("ip_events").name)
    wanted = {event["event_id"]: orjson.dumps(event) for event in batch.events}
    copies: dict[str, set[bytes]] = {}
    for record in records:
        event_id = orjson.loads(record.value)["event_id"]
        if event_id in wanted:
            copies.setdefault(event_id, set()).add(record.value)
    assert set(copies) == set(wanted)
    # A retry re-sends byte-identical events: idempotent sinks drop them by event_id.
    assert all(values == {wanted[event_id]} for event_id, values in copies.items())


@pytest.mark.usefixtures("kafka_topics")
def test_replay_of_a_csv_with_bad_rows(settings: Settings, tmp_path: Path) -> None:
    csv_path = tmp_path / "edge-router-7.csv"
    csv_path.write_text(
        "timestamp,latency_ms\n"
        "2026-02-01T00:00:02Z,12.5\n"
        "2026-02-01T00:00:01Z,11.0\n"
        "2026-02-01T00:00:03Z,not-a-number\n"
        "2026-02-01T00:00:04Z\n"
        "2026-02-01T00:00:05Z,13.0\n"
    )
    topic = settings.topic("metrics").name
    cli = [sys.executable, "-m", "lambdawatch.ops.cli", "replay", str(csv_path), "--max-rate"]
    before = end_offsets(settings.kafka_bootstrap, topic)
    stopped = subprocess.run(
        [*cli, "--on-error", "stop"], capture_output=True, text=True, check=False
    )
    assert stopped.returncode == 1
    assert "line 4" in stopped.stderr
    assert end_offsets(settings.kafka_bootstrap, topic) == before  # nothing was sent

    skipped = subprocess.run(
        [*cli, "--on-error", "skip"], capture_output=True, text=True, check=False
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 2 malformed rows" in skipped.stdout
    sent = [
        json.loads(r.value)
        for r in read_topic(settings.kafka_bootstrap, topic)
        if r.key == b"edge-router-7"
    ]
    assert [(e["timestamp"], e["value"]) for e in sent] == [
        ("2026-02-01T00:00:01.000Z", 11.0),
        ("2026-02-01T00:00:02.000Z", 12.5),
        ("2026-02-01T00:00:05.000Z", 13.0),
    ]
    assert {e["metric"] for e in sent} == {"latency_ms"}


@pytest.mark.usefixtures("kafka_topics")
def test_replay_to_a_missing_topic_names_it_and_the_topics_there_are(
    settings: Settings, tmp_path: Path
) -> None:
    csv_path = tmp_path / "edge-router-8.csv"
    csv_path.write_text("timestamp,latency_ms\n2026-02-01T00:00:02Z,12.5\n")
    run = subprocess.run(
        [sys.executable, "-m", "lambdawatch.ops.cli", "replay", str(csv_path), "--max-rate",
         "--topic", "no-such-topic"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert "topic 'no-such-topic' does not exist" in run.stderr
    assert settings.topic("metrics").name in run.stderr  # the topics that do
    assert "Traceback" not in run.stderr
    assert "no-such-topic" not in topic_names(settings.kafka_bootstrap)  # nor was it created


@pytest.mark.usefixtures("kafka_topics")
def test_feed_command_runs_a_generator_live(settings: Settings) -> None:
    topic = settings.topic("weather_events").name
    before = sum(end_offsets(settings.kafka_bootstrap, topic).values())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdawatch.ops.cli",
            "feed",
            "--source",
            "weather",
            "--rate",
            "120",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    after = sum(end_offsets(settings.kafka_bootstrap, topic).values())
    assert after - before >= 120  # ~3 s at 120 ev/s, less the first tick
