"""Getting generated events into Kafka, the hot store and the ground-truth table.

Producers sit behind a small interface so the same ingestion code runs with kafka-python (the
platform's client) or confluent-kafka (librdkafka, measured in ``bench/ingest.py``). Both are
configured for durability (``acks=all``, idempotence, retries) and throughput (linger,
large batches, lz4). Both partition keyed records with murmur2 like the Java client, and IP
events are sent to their partition from config.json's IP→partition map.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson
from confluent_kafka import Producer
from kafka import KafkaProducer
from psycopg.types.json import Jsonb

from lambdawatch.events import SCHEMAS
from lambdawatch.hot_store import HotStore, ip_event_samples
from lambdawatch.settings import Settings

log = logging.getLogger(__name__)
ClientName = Literal["kafka-python", "confluent"]
POLL_EVERY = 1000


class EventBatch(Protocol):
    """What a generator hands over: events with their Kafka keys, and anomaly labels."""

    source: str
    events: list[dict[str, Any]]
    keys: list[str]

    @property
    def labels(self) -> list[dict[str, Any]]: ...


class EventProducer(Protocol):
    client: str

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None: ...

    def send_many(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]]
    ) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    @property
    def failures(self) -> int: ...


class KafkaPythonProducer:
    """kafka-python, tuned: the pure-Python client's throughput lives in batching."""

    client = "kafka-python"

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "enable_idempotence": True,
            "retries": 2**31 - 1,
            "max_in_flight_requests_per_connection": 5,
            "linger_ms": 20,
            "batch_size": 512 * 1024,
            "compression_type": "lz4",
            "client_id": "lambdawatch-producer",
        }
        config.update(overrides)
        self._producer = KafkaProducer(**config)
        self._failures = 0

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        log.error("delivery failed: %s", exc)

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        self.send_many(topic, [(key, value, partition)])

    def send_many(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]]
    ) -> int:
        send, failed, count = self._producer.send, self._failed, 0
        for key, value, partition in records:
            send(topic, value=value, key=key, partition=partition).add_errback(failed)
            count += 1
        return count

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()

    @property
    def failures(self) -> int:
        return self._failures


class ConfluentProducer:
    """confluent-kafka (librdkafka): the native client, for when Python batching is the limit."""

    client = "confluent"

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1024 * 1024,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",  # same key → partition mapping as the Java client
            "delivery.report.only.error": True,  # a Python callback per failure, not per message
            "client.id": "lambdawatch-producer",
        }
        config.update(overrides)
        self._producer = Producer(config)
        self._failures = 0

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._failures += 1
            log.error("delivery failed: %s", error)

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        self.send_many(topic, [(key, value, partition)])

    def send_many(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]]
    ) -> int:
        """The hot path: serve delivery reports every ``POLL_EVERY`` messages, not each one."""
        produce, poll, delivered = self._producer.produce, self._producer.poll, self._delivered
        count = 0
        for key, value, partition in records:
            while True:
                try:
                    if partition is None:
                        produce(topic, value, key, on_delivery=delivered)
                    else:
                        produce(topic, value, key, partition, on_delivery=delivered)
                    break
                except BufferError:
                    poll(0.05)  # local queue full: serve delivery reports, then retry
            count += 1
            if count % POLL_EVERY == 0:
                poll(0)
        poll(0)
        return count

    def flush(self) -> None:
        remaining = self._producer.flush(60)
        if remaining:
            raise RuntimeError(f"{remaining} messages still undelivered after 60 s")

    def close(self) -> None:
        self.flush()

    @property
    def failures(self) -> int:
        return self._failures


def make_producer(
    bootstrap: str, client: ClientName | None = None, **overrides: Any
) -> EventProducer:
    chosen = client or os.environ.get("LAMBDAWATCH_KAFKA_CLIENT", "kafka-python")
    if chosen == "confluent":
        return ConfluentProducer(bootstrap, **overrides)
    if chosen == "kafka-python":
        return KafkaPythonProducer(bootstrap, **overrides)
    raise ValueError(f"unknown Kafka client {chosen!r}; expected kafka-python or confluent")


@dataclass
class FeedCounts:
    """What one feed step sent where."""

    events: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    hot_samples: int = 0

    def merge(self, other: FeedCounts) -> None:
        for source, count in other.events.items():
            self.events[source] = self.events.get(source, 0) + count
        self.labels += other.labels
        self.hot_samples += other.hot_samples


def publish_events(
    producer: EventProducer,
    settings: Settings,
    source: str,
    events: list[dict[str, Any]],
    keys: list[str],
) -> int:
    """Serialise and send ``events``; IP events go to their mapped partition."""
    schema = SCHEMAS[source]
    topic = settings.topic(schema.topic_role).name
    partitions = settings.ip_partitions if source == "ip" else {}
    dumps, partition_of = orjson.dumps, partitions.get
    return producer.send_many(
        topic,
        (
            (key.encode(), dumps(event), partition_of(key))
            for event, key in zip(events, keys, strict=True)
        ),
    )


def publish_labels(
    producer: EventProducer, settings: Settings, labels: Iterable[dict[str, Any]]
) -> int:
    topic = settings.topic("ground_truth").name
    return producer.send_many(
        topic, ((label["label_id"].encode(), orjson.dumps(label), None) for label in labels)
    )


GROUND_TRUTH_INSERT = """
INSERT INTO ground_truth (label_id, source, entity, kind, start_ts, end_ts, details)
SELECT label_id, source, entity, kind, start_ts, end_ts, coalesce(details, '{}'::jsonb)
FROM jsonb_to_recordset(%s) AS t(
    label_id text, source text, entity text, kind text,
    start_ts timestamptz, end_ts timestamptz, details jsonb)
ON CONFLICT (label_id) DO NOTHING
"""


def record_ground_truth(conn: Any, labels: list[dict[str, Any]]) -> int:
    """Store labels idempotently (stable label ids) in one statement; return how many were new."""
    if not labels:
        return 0
    with conn.cursor() as cursor:
        cursor.execute(GROUND_TRUTH_INSERT, (Jsonb(labels),))
        inserted = cursor.rowcount
    conn.commit()
    return int(inserted)


def feed_batch(
    batch: EventBatch,
    settings: Settings,
    producer: EventProducer,
    hot_store: HotStore | None = None,
    ground_truth_conn: Any = None,
) -> FeedCounts:
    """Send one generated batch everywhere it belongs; safe to repeat (idempotent sinks)."""
    counts = FeedCounts()
    counts.events[batch.source] = publish_events(
        producer, settings, batch.source, batch.events, batch.keys
    )
    labels = batch.labels
    counts.labels = publish_labels(producer, settings, labels)
    if hot_store is not None and batch.source == "ip":
        counts.hot_samples = hot_store.add(ip_event_samples(settings, batch.events))
    producer.flush()
    if producer.failures:
        raise RuntimeError(f"{producer.failures} Kafka deliveries failed; see the log")
    if ground_truth_conn is not None:
        record_ground_truth(ground_truth_conn, labels)
    return counts
