"""Archival throughput: hot store → PostgreSQL history, next to a bare COPY of the same rows.

One isolated stack (PostgreSQL + Redis). The hot store is filled with ``--samples`` per
configured IP × feature, older than the hot window. ``archive_hot_store`` then does what the
hourly DAG does: read every series from Redis, COPY into a staging table, insert with
``ON CONFLICT DO NOTHING``, verify inside the transaction, commit, trim Redis. The reference
is a bare ``COPY`` of exactly those rows into an empty table shaped like ``ip_history`` (same
primary key), in the same run; the phases of our path are timed separately too.

Goal (issue 4/6): archived rows/s >= 0.5 × the bare COPY's rows/s.

Then a backlog (issue 5/5): ``--backlog`` samples (10 M) behind the archive at once, archived by
the task function in a process of its own (bounded slices of ``hot_store.archive_chunk_samples``,
each committed, verified and trimmed in order). Its peak RSS is what the DAG task needs.
Goal: every sample archived and trimmed with a peak RSS <= 500 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from bench.common import running_stack, write_result
from lambdawatch.core import db
from lambdawatch.core.hot_store import ensure_ip_series, open_hot_store, redis_client, series_key
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.pipelines import archive

END = datetime(2026, 6, 1, tzinfo=UTC)
STEP_MS = 60_000
WRITE_CHUNK = 200_000
BACKLOG_RSS_GOAL_MB = 500


def fill_hot_store(settings: Settings, samples_per_series: int) -> int:
    """Per-minute samples for every configured IP × feature, all older than the hot window."""
    cutoff = archive.archive_cutoff_ms(END, settings.hot_store.hot_window_hours)
    first = cutoff - samples_per_series * STEP_MS
    keys = [
        series_key(settings, ip, feature)
        for ip in settings.ips.resolved_addresses
        for feature in settings.ips.features
    ]
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        ensure_ip_series(store, settings)
        pending: list[tuple[str, int, float]] = []
        for step in range(samples_per_series):
            ts = first + step * STEP_MS
            pending.extend((key, ts, float((step * 31 + n) % 997)) for n, key in enumerate(keys))
            if len(pending) >= WRITE_CHUNK:
                store.add(pending)
                pending = []
        if pending:
            store.add(pending)
    finally:
        client.close()
    return len(keys) * samples_per_series


def timed_archive(settings: Settings, secrets: Any) -> dict[str, Any]:
    """``archive_hot_store`` end to end, with its three phases timed on the same rows."""
    cutoff = archive.archive_cutoff_ms(END, settings.hot_store.hot_window_hours)
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        started = time.perf_counter()
        series = {k: p for k, p in store.mrange({"source": "ip"}, 0, cutoff - 1).items() if p}
        rows = archive.history_rows(series, archive.series_identity(store, settings, series))
        read_s = time.perf_counter() - started
    finally:
        client.close()
    # The measured run: the real task function, from Redis to trimmed Redis.
    started = time.perf_counter()
    result = archive.archive_hot_store(settings, END, secrets=secrets)
    total_s = time.perf_counter() - started
    return {
        "rows": result.samples,
        "inserted": result.inserted,
        "trimmed": result.trimmed,
        "seconds": round(total_s, 3),
        "rows_per_s": round(result.samples / total_s),
        "read_phase_seconds_separate_run": round(read_s, 3),
        "phase_seconds": result.phase_seconds,
        "rows_for_reference": rows,
    }


def bare_copy(settings: Settings, secrets: Any, staged: list[archive.HistoryRow]) -> dict[str, Any]:
    """The reference: the same rows COPYed straight into an empty ip_history-shaped table."""
    with db.connect(settings, secrets, role="owner") as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare_copy")
        conn.execute("CREATE TABLE bench_bare_copy (LIKE ip_history INCLUDING ALL)")
        conn.commit()
        # The rows as a client holds them: timestamps, not epoch integers (converted untimed).
        rows = [(ip, f, datetime.fromtimestamp(ms / 1000, UTC), v) for ip, f, ms, v in staged]
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy(
                "COPY bench_bare_copy (ip, feature, ts, value) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "text", "timestamptz", "float8"])  # as fast as COPY gets
            for row in rows:
                copy.write_row(row)
        seconds = time.perf_counter() - started
        count = conn.execute("SELECT count(*) FROM bench_bare_copy").fetchone()[0]  # type: ignore[index]
        conn.execute("DROP TABLE bench_bare_copy")
        conn.commit()
    return {"rows": int(count), "seconds": round(seconds, 3), "rows_per_s": round(count / seconds)}


def archive_once() -> None:
    """The task function on the stack the environment names; its result, wall time and peak
    RSS as one JSON line (run as its own process: the peak is the archive's alone)."""
    started = time.perf_counter()
    result = archive.archive_hot_store(load_settings(), END)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({**asdict(result), "seconds": round(seconds, 3), "peak_rss_mb": peak_mb}))


