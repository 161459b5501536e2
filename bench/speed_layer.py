"""Speed-layer throughput: our queries next to a minimal pass-through query on the same data.

A backlog of generated server events is loaded into Kafka once; then each query drains it
twice with an available-now trigger and a fresh checkpoint, and events/s = backlog / wall
time of the drain (Spark start-up excluded: the session is started first). The first, cold
drain runs code the JVM has not compiled yet; the second, warm one is what an always-on
speed layer sustains, and the goal is judged on it. The pass-through query
(Kafka → from_json → Kafka, no state) is the ceiling this machine allows.

``cpu_windows_store`` then drains what ``cpu_anomalies`` wrote to the status topic; its
events/s counts the server events those windows came from, so the two stages compare (live,
they run side by side and the slower one bounds the pair). ``incidents`` then drains the
backlog's server events (read for each server's datacenter) with the verdicts both
``cpu_anomalies`` drains wrote: its events/s is also per server event, the rate at which a new
incidents checkpoint catches up with a feed's history (its tables are emptied before each
drain, so cold and warm start alike).

Goal (issue 3/6): >= 50,000 events/s sustained. Live latency is ``bench/speed_layer_latency``.

Each profile runs in its own process on its own stack, the same run (issue 19): ``single``
(one Kafka node, Spark ``local[*]`` in the driver) and ``cluster`` (three Kafka nodes at RF 3,
the driver submitting to a standalone master with two workers, at most ``speed_layer_cores``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.common import drain, running_stack, start_passthrough, write_result
from generators.server import ServerGenerator
from lambdawatch.core import db
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.producers import make_producer
from lambdawatch.pipelines.event_feed import feed_batch
from spark_apps.speed_layer import SpeedLayer, speed_layer_session

T0 = 1_767_225_600_000
INCIDENT_TABLES_EMPTIED = (
    "TRUNCATE incidents, incident_signals, incident_transitions, incident_progress, "
    "incident_deliveries, entity_groups CASCADE"
)


def load_backlog(settings: Any, events: int) -> int:
    g = settings.generators
    generator = ServerGenerator(g.servers, g.server_interval_ms, seed=21, anomaly_rate=0.05)
    per_minute = g.servers * 60_000 // g.server_interval_ms
    batch = generator.generate(T0, T0 + max(1, events // per_minute) * 60_000)
    producer = make_producer(settings.kafka_bootstrap, "confluent")
    try:
        feed_batch(batch, settings, producer)
    finally:
        producer.close()
    return len(batch.events)


PROFILES = ("single", "cluster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--profile", choices=PROFILES, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        result = measure(args.events, args.profile)
        args.output.write_text(json.dumps(result))
        return
    console = Console()
    profiles: dict[str, Any] = {}
    for profile in PROFILES:  # one process each: a JVM serves one Spark master
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "result.json"
            subprocess.run(
                [sys.executable, "-m", "bench.speed_layer", "--events", str(args.events),
                 "--profile", profile, "--output", str(output)],
                check=True,
            )  # fmt: skip
            profiles[profile] = json.loads(output.read_text())
        console.print(f"{profile}: {profiles[profile]['ratios_to_passthrough']}")
    single = profiles["single"]
    result = {
        **single,  # the single profile's figures stay where earlier runs had them
        "profiles": profiles,
        "cluster_warm_events_per_s_vs_single": {
            name: round(
                profiles["cluster"]["queries"][name]["warm"]["events_per_s"]
                / single["queries"][name]["warm"]["events_per_s"],
                3,
            )
            for name in single["queries"]
        },
    }
    path = write_result("speed_layer", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


def measure(events: int, profile: str) -> dict[str, Any]:
    """Every drain on a stack of ``profile``: the figures of one profile."""
    console = Console()
    results: dict[str, Any] = {}
    with running_stack(["postgres", "kafka"], profile=profile) as (settings, stack):
        admin = admin_client(settings.kafka_bootstrap)
        ensure_topics(admin, settings.kafka_topics)
        admin.close()
        loaded = load_backlog(settings, events)
        spark = speed_layer_session(settings, "bench-speed-layer")
        spark.sparkContext.setLogLevel("ERROR")
        scratch = Path(tempfile.mkdtemp(prefix="bench-speed-"))

        def passthrough(checkpoint: Path) -> Any:
            return start_passthrough(
                spark, settings, str(checkpoint), "earliest", {"availableNow": True}
            )

        layers: list[SpeedLayer] = []

        def ours(name: str) -> Any:
            def start(checkpoint: Path) -> Any:
                layer = SpeedLayer(
                    spark, settings, stack.secrets, checkpoint, trigger={"availableNow": True}
                )
                layers.append(layer)
                return layer.start((name,))[0]

            return start

        console.print(f"backlog: {loaded:,} server events; each query drains it cold, then warm…")
        drains = [
            ("passthrough_reference", "cold", passthrough, "passthrough-cold"),
            ("passthrough_reference", "warm", passthrough, "passthrough"),
            ("server_status", "cold", ours("server_status"), "server_status-cold"),
            ("server_status", "warm", ours("server_status"), "server_status"),
            ("cpu_anomalies", "cold", ours("cpu_anomalies"), "cpu_anomalies-cold"),
            # the store drains what the cold cpu_anomalies wrote; then, from the same
            # checkpoint, only what the warm one adds
            ("cpu_windows_store", "cold", ours("cpu_windows_store"), "cpu_windows_store"),
            ("cpu_anomalies", "warm", ours("cpu_anomalies"), "cpu_anomalies"),
            ("cpu_windows_store", "warm", ours("cpu_windows_store"), "cpu_windows_store"),
            ("incidents", "cold", ours("incidents"), "incidents-cold"),
            ("incidents", "warm", ours("incidents"), "incidents"),
        ]
        for name, state, start, checkpoint in drains:
            if name == "incidents":
                with db.connect(settings, stack.secrets, role="owner") as conn:
                    conn.execute(INCIDENT_TABLES_EMPTIED)
            seconds = drain(partial(start, scratch / checkpoint))
            run = {"seconds": round(seconds, 2), "events_per_s": round(loaded / seconds)}
            results.setdefault(name, {})[state] = run
            console.print(f"  {name} ({state}): {run}")
        with db.connect(settings, stack.secrets) as conn:
            windows = conn.execute("SELECT count(*) FROM rt_cpu_windows").fetchone()[0]
            incidents = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
        spark.stop()
        for layer in layers:
            layer.close()
    reference = results["passthrough_reference"]
    warm = {name: runs["warm"]["events_per_s"] for name, runs in results.items()}
    return {
        "profile": profile,
        "spark_master": settings.spark_master_url,
        "kafka_nodes": len(settings.kafka_nodes),
        "backlog_events": loaded,
        "queries": results,
        "cpu_windows_written": windows,
        "incidents_opened": incidents,
        "ratios_to_passthrough": {
            state: {
                name: round(runs[state]["events_per_s"] / reference[state]["events_per_s"], 3)
                for name, runs in results.items()
            }
            for state in ("cold", "warm")
        },
        "goals": {
            "events_per_s": 50_000,
            "met": min(r for n, r in warm.items() if n != "passthrough_reference") >= 50_000,
        },
    }


if __name__ == "__main__":
    main()
