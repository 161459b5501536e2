"""Acknowledged events/s from the generators into the real broker, next to three references.

All measured in one run, on one isolated broker, with the same record size (the mean size of
our serialised IP events):

* Kafka's Java ``ProducerPerformance``;
* kafka-python's own ``python -m kafka.benchmarks.producer_performance`` (same producer config
  as ours, so the gap is what generation and serialisation cost);
* a bare confluent-kafka loop of pre-built records (the native client's ceiling);
* our path (generate → serialise → produce → flush) per source, with kafka-python and with
  confluent-kafka, in 1..N producer processes.

Goals (issue 2/6): our kafka-python path >= 70 % of kafka-python's own benchmark, and
>= 150,000 events/s in total on 2 cores, with processes if one cannot get there.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson
from rich.console import Console

from bench.common import java_producer_performance, running_stack, write_result
from generators.registry import SOURCES, entities_per_interval, make_generator
from lambdawatch.core.config_model import TopicConfig
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import load_settings
from lambdawatch.pipelines.event_feed import publish_events

T0 = 1_767_225_600_000
CHUNK_EVENTS = 20_000
KAFKA_PYTHON_CONFIG = {
    "acks": "all",
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": "lz4",
    "enable_idempotence": "True",
}


def mean_record_size(source: str = "ip") -> int:
    settings = load_settings()
    batch = make_generator(source, settings).generate(T0, T0 + 3_600_000)
    return int(statistics.mean(len(orjson.dumps(event)) for event in batch.events[:5000]))


def kafka_python_reference(bootstrap: str, topic: str, records: int, size: int) -> dict[str, float]:
    config = [f"{k}={v}" for k, v in KAFKA_PYTHON_CONFIG.items()]
    command = [
        sys.executable,
        "-m",
        "kafka.benchmarks.producer_performance",
        "-b",
        bootstrap,
        "-t",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--stats-interval",
        "600",
        "-c",
        *config,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    seconds = float(re.search(r"Execution time: ([\d.]+) secs", output).group(1))  # type: ignore[union-attr]
    succeeded = int(re.search(r"(\d+) suceeded", output).group(1))  # type: ignore[union-attr]
    return {
        "records": succeeded,
        "seconds": round(seconds, 2),
        "events_per_s": round(succeeded / seconds),
    }


def confluent_reference(bootstrap: str, topic: str, records: int, size: int) -> dict[str, float]:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1024 * 1024,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    payload = bytes(size)
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    seconds = time.perf_counter() - start
    return {
        "records": records,
        "seconds": round(seconds, 2),
        "events_per_s": round(records / seconds),
    }


def _our_path(args: tuple[str, str, int, int, Any]) -> dict[str, float]:
    """One producer process: generate, serialise and send ``events`` events, then flush."""
    source, client, events, offset_ms, barrier = args
    settings = load_settings()
    generator = make_generator(source, settings)
    per_tick = entities_per_interval(source, settings)
    chunk_ms = max(1, CHUNK_EVENTS // per_tick) * generator.interval_ms
    producer = make_producer(settings.kafka_bootstrap, client)  # type: ignore[arg-type]
    generator.generate(T0, T0 + generator.interval_ms)  # warm caches outside the clock
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    cursor, sent = T0 + offset_ms, 0
    while sent < events:
        batch = generator.generate(cursor, cursor + chunk_ms)
        take = min(len(batch.events), events - sent)
        sent += publish_events(producer, settings, source, batch.events[:take], batch.keys[:take])
        cursor += chunk_ms
    producer.flush()
    end = time.perf_counter()
    failures = producer.failures
    producer.close()
    return {"events": sent, "start": start, "end": end, "failures": failures}


def our_path(source: str, client: str, events: int, processes: int) -> dict[str, float]:
    if processes == 1:
        result = _our_path((source, client, events, 0, None))
        seconds = result["end"] - result["start"]
        return {
            "events": result["events"],
            "seconds": round(seconds, 2),
            "events_per_s": round(result["events"] / seconds),
            "failures": result["failures"],
        }
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        span = (
            400 * 86_400_000
        )  # far-apart simulated intervals: no two processes send the same events
        jobs = [(source, client, events // processes, i * span, barrier) for i in range(processes)]
        with context.Pool(processes) as pool:
            results = pool.map(_our_path, jobs)
    total = sum(r["events"] for r in results)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "events": total,
        "seconds": round(seconds, 2),
        "events_per_s": round(total / seconds),
        "processes": processes,
        "failures": sum(r["failures"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000, help="events per measurement")
    parser.add_argument("--max-processes", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    size = mean_record_size("ip")
    with running_stack(["kafka"]) as (settings, _stack):
        admin = admin_client(settings.kafka_bootstrap)
        reference_topic = TopicConfig(
            role="metrics",
            name="bench-reference",
            partitions=settings.topic("ip_events").partitions,
        )
        ensure_topics(admin, [*settings.topics, reference_topic])
        admin.close()
        bootstrap = settings.kafka_bootstrap
        console.print(f"record size {size} B; references…")
        java_producer_performance(bootstrap, reference_topic.name, 100_000, size)  # JVM warm-up
        references = {
            "java_producer_performance": java_producer_performance(
                bootstrap, reference_topic.name, args.events, size
            ),
            "kafka_python_benchmark": kafka_python_reference(
                bootstrap, reference_topic.name, args.events, size
            ),
            "confluent_bare_loop": confluent_reference(
                bootstrap, reference_topic.name, args.events, size
            ),
        }
        ours: dict[str, Any] = {"per_source_one_process": {}, "ip_processes": {}}
        for source in SOURCES:
            for client in ("kafka-python", "confluent"):
                console.print(f"our path: {source} via {client}…")
                ours["per_source_one_process"][f"{source}/{client}"] = our_path(
                    source, client, args.events, 1
                )
        for client in ("kafka-python", "confluent"):
            for processes in range(2, args.max_processes + 1):
                console.print(f"our path: ip via {client}, {processes} processes…")
                ours["ip_processes"][f"{client}/{processes}"] = our_path(
                    "ip", client, args.events, processes
                )

    kp_reference = references["kafka_python_benchmark"]["events_per_s"]
    kp_ours = ours["per_source_one_process"]["ip/kafka-python"]["events_per_s"]
    best_total = max(
        [r["events_per_s"] for r in ours["ip_processes"].values()]
        + [
            r["events_per_s"]
            for key, r in ours["per_source_one_process"].items()
            if key.startswith("ip/")
        ]
    )
    result = {
        "record_size_bytes": size,
        "events_per_measurement": args.events,
        "references": references,
        "ours": ours,
        "ratios": {
            "ours_kafka_python_vs_kafka_python_benchmark": round(kp_ours / kp_reference, 3),
            "ours_confluent_vs_confluent_bare_loop": round(
                ours["per_source_one_process"]["ip/confluent"]["events_per_s"]
                / references["confluent_bare_loop"]["events_per_s"],
                3,
            ),
            "best_total_vs_java": round(
                best_total / references["java_producer_performance"]["rps"], 3
            ),
        },
        "goals": {
            "ours_vs_kafka_python_benchmark": 0.7,
            "total_events_per_s": 150_000,
            "met": kp_ours / kp_reference >= 0.7 and best_total >= 150_000,
        },
    }
    path = write_result("ingest", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
