"""Archival loses nothing when PostgreSQL goes away: Redis is trimmed only after a verified
commit, and a retry finishes the job without duplicating a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from lambdawatch.core import db
from lambdawatch.core.hot_store import open_hot_store, redis_client
from lambdawatch.core.pipeline_health import record_hot_store_stats
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines import archive

pytestmark = pytest.mark.integration
END = datetime(2026, 6, 1, tzinfo=UTC)
IP = "203.0.113.91"
KEY = f"test:archive-loss:{IP}:unq_dst_ip"


def _history(settings: Settings, stack: LocalStack) -> list[tuple[datetime, float]]:
    with db.connect(settings, stack.secrets) as conn:
        return conn.execute(
            "SELECT ts, value FROM ip_history WHERE ip = %s ORDER BY ts", (IP,)
        ).fetchall()


def test_archive_survives_postgres_loss_and_retries_cleanly(
    local_stack: LocalStack, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        db.apply_migrations(conn, settings.root / "sql")
    cutoff = END - timedelta(hours=settings.hot_store.hot_window_hours)
    stamps = [cutoff - timedelta(minutes=m) for m in range(1, 61)]
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        store.ensure_series(KEY, {"source": "ip", "ip": IP, "feature": "unq_dst_ip"}, 10**12)
        store.add([(KEY, int(t.timestamp() * 1000), float(i)) for i, t in enumerate(stamps)])
        before = store.range(KEY, 0, 2**62)

        # 1. PostgreSQL unreachable: the task fails, Redis is untouched.
        unreachable = settings.model_copy(update={"postgres_port": 1})
        with pytest.raises(psycopg.OperationalError):
            archive.archive_hot_store(unreachable, END, store, local_stack.secrets)
        assert store.range(KEY, 0, 2**62) == before

        # 2. The server drops the connection mid-transaction (after the insert, before the
        #    commit): rolled back, nothing in history, Redis untouched.
        monkeypatch.setattr(
            archive,
            "FIRST_ARCHIVE_SQL",
            archive.FIRST_ARCHIVE_SQL + "; SELECT pg_terminate_backend(pg_backend_pid())",
        )
        with pytest.raises(psycopg.OperationalError):
            archive.archive_hot_store(settings, END, store, local_stack.secrets)
        monkeypatch.undo()
        assert store.range(KEY, 0, 2**62) == before
        assert _history(settings, local_stack) == []

        # 3. Redis goes away after the first slice's commit, before its trim: that slice is in
        #    history, Redis still has every sample.
        def redis_lost(*_: object) -> int:
            raise ConnectionError("redis went away")

        monkeypatch.setattr(store, "delete_ranges", redis_lost)
        with pytest.raises(ConnectionError):
            archive.archive_hot_store(settings, END, store, local_stack.secrets)
        monkeypatch.undo()
        assert store.range(KEY, 0, 2**62) == before
        first_slice = [row[0] for row in _history(settings, local_stack)]
        assert first_slice
        assert set(first_slice) <= set(stamps)

        # 4. The retry finds that slice archived (its plain insert hits a unique violation, so
        #    it inserts if absent and verifies by lookup), archives the rest, then trims.
        result = archive.archive_hot_store(settings, END, store, local_stack.secrets)
        assert result.already_archived >= len(first_slice)
        assert result.inserted + result.already_archived >= len(stamps)
        assert result.trimmed >= len(stamps)
        assert store.range(KEY, 0, 2**62) == []
        history = _history(settings, local_stack)
        assert [row[0] for row in history] == sorted(stamps)

        # 5. Once more: nothing left to archive, nothing duplicated.
        again = archive.archive_hot_store(settings, END, store, local_stack.secrets)
        assert again.inserted == 0
        assert _history(settings, local_stack) == history
    finally:
        client.close()


def test_a_backlog_goes_in_bounded_slices_oldest_first_each_committed_then_trimmed(
    local_stack: LocalStack, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three series of 2,000 one-second samples, a year older than any other test's, with
    slices of about 1,000 samples: the third slice's commit fails. What came before is in
    history and gone from Redis, the rest untouched in Redis, nothing in both; the retry
    finishes, in several slices, with every sample archived once."""
    small = settings.model_copy(
        update={"hot_store": settings.hot_store.model_copy(update={"archive_chunk_samples": 1000})}
    )
    first = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ips = [f"203.0.113.{n}" for n in (101, 102, 103)]
    keys = {ip: f"test:archive-chunks:{ip}:bytesin" for ip in ips}
    wanted = {(ip, first + s * 1000) for ip in ips for s in range(2000)}

    def history() -> set[tuple[str, int]]:
        with db.connect(settings, local_stack.secrets) as conn:
            rows = conn.execute(
                "SELECT ip, ts FROM ip_history WHERE ip = ANY(%s) AND feature = 'bytesin'",
                (ips,),
            ).fetchall()
        return {(ip, int(ts.timestamp() * 1000)) for ip, ts in rows}

    def hot() -> set[tuple[str, int]]:
        return {(ip, ts) for ip, key in keys.items() for ts, _ in store.range(key, 0, 2**62)}

    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        for ip, key in keys.items():
            store.ensure_series(key, {"source": "ip", "ip": ip, "feature": "bytesin"}, 0)
            store.add([(key, ts, 1.0) for owner, ts in sorted(wanted) if owner == ip])
        calls = []
        real_store = archive.store_history

        def failing_third(conn: psycopg.Connection, rows: list) -> tuple[int, int]:
            calls.append(len(rows))
            if len(calls) == 3:
                raise psycopg.OperationalError("connection lost")
            return real_store(conn, rows)

        monkeypatch.setattr(archive, "store_history", failing_third)
        with pytest.raises(psycopg.OperationalError):
            archive.archive_hot_store(small, END, store, local_stack.secrets)
        monkeypatch.undo()
        archived, left = history(), hot()
        assert archived
        assert left
        assert archived | left == wanted
        assert not archived & left
        assert max(ts for _, ts in archived) < min(ts for _, ts in left)  # oldest first
        assert max(calls) <= 1100  # a slice: about the chunk (the density here is even)

        result = archive.archive_hot_store(small, END, store, local_stack.secrets)
        assert result.chunks > 1
        assert history() == wanted
        assert hot() == set()
    finally:
        for key in keys.values():
            store.delete_range(key, 0, 2**62)
        client.close()


