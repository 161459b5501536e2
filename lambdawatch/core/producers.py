"""Kafka producers behind one small interface.

The same publishing code runs with kafka-python (the platform's client) or confluent-kafka
(librdkafka, measured in ``bench/ingest.py``). Both are configured for durability
(``acks=all``, idempotence, retries) and throughput (linger, large batches, lz4), and both
partition keyed records with murmur2 like the Java client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Literal, Protocol

from confluent_kafka import Producer
from kafka import KafkaProducer

log = logging.getLogger(__name__)
ClientName = Literal["kafka-python", "confluent"]
POLL_EVERY = 1000


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
    bootstrap: str,
    client: ClientName | None = None,
    buffer_mb: int | None = None,
    **overrides: Any,
) -> EventProducer:
    """A tuned producer; ``buffer_mb`` caps what confluent's holds unsent (librdkafka's local
    queue may otherwise grow to 1 GB when the caller outpaces the broker). kafka-python has no
    such setting: its sends are slower than a caller's own work, so its backlog stays small."""
    chosen = client or os.environ.get("LAMBDAWATCH_KAFKA_CLIENT", "kafka-python")
    if chosen == "confluent":
        if buffer_mb is not None:
            overrides.setdefault("queue.buffering.max.kbytes", buffer_mb * 1024)
        return ConfluentProducer(bootstrap, **overrides)
    if chosen == "kafka-python":
        return KafkaPythonProducer(bootstrap, **overrides)
    raise ValueError(f"unknown Kafka client {chosen!r}; expected kafka-python or confluent")
