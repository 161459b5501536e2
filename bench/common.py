"""Shared benchmark plumbing: an isolated stack, JSON results, and Kafka's own perf tool.

Benchmarks never assert; they measure ours next to a reference taken in the same run and
write both to ``bench/results/<name>.json`` so runs can be compared side by side.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.ops.stack.isolation import isolated_environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_revision() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


# Set to 1 to write results from a tree with uncommitted changes (they then say ``dirty``).
ALLOW_DIRTY = "LAMBDAWATCH_BENCH_ALLOW_DIRTY"


def tree_is_dirty(root: Path = ROOT) -> bool:
    """Uncommitted changes to anything but the results themselves (and the screenshots the
    browser tests take): the revision a result names would then not be the code measured."""
    result = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--",
            ".",
            ":(exclude)bench/results",
            ":(exclude)docs/images",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode != 0 or bool(result.stdout.strip())


def require_clean_tree() -> bool:
    """Refuse (one line, exit 2) to measure a dirty tree unless ``ALLOW_DIRTY`` is set;
    returns whether the tree is dirty."""
    dirty = tree_is_dirty()
    if dirty and os.environ.get(ALLOW_DIRTY) != "1":
        raise SystemExit(
            f"error: uncommitted changes outside bench/results; commit them, or set "
            f"{ALLOW_DIRTY}=1 to measure anyway (the result is then marked dirty)"
        )
    return dirty


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with run metadata and return its path."""
    dirty = require_clean_tree()
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "revision": git_revision(),
        "dirty": dirty,
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def drain(start: Callable[[], Any]) -> float:
    """Seconds from starting an available-now query to its end (its failure raises)."""
    began = time.perf_counter()
    query = start()
    query.awaitTermination()
    if query.exception():
        raise RuntimeError(str(query.exception()))
    return time.perf_counter() - began


@contextmanager
def running_stack(
    components: list[str] | None = None, profile: str = "single"
) -> Iterator[tuple[Settings, Any]]:
    """An isolated local stack, up for the duration of the block (on a clean tree: see
    ``require_clean_tree``, checked first so a dirty run fails before it starts). In the
    cluster profile, ``kafka`` stands for its three nodes and brings the Spark cluster too."""
    from lambdawatch.ops.stack.local import LocalStack, kafka_names, spark_names

    require_clean_tree()
    with isolated_environment(prefix="lambdawatch-bench-"):
        os.environ["STACK_PROFILE"] = profile
        try:
            settings = load_settings()
            stack = LocalStack(settings)
            chosen = components
            if components is not None and "kafka" in components and profile == "cluster":
                chosen = [c for c in components if c != "kafka"]
                chosen += [*kafka_names(settings), *spark_names(settings)]
            try:
                stack.up(chosen, on_event=lambda _m: None)
                yield settings, stack
            finally:
                stack.down()
        finally:
            os.environ.pop("STACK_PROFILE", None)


PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency"
    r"(?:, (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th)?"
)


def parse_producer_performance(output: str) -> dict[str, float]:
    """The summary line of Kafka's ProducerPerformance (its last match in the output)."""
    matches = list(PERF_LINE.finditer(output))
    if not matches:
        raise ValueError(f"no ProducerPerformance summary in output:\n{output[-2000:]}")
    found = matches[-1].groupdict()
    return {key: float(value) for key, value in found.items() if value is not None}


def java_producer_performance(
    bootstrap: str,
    topic: str,
    records: int,
    record_size: int,
    producer_props: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run ``org.apache.kafka.tools.ProducerPerformance`` from the cached Kafka classpath."""
    from lambdawatch.ops.stack.kafka_node import java_executable, resolve_classpath

    libs = resolve_classpath(ROOT / "jvm" / "kafka" / "pom.xml")
    props = {"bootstrap.servers": bootstrap, "acks": "all", **(producer_props or {})}
    command = [
        java_executable(),
        "-Xmx512m",
        "-cp",
        f"{libs}/*",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        *(f"{k}={v}" for k, v in props.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    summary = parse_producer_performance(result.stdout)
    summary["producer_props"] = props  # type: ignore[assignment]
    return summary


PASSTHROUGH_TOPIC = "bench-passthrough"


def ensure_passthrough_topic(settings: Settings) -> str:
    """The reference pass-through queries' own output topic (never one the platform reads),
    shaped like the input topic; returns its name."""
    from lambdawatch.core.kafka_admin import admin_client, ensure_topics

    shape = next(t for t in settings.kafka_topics if t.role == "server_events")  # RF included
    topic = shape.model_copy(update={"name": PASSTHROUGH_TOPIC})
    admin = admin_client(settings.kafka_bootstrap)
    try:
        ensure_topics(admin, [topic])
    finally:
        admin.close()
    return topic.name


def start_passthrough(
    spark: Any,
    settings: Settings,
    checkpoint: str,
    starting_offsets: str,
    trigger: dict[str, Any],
    role: str = "server_events",
) -> Any:
    """The reference the speed-layer benchmarks measure against: events of ``role`` (server
    events unless told) from Kafka, validated and parsed as the speed layer does, straight back
    to Kafka (``PASSTHROUGH_TOPIC``), no state. Its source takes the speed layer's Kafka options
    and micro-batch bound (``MAX_OFFSETS_PER_TRIGGER``), so the comparison is like for like."""
    from lambdawatch.core.events import METRIC_SCHEMA, SERVER_SCHEMA
    from spark_apps.io import KAFKA_SOURCE_OPTIONS, MAX_OFFSETS_PER_TRIGGER
    from spark_apps.transforms.parsing import parse_events

    schema, key = {
        "server_events": (SERVER_SCHEMA, "server_id"),
        "metrics": (METRIC_SCHEMA, "entity"),
    }[role]
    out_topic = ensure_passthrough_topic(settings)
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", settings.topic(role).name)
        .option("startingOffsets", starting_offsets)
        .option("maxOffsetsPerTrigger", MAX_OFFSETS_PER_TRIGGER)
        .options(**KAFKA_SOURCE_OPTIONS)
        .load()
    )
    events, _dead = parse_events(raw, schema, "passthrough")
    return (
        events.selectExpr(f"CAST({key} AS BINARY) AS key", "to_json(struct(*)) AS value")
        .writeStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("topic", out_topic)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
