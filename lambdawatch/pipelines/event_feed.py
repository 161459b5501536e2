"""feed_events: the events of one data interval, the same ones however often it is re-run.

Generators are pure functions of (seed, interval), so a retried or cleared task re-sends
identical events with identical ids: the hot store keeps one sample per timestamp, ground truth
is keyed by label id and the speed layer drops ids it has already seen, so nothing downstream
is duplicated. Cron-like feeders that generate "the next N events from now" cannot do that.

The one feed path: ``feed_batch`` sends a generated batch to Kafka, the hot store (IP events)
and ground truth; the DAG's interval feed, the live feed (``live_feed``) and the demo all use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from psycopg.types.json import Jsonb

from generators.registry import make_generator
from lambdawatch.core import db
from lambdawatch.core.events import SCHEMAS
from lambdawatch.core.hot_store import HotStore, ip_event_samples, open_hot_store, redis_client
from lambdawatch.core.producers import EventProducer, make_producer
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings


class EventBatch(Protocol):
    """What a generator hands over: events with their Kafka keys, and anomaly labels."""

    source: str
    events: list[dict[str, Any]]
    keys: list[str]

    @property
    def labels(self) -> list[dict[str, Any]]: ...


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


def interval_ms(start: datetime, end: datetime) -> tuple[int, int]:
    """A data interval as epoch milliseconds; refuses naive or empty intervals."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("data interval bounds must be timezone-aware")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if end_ms <= start_ms:
        raise ValueError(f"empty data interval {start.isoformat()} .. {end.isoformat()}")
    return start_ms, end_ms


def feed_interval(
    settings: Settings,
    source: str,
    start: datetime,
    end: datetime,
    producer: EventProducer | None = None,
    hot_store: HotStore | None = None,
    secrets: Secrets | None = None,
) -> dict[str, int]:
    """Generate ``source``'s events for [start, end) and send them to Kafka, the hot store
    (IP events) and ground truth; returns the counts."""
    start_ms, end_ms = interval_ms(start, end)
    batch = make_generator(source, settings).generate(start_ms, end_ms)
    own_producer = producer is None
    producer = producer or make_producer(settings.kafka_bootstrap)
    client = None
    if hot_store is None and source == "ip":
        client = redis_client(settings)
        hot_store = open_hot_store(client, settings)
    try:
        with db.connect(settings, secrets) as conn:
            counts = feed_batch(batch, settings, producer, hot_store, conn)
    finally:
        if own_producer:
            producer.close()
        if client is not None:
            client.close()
    return {
        "events": sum(counts.events.values()),
        "labels": counts.labels,
        "hot_samples": counts.hot_samples,
    }