def backlog_run(settings: Settings, secrets: Any, total: int) -> dict[str, Any]:
    """``total`` samples behind the archive, archived by ``archive_once`` in its own process."""
    with db.connect(settings, secrets, role="owner") as conn:
        conn.execute("TRUNCATE ip_history")
    keys = len(settings.ips.resolved_addresses) * len(settings.ips.features)
    written = fill_hot_store(settings, math.ceil(total / keys))
    run = subprocess.run(
        [sys.executable, "-m", "bench.archive", "--archive-once"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    with db.connect(settings, secrets) as conn:
        archived = int(conn.execute("SELECT count(*) FROM ip_history").fetchone()[0])  # type: ignore[index]
    return {
        "samples": written,
        "chunk_samples": settings.hot_store.archive_chunk_samples,
        "chunks": measured["chunks"],
        "archived": archived,
        "trimmed": measured["trimmed"],
        "seconds": measured["seconds"],
        "rows_per_s": round(written / measured["seconds"]),
        "phase_seconds": measured["phase_seconds"],
        "peak_rss_mb": round(measured["peak_rss_mb"], 1),
        "complete": archived == written and measured["trimmed"] == written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300, help="samples per IP × feature")
    parser.add_argument("--rounds", type=int, default=3, help="fill → archive → COPY, medians")
    parser.add_argument("--backlog", type=int, default=10_000_000, help="samples, 0 to skip")
    parser.add_argument("--archive-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.archive_once:
        archive_once()
        return
    console = Console()
    rounds = []
    backlog = None
    with running_stack(["postgres", "redis"]) as (settings, stack):
        with db.connect(settings, stack.secrets, role="owner") as conn:
            db.apply_migrations(conn, settings.root / "sql")
        for number in range(1, args.rounds + 1):
            with db.connect(settings, stack.secrets, role="owner") as conn:
                conn.execute("TRUNCATE ip_history")  # every round archives into the same state
            written = fill_hot_store(settings, args.samples)
            ours = timed_archive(settings, stack.secrets)
            rows = ours.pop("rows_for_reference")
            reference = bare_copy(settings, stack.secrets, rows)
            with db.connect(settings, stack.secrets) as conn:
                archived = int(conn.execute("SELECT count(*) FROM ip_history").fetchone()[0])  # type: ignore[index]
            ratio = ours["rows_per_s"] / reference["rows_per_s"]
            complete = archived == written and ours["trimmed"] == written
            rounds.append({"ours": ours, "bare_copy": reference, "ratio": round(ratio, 3),
                           "complete": complete})  # fmt: skip
            console.print(
                f"round {number}: archive {ours['rows_per_s']:,} rows/s vs bare COPY "
                f"{reference['rows_per_s']:,} rows/s (×{ratio:.2f}); {archived:,} archived"
            )
        if args.backlog:
            backlog = backlog_run(settings, stack.secrets, args.backlog)
            console.print(f"backlog: {backlog}")
    median_ratio = statistics.median(r["ratio"] for r in rounds)
    payload = {
        "goal": "archive rows/s >= 0.5 x bare COPY rows/s",
        "samples_per_round": written,
        "rounds": rounds,
        "median_ours_rows_per_s": statistics.median(r["ours"]["rows_per_s"] for r in rounds),
        "median_bare_copy_rows_per_s": statistics.median(
            r["bare_copy"]["rows_per_s"] for r in rounds
        ),
        "median_ratio_vs_bare_copy": median_ratio,
        "goal_met": median_ratio >= 0.5 and all(r["complete"] for r in rounds),
        "hot_window_hours": settings.hot_store.hot_window_hours,
        "data_interval_end": END.isoformat(),
        "backlog": backlog,
        "backlog_goal": f"every sample archived and trimmed, peak RSS <= {BACKLOG_RSS_GOAL_MB} MB",
        "backlog_goal_met": None
        if backlog is None
        else backlog["complete"] and backlog["peak_rss_mb"] <= BACKLOG_RSS_GOAL_MB,
    }
    path = write_result("archive", payload)
    console.print(f"median ratio ×{median_ratio:.2f} over {len(rounds)} rounds → {path}")


if __name__ == "__main__":
    main()
