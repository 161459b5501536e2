"""The ``incidents`` query.

Anomalies (the ``anomalies`` topic; the CPU detector's verdicts from ``cpu-status``, where a
window's later SAFE verdict withdraws an earlier WARN) → incidents, by the rules of
``spark_apps.transforms.incidents``. Server and CDN events give each entity's datacenter or
PoP. The incidents and the anomalies they hold are kept in PostgreSQL, where an operator's
acknowledgement or resolution lands too, and each micro-batch applies in one transaction with
its batch id (a replayed batch is skipped). Changed incidents go to the ``incidents`` topic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core import db
from lambdawatch.core.events import CDN_SCHEMA, SERVER_SCHEMA
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import DOUBLE, SPEED_LAYER, TABLES, TIMESTAMPTZ
from lambdawatch.core.webhooks import Notifier, delivery_policy
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS, ANOMALY_KEY, TIMESTAMP_FORMAT
from spark_apps.detectors.cpu import cpu_store_rows, latest_cpu_store_writes, parse_cpu_status
from spark_apps.io import StreamIO
from spark_apps.transforms.incidents import (
    QUIET,
    Incident,
    IncidentRules,
    Signal,
    SignalKey,
    Step,
    Suppression,
    advance,
    stale_before,
)

log = logging.getLogger("lambdawatch.speed_layer")
QUERY = "incidents"
# Per micro-batch: most records read are events, only scanned for their datacenter or PoP, so
# a batch takes many more than the detectors' queries do; a query started over a long history
# (a new checkpoint reads from the earliest offsets) then catches up in a few batches.
MAX_OFFSETS = 1_000_000
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew allowed to a source's event times
NUL_REASON = "unwritable: a text value holds a NUL character, which PostgreSQL cannot store"
CPU_DETECTOR = "cpu_anomalies"  # its verdicts, withdrawals included, come from cpu-status
INCIDENT_COLUMNS = TABLES["incidents"].names_except(
    "opened_at", "acknowledged_at", "resolved_at", "false_positive", "feedback", "updated_at"
)
SIGNAL_COLUMNS = TABLES["incident_signals"].names
SIGNAL_SCHEMA = pa.schema(
    [
        (
            c.name,
            pa.timestamp("us", tz="UTC")
            if c.type == TIMESTAMPTZ
            else (pa.float64() if c.type == DOUBLE else pa.string()),
        )
        for c in TABLES["incident_signals"].columns
    ]
)
# where an entity's group is in its events: role → (entity field, group field, group kind)
GROUP_FIELDS = {
    SERVER_SCHEMA.topic_role: (SERVER_SCHEMA.key_field, "datacenter", "datacenter"),
    CDN_SCHEMA.topic_role: (CDN_SCHEMA.key_field, "pop", "pop"),
}


def rules_of(settings: Settings) -> IncidentRules:
    config = settings.incidents
    return IncidentRules(config.warn_count, config.warn_window, config.quiet)


def start(io: StreamIO) -> StreamingQuery:
    """The query, and beside it the notifier that POSTs incident changes to the webhooks."""
    config = io.settings.incidents
    io.once(
        "incident-notifier",
        lambda: Notifier(
            lambda: db.connect(io.settings, io.secrets, role=SPEED_LAYER),
            config.webhooks,
            io.secrets.incident_webhook_secret.get_secret_value().encode(),
            delivery_policy(config),
        ).start(),
    )  # once per process: a restarted query keeps the running notifier
    # micro-batch ids count per checkpoint: a new checkpoint starts again at 0
    progress_key = f"{QUERY}@{io.checkpoint(QUERY)}"
    roles = ("anomalies", "cpu_status", *GROUP_FIELDS)
    topic_roles = {io.settings.topic(role).name: role for role in roles}
    rules = rules_of(io.settings)

    def sink(frame: DataFrame, batch_id: int) -> None:
        frame = frame.persist()
        try:
            by_role = {
                role: frame.where(F.col("topic") == topic) for topic, role in topic_roles.items()
            }
            anomalies = parse_anomalies(by_role["anomalies"]).toArrow()
            cpu = latest_cpu_store_writes(
                cpu_store_rows(parse_cpu_status(by_role["cpu_status"])).toArrow()
            )
            groups = entity_groups(
                [by_role[role] for role in GROUP_FIELDS], list(GROUP_FIELDS.values())
            ).toArrow()
        finally:
            frame.unpersist()
        unstorable: list[dict[str, Any]] = []
        anomalies, cpu_found, cpu_gone, groups = (
            storable(table, unstorable)
            for table in (anomalies, cpu.anomalies, cpu.withdrawn, groups)
        )
        if unstorable:  # before the transaction: the batch's other rows still go in
            io.dead_letter_rows(QUERY, batch_id, [(row, NUL_REASON) for row in unstorable])
        arrived = signals_of(anomalies) + signals_of(cpu_found)
        withdrawn = keys_of(cpu_gone)
        clock = bounded_clock(
            max_time(cpu.windows, "window_end", anomalies, "window_end", groups, "last_seen"),
            datetime.now(UTC),
        )
        with io.pool.connection() as conn, conn.transaction():
            changed = apply_batch(
                conn, progress_key, batch_id, arrived, withdrawn, groups, clock, rules
            )
        if arrived or withdrawn or changed:
            log.info(
                "incidents: batch %d: %d findings, %d withdrawn, clock %s: %d incidents changed",
                batch_id, len(arrived), len(withdrawn), clock, len(changed),
            )  # fmt: skip
        if changed:
            publish(io, changed)

    source = io.kafka_source(*roles, max_offsets=MAX_OFFSETS)
    return io.start_query(QUERY, source.select("topic", "value", "offset"), batch_sink=sink)


def parse_anomalies(records: DataFrame) -> DataFrame:
    """Anomaly records of every detector but the CPU one (read from its status topic)."""
    parsed = F.from_json(
        F.col("value").cast("string"),
        TABLES["anomalies"].spark_ddl(),
        {"timestampFormat": TIMESTAMP_FORMAT},
    )
    return (
        records.select(parsed.alias("a"))
        .select("a.*")
        .where(F.col("detector").isNotNull() & (F.col("detector") != CPU_DETECTOR))
    )


def entity_groups(frames: list[DataFrame], fields: list[tuple[str, str, str]]) -> DataFrame:
    """Each entity's datacenter or PoP as its events gave it (events without one say
    nothing), with the latest event time."""
    parts = []
    for records, (entity_field, group_field, kind) in zip(frames, fields, strict=True):
        value = F.col("value").cast("string")
        parts.append(
            records.select(
                F.get_json_object(value, f"$.{entity_field}").alias("entity"),
                F.lit(kind).alias("group_kind"),
                F.get_json_object(value, f"$.{group_field}").alias("group_name"),
                # try_: a malformed time is one event's problem, never the micro-batch's
                F.try_to_timestamp(F.get_json_object(value, "$.timestamp")).alias("seen"),
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return (
        union.where(F.col("entity").isNotNull() & (F.trim(F.col("group_name")) != ""))
        .groupBy("entity", "group_kind", "group_name")
        .agg(F.max("seen").alias("last_seen"))
    )


def storable(table: pa.Table, unstorable: list[dict[str, Any]]) -> pa.Table:
    """The rows PostgreSQL can store; the others (a text value holding a NUL character) are
    added to ``unstorable``. Filtered here, not by the sink guard's bisection: a part of a
    batch re-run under the same batch id would be skipped as a replay."""
    bad = None
    for name in table.column_names:
        if pa.types.is_string(table[name].type):
            has_nul = pc.fill_null(pc.match_substring(table[name], "\x00"), False)
            bad = has_nul if bad is None else pc.or_(bad, has_nul)
    if bad is None or not pc.any(bad).as_py():
        return table
    unstorable.extend(table.filter(bad).to_pylist())
    return table.filter(pc.invert(bad))


def signals_of(table: pa.Table) -> list[Signal]:
    return [Signal(**row) for row in table.select(list(ANOMALY_COLUMNS)).to_pylist()]


def keys_of(table: pa.Table) -> list[SignalKey]:
    return [tuple(row[c] for c in ANOMALY_KEY) for row in table.to_pylist()]  # type: ignore[misc]


def bounded_clock(latest: datetime | None, now: datetime) -> datetime | None:
    """The batch's newest event time, but never more than ``FUTURE_TOLERANCE`` ahead of
    ``now``: one event stamped in the year 9999 must not resolve every incident."""
    return None if latest is None else min(latest, now + FUTURE_TOLERANCE)


def max_time(*pairs: Any) -> datetime | None:
    """The latest of the named timestamp columns (table, column, table, column, …)."""
    latest = None
    for table, column in zip(pairs[::2], pairs[1::2], strict=True):
        if table.num_rows:
            value = pc.max(table[column]).as_py()
            if value is not None and (latest is None or value > latest):
                latest = value
    return latest


def apply_batch(
    conn: Any,
    query: str,
    batch_id: int,
    arrived: list[Signal],
    withdrawn: list[SignalKey],
    groups: pa.Table,
    batch_clock: datetime | None,
    rules: IncidentRules,
) -> list[Incident]:
    """One micro-batch of ``query``, inside the caller's transaction; the incidents it
    changed (none when the batch was applied before)."""
    progress = conn.execute(
        "SELECT batch_id, clock FROM incident_progress WHERE query = %s FOR UPDATE", (query,)
    ).fetchone()
    if progress is not None and progress[0] >= batch_id:
        log.warning("incidents: batch %d of %s was applied before: skipped", batch_id, query)
        return []  # replayed after a crash: applied already
    clock = max(
        (t for t in (batch_clock, progress[1] if progress else None) if t is not None),
        default=None,
    )
    record_groups(conn, groups)
    step = Step()
    if clock is not None:
        earliest = min((s.window_start for s in arrived), default=clock)
        latest = max((s.window_end for s in arrived), default=clock)
        active = load_active(conn, earliest - rules.quiet, latest)
        held = load_held(conn, arrived, withdrawn)
        entities = {s.entity for s in arrived}
        groups_now = load_groups(conn, entities)
        muting = load_suppressions(conn, earliest, latest)
        step = advance(active, held, arrived, withdrawn, groups_now, clock, rules, muting)
        write_step(conn, step)
        conn.execute(
            "DELETE FROM incident_signals WHERE incident_id IS NULL AND window_end < %s",
            (stale_before(clock, rules),),
        )
    conn.execute(
        "INSERT INTO incident_progress (query, batch_id, clock) VALUES (%s, %s, %s) "
        "ON CONFLICT (query) DO UPDATE SET batch_id = EXCLUDED.batch_id, "
        "clock = EXCLUDED.clock, updated_at = now()",
        (query, batch_id, clock),
    )
    return list(step.incidents.values())


def record_groups(conn: Any, groups: pa.Table) -> None:
    """Each entity's datacenter or PoP as its newest event gave it: replayed history (older
    events read later) never overwrites what newer events said."""
    rows = [
        (row["entity"], row["group_kind"], row["group_name"], row["last_seen"])
        for row in groups.to_pylist()
        if row["last_seen"] is not None
    ]
    if rows:
        conn.cursor().executemany(
            "INSERT INTO entity_groups (entity, group_kind, group_name, last_seen) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (entity) DO UPDATE SET "
            "group_kind = EXCLUDED.group_kind, group_name = EXCLUDED.group_name, "
            "last_seen = EXCLUDED.last_seen WHERE entity_groups.last_seen <= EXCLUDED.last_seen",
            sorted(rows, key=lambda row: row[3]),
        )


def load_active(conn: Any, since: datetime, until: datetime) -> list[Incident]:
    """Open and acknowledged incidents, and those resolved by quiet whose span meets
    ``[since, until]`` (a late finding may still join them); locked, so an operator's act on
    one waits for the batch."""
    names = ", ".join(INCIDENT_COLUMNS)
    rows = conn.execute(
        f"SELECT {names} FROM incidents WHERE state <> 'resolved' "
        "OR (resolved_by = %s AND last_seen >= %s AND first_seen <= %s) FOR UPDATE",
        (QUIET, since, until),
    ).fetchall()
    return [incident_of(dict(zip(INCIDENT_COLUMNS, row, strict=True))) for row in rows]


def load_held(conn: Any, arrived: list[Signal], withdrawn: list[SignalKey]) -> list[Signal]:
    """The stored signals a batch may touch: those it re-judges or withdraws, and the pending
    WARNs of its entities (never a whole incident's findings)."""
    keys = [s.key for s in arrived] + list(withdrawn)
    detectors, entities, metrics, starts = ([key[i] for key in keys] for i in range(4))
    names = ", ".join(SIGNAL_COLUMNS)
    rows = conn.execute(
        f"SELECT {names} FROM incident_signals WHERE (detector, entity, metric, window_start) "
        "IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])) "
        f"UNION SELECT {names} FROM incident_signals "
        "WHERE incident_id IS NULL AND entity = ANY(%s)",
        (detectors, entities, metrics, starts, sorted({s.entity for s in arrived})),
    ).fetchall()
    return [Signal(**dict(zip(SIGNAL_COLUMNS, row, strict=True))) for row in rows]


def load_suppressions(conn: Any, since: datetime, until: datetime) -> list[Suppression]:
    """The operator's suppression rules that may match findings in ``[since, until]``."""
    rows = conn.execute(
        "SELECT detector, entity, metric, starts_at, until FROM suppressions "
        "WHERE until > %s AND starts_at <= %s",
        (since, until),
    ).fetchall()
    return [Suppression(*row) for row in rows]


def load_groups(conn: Any, entities: Iterable[str]) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT entity, group_kind, group_name FROM entity_groups WHERE entity = ANY(%s)",
        (sorted(entities),),
    ).fetchall()
    return {entity: (kind, name) for entity, kind, name in rows}


