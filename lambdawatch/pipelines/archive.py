"""archive_hot_store: hot-store samples older than the hot window → PostgreSQL ``ip_history``.

The backlog goes in time slices of about ``hot_store.archive_chunk_samples`` samples, oldest
first, so memory stays bounded however far behind the archive is. Within a slice, order
matters for "loses nothing": COPY into a staging table, insert from it (a plain insert first;
on a retry, where rows are already there, ``ON CONFLICT DO NOTHING``, so nothing is inserted
twice), verify inside the same transaction that every staged sample is now in history, commit,
and only then trim that slice from Redis. If PostgreSQL is down, the task fails before
anything is trimmed; if it dies after a commit, the retry finds those rows already archived
and finishes the trim.
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
    # wall seconds per phase (read Redis, store in PostgreSQL, trim Redis) over every chunk:
    # the task log's answer to "where did the hour go"
    phase_seconds: dict[str, float] = field(default_factory=dict)
    chunks: int = 0


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


MIN_SLICE_MS = 1_000
# The first slice, before any density is known: short, since the next ones scale to the density
# found (growing at most eightfold, so a backlog denser later on is not read whole).
FIRST_SLICE_MS = 300_000
MAX_GROWTH = 8


def next_slice_ms(slice_ms: int, samples_read: int, chunk_samples: int) -> int:
    """The next time slice's length: the last one scaled to the density it found, so a slice
    holds about ``chunk_samples`` (growing at most ``MAX_GROWTH``-fold, never under 1 s)."""
    if samples_read <= 0:
        return slice_ms * MAX_GROWTH
    scaled = slice_ms * chunk_samples // samples_read
    return max(MIN_SLICE_MS, min(scaled, slice_ms * MAX_GROWTH))


@dataclass
class _Tally:
    series: set[str] = field(default_factory=set)
    samples: int = 0
    inserted: int = 0
    already: int = 0
    trimmed: int = 0
    chunks: int = 0
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))


PHASES = ("read", "store", "trim")


def archive_slice(
    conn: psycopg.Connection,
    store: HotStore,
    settings: Settings,
    identity: dict[str, tuple[str, str]],
    start: int,
    end: int,
    tally: _Tally,
) -> int:
    """Archive the samples in ``[start, end)``: read, store (committed, verified), trim.
    Returns how many there were. ``identity`` is the run's (ip, feature) per key, completed
    here only for a series created since the run began."""
    began = time.perf_counter()
    series = {k: p for k, p in store.mrange({"source": "ip"}, start, end - 1).items() if p}
    new = [key for key in series if key not in identity]
    if new:
        identity.update(series_identity(store, settings, new))
    rows = history_rows(series, identity)
    stored = time.perf_counter()
    tally.phases["read"] += stored - began
    if not rows:
        return 0
    inserted, already = store_history(conn, rows)
    trimming = time.perf_counter()
    tally.phases["store"] += trimming - stored
    # Only now, with this slice committed and verified, is it trimmed from Redis.
    tally.trimmed += store.delete_ranges(list(series), start, end - 1)
    tally.phases["trim"] += time.perf_counter() - trimming
    tally.series.update(series)
    tally.samples += len(rows)
    tally.inserted += inserted
    tally.already += already
    tally.chunks += 1
    return len(rows)


def archive_hot_store(
    settings: Settings,
    interval_end: datetime,
    store: HotStore | None = None,
    secrets: Secrets | None = None,
) -> ArchiveResult:
    """Move every IP sample older than the hot window from the hot store into history, a
    bounded time slice at a time, oldest first."""
    cutoff = archive_cutoff_ms(interval_end, settings.hot_store.hot_window_hours)
    client = None
    if store is None:
        client = redis_client(settings)
        store = open_hot_store(client, settings)
    tally = _Tally()
    try:
        keys = store.query_index({"source": "ip"})
        firsts = [t for t in store.first_timestamps(keys).values() if t is not None]
        start, slice_ms = min(firsts, default=cutoff), FIRST_SLICE_MS
        if start < cutoff:
            identity = series_identity(store, settings, keys)  # once, not per slice
            chunk = settings.hot_store.archive_chunk_samples
            with db.connect(settings, secrets) as conn:
                while start < cutoff:
                    end = min(start + slice_ms, cutoff)
                    found = archive_slice(conn, store, settings, identity, start, end, tally)
                    start, slice_ms = end, next_slice_ms(slice_ms, found, chunk)
    finally:
        if client is not None:
            client.close()
    return ArchiveResult(
        cutoff,
        len(tally.series),
        tally.samples,
        tally.inserted,
        tally.already,
        tally.trimmed,
        {phase: round(seconds, 3) for phase, seconds in tally.phases.items() if seconds},
        tally.chunks,
    )
