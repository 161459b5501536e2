"""Kafka topics as declared in config.json: created with their partitions and retention.

Idempotent by design (``InitialDag`` may be triggered twice): missing topics are created,
existing ones gain partitions if config asks for more and get their retention and size limit
aligned.
Partitions are never removed (Kafka cannot), so a lower count is reported, not applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.admin import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewPartitions,
    NewTopic,
)

from lambdawatch.core.config_model import TopicConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicChange:
    name: str
    action: str  # created | unchanged | partitions_increased | config_updated | cannot_shrink


def topic_configs(topic: TopicConfig) -> dict[str, str]:
    return {
        "retention.ms": str(topic.retention_ms),
        "cleanup.policy": topic.cleanup_policy,
        "max.message.bytes": str(topic.max_message_bytes),
        "min.insync.replicas": str(topic.min_insync_replicas),
    }


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="lambdawatch-admin", request_timeout_ms=15000
    )


def ensure_topics(admin: KafkaAdminClient, topics: Iterable[TopicConfig]) -> list[TopicChange]:
    """Make the broker's topics match ``topics``; return what was done to each."""
    wanted = {topic.name: topic for topic in topics}
    existing = {
        entry["name"]: len(entry["partitions"])
        for entry in admin.describe_topics(list(wanted))
        if entry.get("error_code", 0) == 0
    }
    changes: list[TopicChange] = []
    missing = [wanted[name] for name in wanted if name not in existing]
    if missing:
        admin.create_topics(
            [
                NewTopic(
                    name=topic.name,
                    num_partitions=topic.partitions,
                    replication_factor=topic.replication_factor,
                    topic_configs=topic_configs(topic),
                )
                for topic in missing
            ],
            wait_for_metadata=True,
        )
        changes += [TopicChange(topic.name, "created") for topic in missing]
    grow = {
        name: NewPartitions(total_count=wanted[name].partitions)
        for name, count in existing.items()
        if wanted[name].partitions > count
    }
    if grow:
        admin.create_partitions(grow)
        _await_partitions(admin, {name: wanted[name].partitions for name in grow})
        changes += [TopicChange(name, "partitions_increased") for name in grow]
    for name, count in existing.items():
        if wanted[name].partitions < count:
            log.warning(
                "topic %s has %d partitions; config asks %d", name, count, wanted[name].partitions
            )
            changes.append(TopicChange(name, "cannot_shrink"))
    present = [
        name for name in existing if name not in grow and wanted[name].partitions >= existing[name]
    ]
    if present:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
        current = _current_configs(admin, resources)
        drift = [
            ConfigResource(ConfigResourceType.TOPIC, name, configs=topic_configs(wanted[name]))
            for name in present
            if any(
                current.get(name, {}).get(k) != v for k, v in topic_configs(wanted[name]).items()
            )
        ]
        if drift:
            admin.alter_configs(drift)
        drifted = {resource.name for resource in drift}
        changes += [
            TopicChange(name, "config_updated" if name in drifted else "unchanged")
            for name in present
        ]
    return changes


def _current_configs(
    admin: KafkaAdminClient, resources: list[ConfigResource]
) -> dict[str, dict[str, str]]:
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {
        name: {key: str(entry.get("value")) for key, entry in entries.items()}
        for name, entries in described.items()
    }


def _await_partitions(
    admin: KafkaAdminClient, wanted: dict[str, int], timeout_s: float = 15.0
) -> None:
    """Until metadata shows the new partitions: the broker answers ``create_partitions`` before
    its metadata does (as ``create_topics(wait_for_metadata=True)`` waits for new topics)."""
    deadline = time.monotonic() + timeout_s
    while partition_counts(admin, list(wanted)) != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not visible after {timeout_s:.0f}s: {wanted}")
        time.sleep(0.2)


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {
        entry["name"]: len(entry["partitions"])
        for entry in admin.describe_topics(names)
        if entry.get("error_code", 0) == 0
    }


def topic_names(bootstrap: str, timeout_s: float = 10.0) -> set[str]:
    """The topics the broker has, within ``timeout_s`` (raises ``KafkaError`` past it)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    try:
        return set(consumer.topics())
    finally:
        consumer.close()
