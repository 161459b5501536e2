"""What the platform records about itself for the "Pipeline health" dashboard.

Three signals, each written where it is known: the speed layer's per-batch progress (events/s
and consumer lag per Kafka source, from Spark's own progress report), each batch DAG's
successful runs (written by the run's last task), and the hot store's size and archive lag
(sampled by the tasks that change it; an anomaly when the archive is late). Parsing is pure;
the writers are thin upserts, safe to repeat.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from lambdawatch.core import db
from lambdawatch.core.hot_store import HotStore, open_hot_store, redis_client
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings

SUBSCRIPTION = re.compile(r"Subscribe(?:Pattern)?\[([^\]]*)\]")


@dataclass(frozen=True)
class SourceProgress:
    """One Kafka source of one micro-batch (a row of ``speed_layer_progress``)."""

    query: str
    batch_id: int
    source: str
    batch_ts: str
    input_rows: int
    input_rows_per_second: float | None
    processed_rows_per_second: float | None
    offsets_behind_latest: int | None
    batch_duration_ms: int | None
    watermark: str | None  # the event-time watermark the batch applied (a windowed query's)
    late_rows: int | None  # rows its stateful operators dropped as behind that watermark
    lost_rows: int | None  # records retention deleted before the batch could read them


@dataclass(frozen=True)
class SinkError:
    """What a guarded sink set aside in one micro-batch (a row of ``speed_layer_errors``)."""

    query: str
    batch_id: int
    error: str
    records: int
    disposition: str  # dead_letters | quarantine
    recorded_at: str


def source_name(description: str) -> str:
    """``KafkaV2[Subscribe[ip-events]]`` → ``ip-events``; other sources keep their description."""
    match = SUBSCRIPTION.search(description)
    return match.group(1) if match else description


def kafka_offsets(raw: Any) -> dict[str, dict[str, int]]:
    """Spark reports offsets as a JSON string (or dict) of topic → partition → offset."""
    if raw is None:
        return {}
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}


def offsets_behind(source: Mapping[str, Any]) -> int | None:
    """Consumer lag of a source after the batch: latest minus processed, summed over partitions.

    Falls back to the connector's own ``maxOffsetsBehindLatest`` metric when Spark did not
    report the latest offsets; ``None`` when neither is known (not a Kafka source).
    """
    end, latest = kafka_offsets(source.get("endOffset")), kafka_offsets(source.get("latestOffset"))
    if end and latest:
        return sum(
            max(0, int(offset) - int(end.get(topic, {}).get(partition, offset)))
            for topic, partitions in latest.items()
            for partition, offset in partitions.items()
        )
    metric = (source.get("metrics") or {}).get("maxOffsetsBehindLatest")
    return int(float(metric)) if metric is not None else None


def lost_rows(source: Mapping[str, Any]) -> int | None:
    """Records a batch's offset range held that it could not read: retention had deleted them.

    With ``failOnDataLoss`` off, Spark keeps the checkpointed start offsets in the progress but
    reads from the earliest offset still there, so the range's size minus the rows read is
    what was lost (event topics are neither compacted nor transactional: offsets are dense).
    None when unknowable: the first batch (no start) or a partition new to this batch.
    """
    start, end = kafka_offsets(source.get("startOffset")), kafka_offsets(source.get("endOffset"))
    if not start or not end:
        return None
    span = 0
    for topic, partitions in end.items():
        for partition, offset in partitions.items():
            first = start.get(topic, {}).get(partition)
            if first is None or int(first) < 0:  # new partition, or a symbolic start
                return None
            span += max(0, int(offset) - int(first))
    return max(0, span - int(source.get("numInputRows") or 0))


NO_WATERMARK = "1970-01-01T00:00:00.000Z"  # what Spark reports before the first event


def batch_watermark(progress: Mapping[str, Any]) -> str | None:
    """The watermark a micro-batch applied, or None for a query without one (or none yet)."""
    value = (progress.get("eventTime") or {}).get("watermark")
    return None if value in (None, NO_WATERMARK) else str(value)


def late_rows(progress: Mapping[str, Any]) -> int | None:
    """Rows the batch's stateful operators dropped as behind the watermark: Spark's own count
    (``numRowsDroppedByWatermark``); None for a query without a watermark."""
    if batch_watermark(progress) is None:
        return None
    return sum(
        int(operator.get("numRowsDroppedByWatermark") or 0)
        for operator in progress.get("stateOperators") or []
    )


def progress_rows(progress: Mapping[str, Any]) -> list[SourceProgress]:
    """The rows one ``StreamingQueryProgress`` (its JSON form) contributes, one per source.

    A source is one Kafka subscription, so a query's late rows are its source's."""
    rows = []
    for source in progress.get("sources", []):
        rows.append(
            SourceProgress(
                query=str(progress.get("name") or progress.get("id")),
                batch_id=int(progress["batchId"]),
                source=source_name(str(source.get("description", ""))),
                batch_ts=str(progress["timestamp"]),
                input_rows=int(source.get("numInputRows") or 0),
                input_rows_per_second=_finite(source.get("inputRowsPerSecond")),
                processed_rows_per_second=_finite(source.get("processedRowsPerSecond")),
                offsets_behind_latest=offsets_behind(source),
                batch_duration_ms=_int_or_none(progress.get("batchDuration")),
                watermark=batch_watermark(progress),
                late_rows=late_rows(progress),
                lost_rows=lost_rows(source),
            )
        )
    return rows


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


PROGRESS_UPSERT = """
INSERT INTO speed_layer_progress (query, batch_id, source, batch_ts, input_rows,
    input_rows_per_second, processed_rows_per_second, offsets_behind_latest, batch_duration_ms,
    watermark, late_rows, lost_rows)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (query, batch_id, source) DO UPDATE SET
    batch_ts = EXCLUDED.batch_ts, input_rows = EXCLUDED.input_rows,
    input_rows_per_second = EXCLUDED.input_rows_per_second,
    processed_rows_per_second = EXCLUDED.processed_rows_per_second,
    offsets_behind_latest = EXCLUDED.offsets_behind_latest,
    batch_duration_ms = EXCLUDED.batch_duration_ms,
    watermark = EXCLUDED.watermark, late_rows = EXCLUDED.late_rows,
    lost_rows = EXCLUDED.lost_rows
