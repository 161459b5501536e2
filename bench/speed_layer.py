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
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {}
    with running_stack(["postgres", "kafka"]) as (settings, stack):
        admin = admin_client(settings.kafka_bootstrap)
        ensure_topics(admin, settings.topics)
        admin.close()
        loaded = load_backlog(settings, args.events)
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
    result = {
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
    path = write_result("speed_layer", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
