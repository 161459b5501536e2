"""The speed layer as its own process for the fault tests (crash, outage): start it on a subset
of queries, feed it, wait on what the database shows, and what ``rt_server_status`` must hold
for a set of events, computed independently with pandas."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lambdawatch.core import db
from lambdawatch.core.producers import make_producer
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.pipelines.event_feed import feed_batch

WAIT_S = 600  # generous: first Spark start on a busy 2-core machine
IN_INTERVAL = (
    "{column} >= to_timestamp(%(start)s / 1000.0) AND {column} < to_timestamp(%(end)s / 1000.0)"
)
ServerStatus = dict[tuple[datetime, str, str, int], tuple[int, int]]


def speed_layer_command(queries: str, checkpoints: Path) -> list[str]:
    return [sys.executable, "-m", "spark_apps.speed_layer", "--queries", queries,
            "--checkpoint-dir", str(checkpoints)]  # fmt: skip


def send(settings: Settings, *batches: Any) -> None:
    producer = make_producer(settings.kafka_bootstrap, "confluent")
    try:
        for batch in batches:
            feed_batch(batch, settings, producer)
    finally:
        producer.close()


def wait_for(condition: Any, what: str, process: subprocess.Popen, log: Path) -> None:
    """Until ``condition()``; the speed layer exiting, or ``WAIT_S`` passing, fails with its log."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(
                f"speed layer exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def expected_server_status(events: list[dict[str, Any]]) -> ServerStatus:
    """Messages and total resolution time per minute × datacenter × colour × severity."""
    frame = pd.DataFrame(events)
    frame["window_start"] = pd.to_datetime(frame["timestamp"]).dt.floor("1min")
    totals = (
        frame.groupby(["window_start", "datacenter", "status_color", "severity_level"])
        .agg(messages=("event_id", "size"), total=("estimated_resolution_time", "sum"))
        .reset_index()
    )
    return {
        (r.window_start.to_pydatetime(), r.datacenter, r.status_color, int(r.severity_level)): (
            int(r.messages),
            int(r.total),
        )
        for r in totals.itertuples()
    }


def stored_server_status(
    settings: Settings, secrets: Secrets, start: int, end: int
) -> ServerStatus:
    with db.connect(settings, secrets) as conn:
        rows = conn.execute(
            "SELECT window_start, datacenter, status_color, severity_level, messages, "
            "total_resolution_time FROM rt_server_status WHERE "
            + IN_INTERVAL.format(column="window_start"),
            {"start": start, "end": end},
        ).fetchall()
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}


def stored_messages(settings: Settings, secrets: Secrets, start: int, end: int) -> int:
    return sum(
        messages for messages, _ in stored_server_status(settings, secrets, start, end).values()
    )


CpuWindows = dict[tuple[str, pd.Timestamp], tuple[float, int]]


def expected_cpu_windows(events: list[dict[str, Any]]) -> CpuWindows:
    """Mean CPU and samples per server × 500 ms window, for the windows the watermark (2 s
    behind the newest event) has closed: append mode emits only those."""
    frame = pd.DataFrame(events)
    stamps = pd.to_datetime(frame["timestamp"])
    frame["window_start"] = stamps.dt.floor("500ms")
    closed = frame["window_start"] + pd.Timedelta("500ms") <= stamps.max() - pd.Timedelta("2s")
    grouped = frame[closed].groupby(["server_id", "window_start"])["cpu_usage"]
    return {
        key: (row["mean"], int(row["size"]))
        for key, row in grouped.agg(["mean", "size"]).iterrows()
    }


def stored_cpu_windows(settings: Settings, secrets: Secrets, start: int, end: int) -> CpuWindows:
    with db.connect(settings, secrets) as conn:
        rows = conn.execute(
            "SELECT server_id, window_start, mean_cpu, samples FROM rt_cpu_windows WHERE "
            + IN_INTERVAL.format(column="window_start"),
            {"start": start, "end": end},
        ).fetchall()
    return {(r[0], pd.Timestamp(r[1])): (r[2], r[3]) for r in rows}


def unmatched_cpu_anomalies(
    settings: Settings, secrets: Secrets, start: int, end: int
) -> tuple[int, int]:
    """(anomalous windows without their anomaly, CPU anomalies without their window): an
    anomaly lost, or one left over from a window since judged otherwise; both 0 when the two
    sinks agree. The anomalies' key makes a doubled one impossible to store."""
    windows = IN_INTERVAL.format(column="w.window_start")
    anomalies = IN_INTERVAL.format(column="a.window_start")
    with db.connect(settings, secrets) as conn:
        lost = conn.execute(
            "SELECT count(*) FROM rt_cpu_windows w WHERE w.status <> 'SAFE' AND "
            + windows
            + " AND NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.detector = 'cpu_anomalies' "
            "AND a.entity = w.server_id AND a.window_start = w.window_start)",
            {"start": start, "end": end},
        ).fetchone()
        stray = conn.execute(
            "SELECT count(*) FROM anomalies a WHERE a.detector = 'cpu_anomalies' AND "
            + anomalies
            + " AND NOT EXISTS (SELECT 1 FROM rt_cpu_windows w WHERE w.server_id = a.entity "
            "AND w.window_start = a.window_start AND w.status = a.severity)",
            {"start": start, "end": end},
        ).fetchone()
    assert lost is not None
    assert stray is not None
    return int(lost[0]), int(stray[0])