"""


def write_progress(conn: psycopg.Connection, rows: list[SourceProgress]) -> None:
    """Upsert progress rows (a re-run batch id after a restart replaces its row)."""
    if rows:
        with conn.cursor() as cursor:
            cursor.executemany(PROGRESS_UPSERT, [astuple(row) for row in rows])


def live_watermarks(conn: psycopg.Connection, topic: str) -> dict[str, datetime]:
    """The latest event-time watermark of each speed-layer query that reads ``topic`` (from
    the last day's progress): an event older than a query's is late for it."""
    rows = conn.execute(
        "SELECT DISTINCT ON (query) query, watermark FROM speed_layer_progress "
        "WHERE batch_ts > now() - interval '1 day' AND watermark IS NOT NULL "
        "AND %s = ANY(string_to_array(source, ',')) ORDER BY query, batch_ts DESC",
        (topic,),
    ).fetchall()
    return dict(rows)


def write_sink_error(conn: psycopg.Connection, error: SinkError) -> None:
    """One micro-batch's set-aside records; a replayed batch that sets them aside again updates
    its row."""
    conn.execute(
        "INSERT INTO speed_layer_errors (query, batch_id, error, records, disposition, "
        "recorded_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (query, batch_id) DO UPDATE "
        "SET error = EXCLUDED.error, records = EXCLUDED.records, "
        "disposition = EXCLUDED.disposition, recorded_at = EXCLUDED.recorded_at",
        astuple(error),
    )


def record_batch_run(
    conn: psycopg.Connection,
    dag_id: str,
    run_id: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Mark a DAG run successful; a cleared and re-run run updates its own row."""
    conn.execute(
        "INSERT INTO batch_runs (dag_id, run_id, interval_start, interval_end, details) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (dag_id, run_id) DO UPDATE SET "
        "interval_start = EXCLUDED.interval_start, interval_end = EXCLUDED.interval_end, "
        "finished_at = now(), details = EXCLUDED.details",
        (dag_id, run_id, interval_start, interval_end, json.dumps(details or {}, default=str)),
    )


ARCHIVE_LAG = ("archive_lag", "hot_store", "oldest_unarchived_sample_hours")


def archive_lag(
    sampled_at: datetime, oldest: datetime | None, limit_hours: float
) -> tuple[Any, ...] | None:
    """The anomaly row (``anomalies`` columns) when the hot store's oldest sample is older than
    ``limit_hours``: WARN beyond it, ERROR beyond twice it. Keyed by that oldest sample's time,
    so one lagging archive is one finding, updated at each sampling, not one per sampling."""
    if oldest is None:
        return None
    lag_hours = (sampled_at - oldest).total_seconds() / 3600
    if lag_hours <= limit_hours:
        return None
    severity = "ERROR" if lag_hours > 2 * limit_hours else "WARN"
    return (*ARCHIVE_LAG, oldest, sampled_at, lag_hours, limit_hours,
            lag_hours / limit_hours, severity, "")  # fmt: skip


def oldest_sample(store: HotStore, keys: list[str]) -> datetime | None:
    """The oldest sample of the series ``keys``: the archive has not moved it yet."""
    known = [first for first in store.first_timestamps(keys).values() if first is not None]
    return datetime.fromtimestamp(min(known) / 1000, tz=UTC) if known else None


def record_hot_store_stats(
    conn: psycopg.Connection, client: redis.Redis, store: HotStore, lag_limit_hours: float
) -> tuple[int, int, datetime | None]:
    """Sample the hot store's series count, Redis memory and oldest sample; raise the archive
    lag anomaly past ``lag_limit_hours``. Returns (series, bytes, oldest)."""
    keys = store.query_index({"source": "ip"})
    series = len(keys)
    used = int(client.info("memory")["used_memory"])
    oldest = oldest_sample(store, keys)
    sampled_at = conn.execute(
        "INSERT INTO hot_store_stats (sampled_at, backend, series, used_memory_bytes, "
        "oldest_sample_at) VALUES (now(), %s, %s, %s, %s) ON CONFLICT (sampled_at) DO NOTHING "
        "RETURNING sampled_at",
        (store.backend, series, used, oldest),
    ).fetchone()
    finding = archive_lag(sampled_at[0], oldest, lag_limit_hours) if sampled_at else None
    if finding is not None:
        conn.execute(
            "INSERT INTO anomalies (detector, entity, metric, window_start, window_end, value, "
            "expected, score, severity, model_version) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
            "(detector, entity, metric, window_start) DO UPDATE SET window_end = "
            "EXCLUDED.window_end, value = EXCLUDED.value, score = EXCLUDED.score, "
            "severity = EXCLUDED.severity, detected_at = now()",
            finding,
        )
    return series, used, oldest


def finish_batch_run(
    settings: Settings,
    dag_id: str,
    run_id: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
    details: Mapping[str, Any] | None = None,
    sample_hot_store: bool = False,
    secrets: Secrets | None = None,
) -> None:
    """A DAG's last task: record the successful run and, for the DAGs that change the hot
    store (feed, archive), sample its size."""
    with db.connect(settings, secrets) as conn:
        conn.autocommit = True
        record_batch_run(conn, dag_id, run_id, interval_start, interval_end, details)
        if sample_hot_store:
            client = redis_client(settings)
            try:
                record_hot_store_stats(
                    conn,
                    client,
                    open_hot_store(client, settings),
                    settings.hot_store.retention_hours,
                )
            finally:
                client.close()