def incident_of(row: dict[str, Any]) -> Incident:
    strongest = Signal(
        detector=row["strongest_detector"],
        entity=row["strongest_entity"],
        metric=row["strongest_metric"],
        window_start=row["strongest_window_start"],
        window_end=row["strongest_window_start"],
        value=row["strongest_value"],
        expected=row["strongest_expected"],
        score=row["strongest_score"],
        severity=row["severity"],
        model_version="",
        detected_at=row["strongest_window_start"],
    )
    return Incident(
        incident_id=row["incident_id"],
        scope=row["scope"],
        state=row["state"],
        severity=row["severity"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        entities=tuple(row["entities"]),
        metrics=tuple(row["metrics"]),
        detectors=tuple(row["detectors"]),
        members=row["members"],
        strongest=strongest,
        summary=row["summary"],
        resolved_by=row["resolved_by"],
    )


def incident_row(incident: Incident) -> dict[str, Any]:
    s = incident.strongest
    return {
        "incident_id": incident.incident_id,
        "scope": incident.scope,
        "state": incident.state,
        "severity": incident.severity,
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "entities": list(incident.entities),
        "metrics": list(incident.metrics),
        "detectors": list(incident.detectors),
        "members": incident.members,
        "strongest_detector": s.detector,
        "strongest_entity": s.entity,
        "strongest_metric": s.metric,
        "strongest_window_start": s.window_start,
        "strongest_value": s.value,
        "strongest_expected": s.expected,
        "strongest_score": s.score,
        "summary": incident.summary,
        "resolved_by": incident.resolved_by,
    }


def write_step(conn: Any, step: Step) -> None:
    """The step's incidents, signals and transitions; a resolved incident gets its
    ``resolved_at`` once."""
    names = ", ".join(INCIDENT_COLUMNS)
    placeholders = ", ".join(["%s"] * len(INCIDENT_COLUMNS))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INCIDENT_COLUMNS if c != "incident_id")
    with conn.cursor() as cursor:
        if step.deleted:
            cursor.executemany(
                "DELETE FROM incident_signals WHERE detector = %s AND entity = %s "
                "AND metric = %s AND window_start = %s",
                sorted(step.deleted),
            )
        if step.incidents:
            cursor.executemany(
                f"INSERT INTO incidents ({names}) VALUES ({placeholders}) "
                f"ON CONFLICT (incident_id) DO UPDATE SET {updates}, updated_at = now(), "
                "resolved_at = CASE WHEN EXCLUDED.state = 'resolved' "
                "THEN coalesce(incidents.resolved_at, now()) END",
                [tuple(incident_row(i).values()) for i in step.incidents.values()],
            )
        if step.signals:
            rows = pa.Table.from_pylist(
                [{c: getattr(sig, c) for c in SIGNAL_COLUMNS} for sig in step.signals.values()],
                schema=SIGNAL_SCHEMA,
            )  # COPYed, then merged: a catch-up batch holds many thousands
            db.upsert_rows(conn, "incident_signals", SIGNAL_COLUMNS, rows, ANOMALY_KEY)
        if step.transitions:
            cursor.executemany(
                "INSERT INTO incident_transitions (incident_id, transition, at, severity, by_whom) "
                "VALUES (%s, %s, %s, %s, 'stream') ON CONFLICT DO NOTHING",
                [
                    (t.incident_id, t.kind, t.at, step.incidents[t.incident_id].severity)
                    for t in step.transitions
                ],
            )


def incident_json(incident: Incident) -> bytes:
    return orjson.dumps(incident_row(incident), option=orjson.OPT_UTC_Z)


def publish(io: StreamIO, incidents: list[Incident]) -> None:
    """Each changed incident's state to the ``incidents`` topic, keyed by its id."""
    frame = io.spark.createDataFrame(
        [(i.incident_id.encode(), incident_json(i)) for i in incidents], "key binary, value binary"
    )
    io.write_kafka(frame, "incidents", QUERY)
