"""Kafka's own producer perf tool against our broker: the reference for every producer bench.

``org.apache.kafka.tools.ProducerPerformance`` with 200-byte records, acks=all, on a topic
shaped like the IP events topic. Later benchmarks measure our producers next to this number
in the same run (see ``bench/ingest.py``).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from bench.common import java_producer_performance, running_stack, write_result
from lambdawatch.core.config_model import TopicConfig
from lambdawatch.core.kafka_admin import admin_client, ensure_topics

RECORD_SIZE = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    console = Console()
    with running_stack(["kafka"]) as (settings, _stack):
        topic = TopicConfig(role="metrics", name="bench-baseline", partitions=args.partitions)
        admin = admin_client(settings.kafka_bootstrap)
        ensure_topics(admin, [topic])
        admin.close()
        java_producer_performance(settings.kafka_bootstrap, topic.name, 200_000, RECORD_SIZE)
        summary = java_producer_performance(
            settings.kafka_bootstrap, topic.name, args.records, RECORD_SIZE
        )
    result = {
        "record_size_bytes": RECORD_SIZE,
        "records": args.records,
        "partitions": args.partitions,
        "note": "after a 200k-record warm-up run on the same topic",
        "kafka_producer_performance": summary,
    }
    path = write_result("kafka_baseline", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
