"""archive_hot_store: hot-store samples older than the hot window → PostgreSQL ``ip_history``.

Order matters for "loses nothing": COPY into a staging table, insert from it (a plain insert
first; on a retry, where rows are already there, ``ON CONFLICT DO NOTHING``, so nothing is
inserted twice), verify inside the same transaction that every staged sample is now in
history, commit, and only then trim Redis. If PostgreSQL is down, the
task fails before anything is trimmed; if it dies after the commit, the retry finds the rows
already archived and finishes the trim.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from lambdawatch.core import db
from lambdawatch.core.hot_store import HotStore, Point, open_hot_store, redis_client, series_key
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings

# (ip, feature, epoch ms, value): timestamps stay integers until PostgreSQL converts them, which
# spares building and formatting a datetime per sample in Python.
HistoryRow = tuple[str, str, int, float]


@dataclass(frozen=True)
class ArchiveResult:
    cutoff_ms: int
    series: int
    samples: int
    inserted: int
    already_archived: int
    trimmed: int
    # wall seconds per phase (read Redis, store in PostgreSQL, trim Redis): the task log's
    # answer to "where did the hour go"
    phase_seconds: dict[str, float] = field(default_factory=dict)


def archive_cutoff_ms(interval_end: datetime, hot_window_hours: float) -> int:
    """Samples strictly older than this are archived: the data interval's end minus the hot
    window, never ``now()``, so a re-run of an old interval archives the same slice."""
    if interval_end.tzinfo is None:
        raise ValueError("interval end must be timezone-aware")
    return int(interval_end.timestamp() * 1000 - hot_window_hours * 3_600_000)


def history_rows(
    series: dict[str, Sequence[Point]], identity: dict[str, tuple[str, str]]
) -> list[HistoryRow]:
    """Hot-store points as history rows; keys with no known (ip, feature) are an error."""
    unknown = sorted(set(series) - set(identity))
    if unknown:
        raise KeyError(f"hot-store series with no ip/feature identity: {unknown[:5]}")
    rows: list[HistoryRow] = []
    for key, points in series.items():
        ip, feature = identity[key]
        rows.extend((ip, feature, ts, value) for ts, value in points)
    return rows


def series_identity(
    store: HotStore, settings: Settings, keys: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """(ip, feature) per key: from config for configured IPs, from the series labels otherwise."""
    known = {
        series_key(settings, ip, feature): (ip, feature)
        for ip in settings.ips.resolved_addresses
        for feature in settings.ips.features
    }
    identity = {}
    for key in keys:
        if key in known:
            identity[key] = known[key]
        else:
            labels = store.labels(key)
            if "ip" in labels and "feature" in labels:
                identity[key] = (labels["ip"], labels["feature"])
    return identity


# A hot-store series holds one value per timestamp, so staged rows are unique: no DISTINCT or
# sort is needed, and ON CONFLICT absorbs what an earlier (retried) run already archived.
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS staging_archive (
    ip text NOT NULL, feature text NOT NULL, ts_ms bigint NOT NULL, value double precision
) ON COMMIT DELETE ROWS
"""
STAGED_TS = "(timestamptz 'epoch' + s.ts_ms * interval '1 millisecond')"  # exact, no float
# First attempt: a plain insert, the fast path when nothing was archived before (the usual
# hourly run). A retry that finds rows already there gets a unique violation, rolls back to a
# savepoint and takes the insert-if-absent path instead.
FIRST_ARCHIVE_SQL = f"""
INSERT INTO ip_history (ip, feature, ts, value)
SELECT s.ip, s.feature, {STAGED_TS}, s.value FROM staging_archive s
"""
ARCHIVE_SQL = FIRST_ARCHIVE_SQL + "ON CONFLICT (ip, feature, ts) DO NOTHING\n"
# Run only when the insert skipped rows (a retry): how many staged samples history now holds.
VERIFY_SQL = f"""
SELECT count(*) FROM staging_archive s
JOIN ip_history h ON h.ip = s.ip AND h.feature = s.feature AND h.ts = {STAGED_TS}
"""


def store_history(conn: psycopg.Connection, rows: Sequence[HistoryRow]) -> tuple[int, int]:
    """COPY → insert (if absent, on a retry) → verify, in one transaction; returns (inserted,
    already there).

    Every row the insert reports is in history by PostgreSQL's guarantee; when it skipped some
    (a retry), those are looked up. Raises, and rolls back, when a staged sample is missing.
    """
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(STAGING_DDL)
        with cursor.copy(
            "COPY staging_archive (ip, feature, ts_ms, value) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "int8", "float8"])
            for row in rows:
                copy.write_row(row)
        cursor.execute("SELECT count(*) FROM staging_archive")
        staged = int(cursor.fetchone()[0])  # type: ignore[index]
        try:
            with conn.transaction():  # a savepoint
                cursor.execute(FIRST_ARCHIVE_SQL)
        except psycopg.errors.UniqueViolation:
            cursor.execute(ARCHIVE_SQL)
        inserted = cursor.rowcount
        if inserted != staged:
            cursor.execute(VERIFY_SQL)
            present = int(cursor.fetchone()[0])  # type: ignore[index]
            if present != staged:
                raise RuntimeError(
                    f"archive verification failed: {staged} samples staged, {present} in ip_history"
                )
    return inserted, staged - inserted


def archive_hot_store(
    settings: Settings,
    interval_end: datetime,
    store: HotStore | None = None,
    secrets: Secrets | None = None,
) -> ArchiveResult:
    """Move every IP sample older than the hot window from the hot store into history."""
    cutoff = archive_cutoff_ms(interval_end, settings.hot_store.hot_window_hours)
    client = None
    if store is None:
        client = redis_client(settings)
        store = open_hot_store(client, settings)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    try:
        series = {k: p for k, p in store.mrange({"source": "ip"}, 0, cutoff - 1).items() if p}
        rows = history_rows(series, series_identity(store, settings, series))
        phases["read"] = time.perf_counter() - started
        inserted = already = trimmed = 0
        if rows:
            with db.connect(settings, secrets) as conn:
                inserted, already = store_history(conn, rows)
            phases["store"] = time.perf_counter() - started - phases["read"]
            # Only now, with every sample committed and verified, is Redis trimmed.
            trimmed = sum(store.delete_range(key, 0, cutoff - 1) for key in series)
            phases["trim"] = time.perf_counter() - started - phases["read"] - phases["store"]
    finally:
        if client is not None:
            client.close()
    rounded = {phase: round(seconds, 3) for phase, seconds in phases.items()}
    return ArchiveResult(cutoff, len(series), len(rows), inserted, already, trimmed, rounded)
