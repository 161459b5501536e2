"""History through the same detectors: backtest throughput over archived events, beside the
speed layer on the very same events; and replay of a 1 GB CSV (rows/s, peak RSS).

1. ``--events`` generated server events (50 servers every 250 ms, from 2026-01-01) go into
   ``server-events`` of an isolated stack. The speed layer's ``cpu_anomalies`` query drains
   them twice with an available-now trigger and fresh checkpoints (cold, then warm: what an
   always-on layer sustains; Spark start-up excluded, as in ``bench/speed_layer``). Both it
   and the backtest judge by the same per-server baselines (stored first).
2. ``archive_raw_events`` archives the hours they arrived in (``spark-submit``, as the DAG
   does), then ``lambdawatch backtest --detector cpu_anomalies --from --to`` runs over the
   whole span as a user would: its events/s counts everything from the command's start to
   its end (JVM start, reading Parquet, the detector, summarising, recording the findings).
   Goal: ≥ 2× the warm query (batch has no trigger overhead).
3. A CSV of server readings of ``--csv-bytes`` (every field of a server event, one row each)
   is replayed into the same topic (``lambdawatch replay --source server --max-rate --client
   confluent``, which checks the whole file, then streams it): rows/s and the process's peak
   RSS (goal ≤ 300 MB), beside Python's ``csv`` module merely reading the file (the floor).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from bench.common import drain, running_stack, write_result
from generators.server import ServerGenerator
from lambdawatch.core import db
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import TABLES
from lambdawatch.pipelines.backtest import DRIVER_MEMORY
from lambdawatch.pipelines.event_feed import feed_batch
from lambdawatch.pipelines.spark_jobs import run_spark_job
from spark_apps.detectors.cpu import METRIC as CPU_METRIC
from spark_apps.speed_layer import SpeedLayer, speed_layer_session

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CHUNK_MS = 600_000  # events generated and sent ten minutes of event time at a time
RSS_GOAL_MB = 300
SPEEDUP_GOAL = 2.0
SPEED_LAYER_MEMORY = "1g"  # build_session's default, which the speed layer keeps


def server_events(settings: Settings, events: int, seed: int) -> tuple[ServerGenerator, int]:
    """A generator and the event-time span (ms) that holds about ``events`` of its events."""
    g = settings.generators
    generator = ServerGenerator(g.servers, g.server_interval_ms, seed=seed, anomaly_rate=0.05)
    per_ms = g.servers / g.server_interval_ms
    return generator, int(events / per_ms)


def store_baselines(settings: Settings, secrets: Any) -> int:
    """Each server's CPU mean and σ over the first generated chunk, in ``baselines``: the live
    query and the backtest judge by the same per-server normal, as in production."""
    generator, _span = server_events(settings, 1, seed=21)
    frame = pd.DataFrame(generator.generate(T0, T0 + CHUNK_MS).events)
    stats = frame.groupby("server_id")["cpu_usage"].agg(["mean", "var", "std", "count"])
    start, end = (datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in (T0, T0 + CHUNK_MS))
    rows = [
        (CPU_METRIC, server, float(row["mean"]), float(row["var"]), float(row["std"]),
         int(row["count"]), start, end, datetime.now(UTC))
        for server, row in stats.iterrows()
    ]  # fmt: skip
    table = TABLES["baselines"]
    with db.connect(settings, secrets) as conn:
        db.upsert_rows(conn, table.name, table.names, rows, table.key)
        conn.commit()
    return len(rows)


def load_events(settings: Settings, events: int) -> tuple[int, int]:
    """Send about ``events`` server events, chunk by chunk; returns (sent, span end ms)."""
    generator, span = server_events(settings, events, seed=21)
    producer = make_producer(settings.kafka_bootstrap, "confluent")
    sent = 0
    try:
        for start in range(T0, T0 + span, CHUNK_MS):
            batch = generator.generate(start, min(start + CHUNK_MS, T0 + span))
            feed_batch(batch, settings, producer)
            sent += len(batch.events)
    finally:
        producer.close()
    return sent, T0 + span


def write_csv(settings: Settings, path: Path, size: int) -> int:
    """Server readings, every field of the event, until the file holds ``size`` bytes."""
    generator, _span = server_events(settings, 1, seed=5)
    rows = 0
    start = T0
    with path.open("w", newline="") as handle:
        while handle.tell() < size:
            batch = generator.generate(start, start + CHUNK_MS)
            frame = pd.DataFrame(batch.events).drop(columns=["event_id"])
            frame.to_csv(handle, index=False, header=rows == 0)
            rows += len(frame)
            start += CHUNK_MS
    return rows


# Runs its arguments and prints their peak RSS: measured from a small parent, because a child
# forked from this (large) process counts the pages it shares until its exec.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)


def timed_process(command: list[str]) -> dict[str, Any]:
    """Run ``command``; its wall seconds, its peak RSS and its output."""
    began = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True,
                         text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - began
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines or not lines[-1].startswith("peak_rss_kb"):
        raise RuntimeError(f"{command[3:5]} failed ({run.returncode}):\n"
                           f"{(run.stdout + run.stderr)[-3000:]}")  # fmt: skip
    return {"seconds": seconds, "peak_rss_mb": int(lines[-1].split()[1]) / 1024,
            "output": "\n".join(lines[:-1])}  # fmt: skip


def speed_layer_drains(settings: Settings, stack: Any, events: int) -> dict[str, Any]:
    spark = speed_layer_session(settings, "bench-backtest")
    spark.sparkContext.setLogLevel("ERROR")
    scratch = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    layers: list[SpeedLayer] = []

    def cpu_anomalies(checkpoint: Path) -> Any:
        layer = SpeedLayer(spark, settings, stack.secrets, checkpoint,
                           trigger={"availableNow": True})  # fmt: skip
        layers.append(layer)
        return layer.start(("cpu_anomalies",))[0]

    runs = {}
    try:
        for state in ("cold", "warm"):
            seconds = drain(partial(cpu_anomalies, scratch / state))
            runs[state] = {"seconds": round(seconds, 2), "events_per_s": round(events / seconds)}
    finally:
        spark.stop()
        for layer in layers:
            layer.close()
    return runs


def csv_read_floor(path: Path) -> float:
    """Seconds for Python's csv module to read every row (and nothing else)."""
    began = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as handle:
        for _row in csv.DictReader(handle):
            pass
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--csv-bytes", type=int, default=1_000_000_000)
    args = parser.parse_args()
    console = Console()
    cli = [sys.executable, "-m", "lambdawatch.ops.cli"]
    with running_stack(["postgres", "kafka"]) as (settings, stack):
        admin = admin_client(settings.kafka_bootstrap)
        ensure_topics(admin, settings.topics)
        admin.close()
        baselines = store_baselines(settings, stack.secrets)
        arrived_from = datetime.now(UTC)
        began = time.perf_counter()
        loaded, end_ms = load_events(settings, args.events)
        load_s = time.perf_counter() - began
        arrived_to = datetime.now(UTC) + timedelta(seconds=1)
        console.print(f"loaded {loaded:,} server events in {load_s:.0f} s; speed layer drains…")
        query = speed_layer_drains(settings, stack, loaded)
        console.print(f"  cpu_anomalies: {query}")

        interval = ["--from", arrived_from.isoformat(), "--to", arrived_to.isoformat()]
        began = time.perf_counter()
        archived = run_spark_job(settings, "archive_raw_events", interval)
        archive_s = time.perf_counter() - began
        archived_server = sum(hour["server"] for hour in archived["hours"].values())
        console.print(f"archived {archived_server:,} server records in {archive_s:.0f} s")

        span = [_iso(T0), _iso(end_ms + 1)]
        backtest = timed_process([
            *cli, "backtest", "--detector", "cpu_anomalies", "--from", span[0], "--to", span[1],
            "--run-id", "bench-backtest",
        ])  # fmt: skip
        backtest_rate = loaded / backtest["seconds"]
        recorded = backtest["output"].strip().splitlines()[-1]
        console.print(f"backtest: {backtest['seconds']:.0f} s ({backtest_rate:,.0f} events/s)")

        with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
            path = Path(folder) / "servers.csv"
            rows = write_csv(settings, path, args.csv_bytes)
            size = path.stat().st_size
            floor_s = csv_read_floor(path)
            console.print(f"replaying {size / 1e9:.2f} GB ({rows:,} rows)…")
            replay = timed_process([
                *cli, "replay", str(path), "--source", "server", "--max-rate", "--client",
                "confluent",
            ])  # fmt: skip
    warm = query["warm"]["events_per_s"]
    result = {
        "events": loaded,
        "servers_with_baselines": baselines,
        "load_seconds": round(load_s, 1),
        "speed_layer_cpu_anomalies": query,
        "archive": {"seconds": round(archive_s, 1), "server_records": archived_server},
        "backtest_cpu_anomalies": {
            "seconds": round(backtest["seconds"], 1),
            "events_per_s": round(backtest_rate),
            "peak_rss_mb_largest_process": round(backtest["peak_rss_mb"]),
            "recorded": recorded,
        },
        "backtest_to_warm_query": round(backtest_rate / warm, 3),
        "driver_memory": {"backtest": DRIVER_MEMORY, "speed_layer": SPEED_LAYER_MEMORY},
        "replay": {
            "bytes": size,
            "rows": rows,
            "seconds": round(replay["seconds"], 1),
            "rows_per_s": round(rows / replay["seconds"]),
            "mb_per_s": round(size / 1e6 / replay["seconds"], 1),
            "peak_rss_mb": round(replay["peak_rss_mb"], 1),
            "csv_read_floor": {"seconds": round(floor_s, 1), "rows_per_s": round(rows / floor_s)},
            "summary": replay["output"].strip().splitlines()[-4:],
        },
        "goals": {
            "backtest_to_warm_query": SPEEDUP_GOAL,
            "replay_peak_rss_mb": RSS_GOAL_MB,
            "met": {
                "backtest_to_warm_query": backtest_rate / warm >= SPEEDUP_GOAL,
                "replay_peak_rss_mb": replay["peak_rss_mb"] <= RSS_GOAL_MB,
            },
        },
    }
    path = write_result("backtest", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


if __name__ == "__main__":
    main()
