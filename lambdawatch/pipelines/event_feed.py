"""feed_events: the events of one data interval, the same ones however often it is re-run.

Generators are pure functions of (seed, interval), so a retried or cleared task re-sends
identical events with identical ids: the hot store keeps one sample per timestamp, ground truth
is keyed by label id and the speed layer drops ids it has already seen, so nothing downstream
is duplicated. Cron-like feeders that generate "the next N events from now" cannot do that.
"""

from __future__ import annotations

from datetime import datetime

from generators.registry import make_generator
from lambdawatch import db
from lambdawatch.hot_store import HotStore, open_hot_store, redis_client
from lambdawatch.ingest import EventProducer, feed_batch, make_producer
from lambdawatch.secrets import Secrets
from lambdawatch.settings import Settings


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