def test_a_sample_waiting_past_the_limit_raises_the_archive_lag_anomaly(
    local_stack: LocalStack, settings: Settings
) -> None:
    """Nothing expires by itself: a sample the archive has not moved stays, and once it is
    older than ``hot_store.retention_hours`` the sampling raises one anomaly for it."""
    key = "test:archive-lag:203.0.113.92:unq_dst_ip"
    limit = settings.hot_store.retention_hours
    old = datetime.now(UTC) - timedelta(hours=limit + 1)
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        store.ensure_series(key, {"source": "ip", "ip": "203.0.113.92", "feature": "x"}, 0)
        store.add([(key, int(old.timestamp() * 1000), 1.0)])
        store.add([(key, int(datetime.now(UTC).timestamp() * 1000), 2.0)])
        assert len(store.range(key, 0, 2**62)) == 2  # the old one was not expired on write
        with db.connect(settings, local_stack.secrets) as conn:  # as the DAGs' batch role
            for _ in range(2):  # two samplings, one finding
                _series, _used, oldest = record_hot_store_stats(conn, client, store, limit)
                conn.commit()
            rows = conn.execute(
                "SELECT window_start, severity, value > %s FROM anomalies "
                "WHERE detector = 'archive_lag'",
                (limit,),
            ).fetchall()
            conn.execute("DELETE FROM anomalies WHERE detector = 'archive_lag'")
            conn.commit()
        assert oldest is not None
        assert oldest <= old + timedelta(seconds=1)  # other tests' samples may be older still
        assert [(r[0], r[2]) for r in rows] == [(oldest, True)]  # one finding, past the limit
    finally:
        store.delete_range(key, 0, 2**62)
        client.close()
