"""Every table and view of the platform database, declared once: name, columns, types, key.

The migrations in ``sql/`` create them, and a test against the real database holds every
migration's tables and ``v_*`` views to these declarations. Code derives from them rather than
restating columns: the speed layer's sinks and output schemas (``Relation.names``,
``Relation.spark_ddl``) and Superset's datasets (``lambdawatch.ops.dashboards``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# PostgreSQL's names for the types used (as ``information_schema.columns.data_type`` says them)
TEXT, TIMESTAMPTZ, DOUBLE, BIGINT, INTEGER, BOOLEAN, JSONB, NUMERIC, TEXT_ARRAY = (
    "text",
    "timestamp with time zone",
    "double precision",
    "bigint",
    "integer",
    "boolean",
    "jsonb",
    "numeric",
    "ARRAY",  # text[]: information_schema says ARRAY for any array
)
SPARK_TYPES = {
    TEXT: "string",
    TIMESTAMPTZ: "timestamp",
    DOUBLE: "double",
    BIGINT: "long",
    INTEGER: "int",
    BOOLEAN: "boolean",
    JSONB: "string",
    NUMERIC: "double",
    TEXT_ARRAY: "array<string>",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False


# The services that write the platform database, each as its own PostgreSQL role: grants are
# derived from the ``writers`` each table declares (``lambdawatch.core.db.privilege_statements``).
SPEED_LAYER, BATCH = "speed_layer", "batch"
SERVICES = (SPEED_LAYER, BATCH)


@dataclass(frozen=True)
class Relation:
    """A table (with its natural ``key`` and the services that may write it) or a view."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()
    # Retention: the column a row's age is counted by (``retention.days`` in config.json may
    # name the table), and whether the table is partitioned by day on it (sql/017), so
    # retention drops whole days instead of deleting rows.
    time_column: str | None = None
    partitioned_by_day: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def names_except(self, *excluded: str) -> tuple[str, ...]:
        """The columns a writer supplies, when ``excluded`` ones have database defaults."""
        return tuple(name for name in self.names if name not in excluded)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def spark_ddl(self, names: Iterable[str] | None = None) -> str:
        """A Spark DDL schema (``name type, ...``) for these columns, all or ``names``."""
        chosen = [self.column(name) for name in names] if names is not None else self.columns
        return ", ".join(f"{c.name} {SPARK_TYPES[c.type]}" for c in chosen)


# The one anomaly record every detector emits (DESIGN.md, "Contracts"), and its natural key.
ANOMALY_SHAPE = (
    Column("detector", TEXT),
    Column("entity", TEXT),
    Column("metric", TEXT),
    Column("window_start", TIMESTAMPTZ),
    Column("window_end", TIMESTAMPTZ),
    Column("value", DOUBLE, nullable=True),
    Column("expected", DOUBLE, nullable=True),
    Column("score", DOUBLE, nullable=True),
    Column("severity", TEXT),
    Column("model_version", TEXT),
    Column("detected_at", TIMESTAMPTZ),
)
ANOMALY_SHAPE_KEY = ("detector", "entity", "metric", "window_start")
# a backtest judged against labels (``pipelines.quality``); null where nothing was judged
BACKTEST_JUDGEMENT = (
    Column("labels", TEXT, nullable=True),
    Column("episodes", BIGINT, nullable=True),
    Column("detected", BIGINT, nullable=True),
    Column("detected_by_error", BIGINT, nullable=True),
    Column("precision", DOUBLE, nullable=True),
    Column("recall", DOUBLE, nullable=True),
    Column("error_precision", DOUBLE, nullable=True),
    Column("error_recall", DOUBLE, nullable=True),
    Column("median_time_to_detect_s", DOUBLE, nullable=True),
)

# An incident's states (the incidents table's CHECK says the same); the active ones still page.
INCIDENT_STATES = ("open", "acknowledged", "resolved")
ACTIVE_INCIDENT_STATES = ("open", "acknowledged")
TABLES = {
    relation.name: relation
    for relation in (
        Relation(
            "anomalies",
            ANOMALY_SHAPE,
            key=ANOMALY_SHAPE_KEY,
            # the detectors; and Pipeline health's archive-lag finding (a batch task samples it)
            writers=(SPEED_LAYER, BATCH),
            time_column="window_start",
        ),
        Relation(
            "backtest_runs",
            (
                Column("run_id", TEXT),
                Column("detector", TEXT),
                Column("history", TEXT),
                Column("parameters", JSONB),
                Column("model_versions", TEXT),
                Column("judged", BIGINT),
                Column("warn", BIGINT),
                Column("error", BIGINT),
                Column("first_event", TIMESTAMPTZ, nullable=True),
                Column("last_event", TIMESTAMPTZ, nullable=True),
                Column("started_at", TIMESTAMPTZ),
                Column("finished_at", TIMESTAMPTZ),
                *BACKTEST_JUDGEMENT,
            ),
            key=("run_id",),
            writers=(BATCH,),
        ),
        Relation(
            "backtest_episodes",
            (
                Column("run_id", TEXT),
                Column("entity", TEXT),
                Column("kind", TEXT),
                Column("start_ts", TIMESTAMPTZ),
                Column("end_ts", TIMESTAMPTZ),
                Column("first_finding", TIMESTAMPTZ, nullable=True),
                Column("first_error", TIMESTAMPTZ, nullable=True),
                Column("time_to_detect_s", DOUBLE, nullable=True),
            ),
            key=("run_id", "entity", "kind", "start_ts"),
            writers=(BATCH,),
        ),
        Relation(
            "backtest_anomalies",
            (Column("run_id", TEXT), *ANOMALY_SHAPE),  # a run's findings, in the same shape
            key=("run_id", *ANOMALY_SHAPE_KEY),
            writers=(BATCH,),
        ),
        Relation(
            "baselines",
            (
                Column("metric", TEXT),
                Column("entity", TEXT),
                Column("mean", DOUBLE),
                Column("variance", DOUBLE),
                Column("stddev", DOUBLE),
                Column("samples", BIGINT),
                Column("window_start", TIMESTAMPTZ),
                Column("window_end", TIMESTAMPTZ),
                Column("computed_at", TIMESTAMPTZ),
            ),
            key=("metric", "entity"),
            writers=(BATCH,),
        ),
        Relation(
            "batch_runs",
            (
                Column("dag_id", TEXT),
                Column("run_id", TEXT),
                Column("interval_start", TIMESTAMPTZ, nullable=True),
                Column("interval_end", TIMESTAMPTZ, nullable=True),
                Column("finished_at", TIMESTAMPTZ),
                Column("details", JSONB),
            ),
            key=("dag_id", "run_id"),
            writers=(BATCH,),
        ),
        Relation(
            "forecast_quality",
            (
                Column("run_id", TEXT),
                Column("ip", TEXT),
                Column("feature", TEXT),
                Column("model", TEXT),
                Column("points", BIGINT),
                Column("mape", DOUBLE, nullable=True),
                Column("coverage", DOUBLE, nullable=True),
                Column("mase", DOUBLE, nullable=True),
                Column("mase_naive", DOUBLE, nullable=True),
                Column("seasonality_mode", TEXT, nullable=True),
                Column("reason", TEXT, nullable=True),
                Column("created_at", TIMESTAMPTZ),
            ),
            key=("run_id", "ip", "feature"),
            writers=(BATCH,),
        ),
        Relation(
            "ground_truth",
            (
                Column("label_id", TEXT),
                Column("source", TEXT),
                Column("entity", TEXT),
                Column("kind", TEXT),
                Column("start_ts", TIMESTAMPTZ),
                Column("end_ts", TIMESTAMPTZ),
                Column("details", JSONB),
            ),
            key=("label_id",),
            writers=(BATCH,),
        ),
        Relation(
            "hot_store_stats",
            (
                Column("sampled_at", TIMESTAMPTZ),
                Column("backend", TEXT),
                Column("series", BIGINT),
                Column("used_memory_bytes", BIGINT),
                Column("oldest_sample_at", TIMESTAMPTZ, nullable=True),
            ),
            key=("sampled_at",),
            writers=(BATCH,),
        ),
        Relation(
            "entity_groups",
            (
                Column("entity", TEXT),
                Column("group_kind", TEXT),
                Column("group_name", TEXT),
                Column("last_seen", TIMESTAMPTZ),
            ),
            key=("entity",),
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "incidents",
            (
                Column("incident_id", TEXT),
                Column("scope", TEXT),
                Column("state", TEXT),
                Column("severity", TEXT),
                Column("first_seen", TIMESTAMPTZ),
                Column("last_seen", TIMESTAMPTZ),
                Column("entities", TEXT_ARRAY),
                Column("metrics", TEXT_ARRAY),
                Column("detectors", TEXT_ARRAY),
                Column("members", INTEGER),
                Column("strongest_detector", TEXT),
                Column("strongest_entity", TEXT),
                Column("strongest_metric", TEXT),
                Column("strongest_window_start", TIMESTAMPTZ),
                Column("strongest_value", DOUBLE, nullable=True),
                Column("strongest_expected", DOUBLE, nullable=True),
                Column("strongest_score", DOUBLE, nullable=True),
                Column("summary", TEXT),
                Column("resolved_by", TEXT, nullable=True),
                Column("opened_at", TIMESTAMPTZ),
                Column("acknowledged_at", TIMESTAMPTZ, nullable=True),
                Column("resolved_at", TIMESTAMPTZ, nullable=True),
                Column("false_positive", BOOLEAN),
                Column("feedback", TEXT, nullable=True),
                Column("updated_at", TIMESTAMPTZ),
            ),
            key=("incident_id",),
            writers=(SPEED_LAYER, BATCH),
        ),
        Relation(
            "incident_signals",
            (*ANOMALY_SHAPE, Column("incident_id", TEXT, nullable=True)),
            key=ANOMALY_SHAPE_KEY,
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "incident_transitions",
            (
                Column("incident_id", TEXT),
                Column("transition", TEXT),
                Column("at", TIMESTAMPTZ),
                Column("severity", TEXT),
                Column("by_whom", TEXT),
                Column("note", TEXT, nullable=True),
                Column("recorded_at", TIMESTAMPTZ),
                Column("queued_at", TIMESTAMPTZ, nullable=True),  # deliveries queued
            ),
            key=("incident_id", "transition", "at"),
            writers=(SPEED_LAYER, BATCH),
        ),
        Relation(
            "incident_deliveries",
            (
                Column("incident_id", TEXT),
                Column("transition", TEXT),
                Column("at", TIMESTAMPTZ),
                Column("webhook", TEXT),
                Column("state", TEXT),
                Column("attempts", INTEGER),
                Column("last_status", INTEGER, nullable=True),
                Column("last_error", TEXT, nullable=True),
                Column("queued_at", TIMESTAMPTZ),
                Column("last_attempt_at", TIMESTAMPTZ, nullable=True),
                Column("next_attempt_at", TIMESTAMPTZ),
                Column("delivered_at", TIMESTAMPTZ, nullable=True),
            ),
            key=("incident_id", "transition", "at", "webhook"),
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "suppressions",
            (
                Column("suppression_id", BIGINT),
                Column("detector", TEXT, nullable=True),
                Column("entity", TEXT, nullable=True),
                Column("metric", TEXT, nullable=True),
                Column("starts_at", TIMESTAMPTZ),
                Column("until", TIMESTAMPTZ),
                Column("reason", TEXT, nullable=True),
                Column("incident_id", TEXT, nullable=True),
                Column("created_at", TIMESTAMPTZ),
            ),
            key=("suppression_id",),
            writers=(BATCH,),
        ),
        Relation(
            "incident_progress",
            (
                Column("query", TEXT),
                Column("batch_id", BIGINT),
                Column("clock", TIMESTAMPTZ, nullable=True),
                Column("updated_at", TIMESTAMPTZ),
            ),
            key=("query",),
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "ip_forecasts",
            (
                Column("ip", TEXT),
                Column("feature", TEXT),
                Column("ds", TIMESTAMPTZ),
                Column("yhat", DOUBLE),
                Column("yhat_lower", DOUBLE),
                Column("yhat_upper", DOUBLE),
                Column("model", TEXT),
                Column("run_id", TEXT),
                Column("created_at", TIMESTAMPTZ),
                # where one sample of the hour falls (the interval widened by the within-hour
                # scatter); null for forecasts made before it existed
                Column("sample_lower", DOUBLE, nullable=True),
                Column("sample_upper", DOUBLE, nullable=True),
            ),
            key=("ip", "feature", "ds"),
            writers=(BATCH,),
        ),
        Relation(
            "ip_history",
            (
                Column("ip", TEXT),
                Column("feature", TEXT),
                Column("ts", TIMESTAMPTZ),
                Column("value", DOUBLE),
            ),
            key=("ip", "feature", "ts"),
            writers=(BATCH,),
            time_column="ts",
            partitioned_by_day=True,
        ),
        Relation(
            "model_registry",
            (
                Column("model_name", TEXT),
                Column("version", TEXT),
                Column("path", TEXT),
                Column("threshold", DOUBLE, nullable=True),
                Column("metrics", JSONB),
                Column("promoted", BOOLEAN),
                Column("created_at", TIMESTAMPTZ),
            ),
            key=("model_name", "version"),
            writers=(BATCH,),
        ),
        Relation(
            "rt_cdn_clusters",
            (
                Column("edge_id", TEXT),
                Column("ts", TIMESTAMPTZ),
                Column("pop", TEXT, nullable=True),
                Column("region", TEXT, nullable=True),
                Column("event_id", TEXT),
                Column("cluster", INTEGER),
                Column("distance", DOUBLE),
                Column("threshold", DOUBLE),
                Column("anomalous", BOOLEAN),
                Column("model_version", TEXT),
            ),
            key=("edge_id", "ts"),
            writers=(SPEED_LAYER,),
            time_column="ts",
            partitioned_by_day=True,
        ),
        Relation(
            "rt_cdn_cluster_minutes",  # rt_cdn_clusters per minute (sql/020)
            (
                Column("minute", TIMESTAMPTZ),
                Column("cluster", INTEGER),
                Column("model_version", TEXT),
                Column("events", BIGINT),
                Column("anomalous", BIGINT),
            ),
            key=("minute", "cluster", "model_version"),
            writers=(SPEED_LAYER,),  # no retention of its own: it mirrors rt_cdn_clusters
        ),
        Relation(
            "rt_cpu_windows",
            (
                Column("server_id", TEXT),
                Column("window_start", TIMESTAMPTZ),
                Column("window_end", TIMESTAMPTZ),
                Column("mean_cpu", DOUBLE),
                Column("std_cpu", DOUBLE, nullable=True),
                Column("samples", BIGINT),
                Column("expected_mean", DOUBLE),
                Column("expected_std", DOUBLE),
                Column("z", DOUBLE),
                Column("status", TEXT),
            ),
            key=("server_id", "window_start"),
            # the speed layer; and the demo, seeding the windows baseline_stats first learns from
            writers=(SPEED_LAYER, BATCH),
            time_column="window_start",
            partitioned_by_day=True,
        ),
        Relation(
            "rt_ip_windows",
            (
                Column("window_start", TIMESTAMPTZ),
                Column("window_end", TIMESTAMPTZ),
                Column("src_ip", TEXT),
                Column("feature", TEXT),
                Column("samples", BIGINT),
                Column("total", DOUBLE),
                Column("mean", DOUBLE),
            ),
            key=("window_start", "src_ip", "feature"),
            writers=(SPEED_LAYER,),
            time_column="window_start",
            partitioned_by_day=True,
        ),
        Relation(
            "rt_server_status",
            (
                Column("window_start", TIMESTAMPTZ),
                Column("window_end", TIMESTAMPTZ),
                Column("country_code", TEXT),
                Column("country_name", TEXT),
                Column("city", TEXT),
                Column("datacenter", TEXT),
                Column("status_color", TEXT),
                Column("severity_level", INTEGER),
                Column("messages", BIGINT),
                Column("total_resolution_time", BIGINT),
                Column("updated_at", TIMESTAMPTZ),
            ),
            key=("window_start", "datacenter", "status_color", "severity_level"),
            writers=(SPEED_LAYER,),
            time_column="window_start",
            partitioned_by_day=True,
        ),
        Relation(
            "rt_weather",
            (
                Column("city", TEXT),
                Column("ts", TIMESTAMPTZ),
                Column("lat", DOUBLE, nullable=True),
                Column("lon", DOUBLE, nullable=True),
                Column("temperature", DOUBLE),
                Column("feels_like", DOUBLE, nullable=True),
                Column("temperature_minus_feels_like", DOUBLE, nullable=True),
                Column("event_id", TEXT),
            ),
            key=("city", "ts"),
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "speed_layer_errors",
            (
                Column("query", TEXT),
                Column("batch_id", BIGINT),
                Column("error", TEXT),
                Column("records", INTEGER),
                Column("disposition", TEXT),
                Column("recorded_at", TIMESTAMPTZ),
            ),
            key=("query", "batch_id"),
            writers=(SPEED_LAYER,),
        ),
        Relation(
            "speed_layer_progress",
            (
                Column("query", TEXT),
                Column("batch_id", BIGINT),
                Column("source", TEXT),
                Column("batch_ts", TIMESTAMPTZ),
                Column("input_rows", BIGINT),
                Column("input_rows_per_second", DOUBLE, nullable=True),
                Column("processed_rows_per_second", DOUBLE, nullable=True),
                Column("offsets_behind_latest", BIGINT, nullable=True),
                Column("batch_duration_ms", BIGINT, nullable=True),
                Column("watermark", TIMESTAMPTZ, nullable=True),
                Column("late_rows", BIGINT, nullable=True),
                Column("lost_rows", BIGINT, nullable=True),
            ),
            key=("query", "batch_id", "source"),
            writers=(SPEED_LAYER,),
            time_column="batch_ts",
        ),
    )
}

VIEWS = {
    relation.name: relation
    for relation in (
        Relation(
            "v_anomalies",
            (
                Column("detector", TEXT, nullable=True),
                Column("entity", TEXT, nullable=True),
                Column("metric", TEXT, nullable=True),
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("window_end", TIMESTAMPTZ, nullable=True),
                Column("value", DOUBLE, nullable=True),
                Column("expected", DOUBLE, nullable=True),
                Column("score", DOUBLE, nullable=True),
                Column("severity", TEXT, nullable=True),
                Column("model_version", TEXT, nullable=True),
                Column("detected_at", TIMESTAMPTZ, nullable=True),
                Column("detection_delay_s", NUMERIC, nullable=True),
                Column("suppressed", BOOLEAN, nullable=True),
            ),
        ),
        Relation(
            "v_batch_runs",
            (
                Column("dag_id", TEXT, nullable=True),
                Column("run_id", TEXT, nullable=True),
                Column("interval_start", TIMESTAMPTZ, nullable=True),
                Column("interval_end", TIMESTAMPTZ, nullable=True),
                Column("finished_at", TIMESTAMPTZ, nullable=True),
                Column("minutes_since", NUMERIC, nullable=True),
            ),
        ),
        Relation(
            "v_cdn_cluster_minutes",
            (
                Column("minute", TIMESTAMPTZ, nullable=True),
                Column("cluster", INTEGER, nullable=True),
                Column("model_version", TEXT, nullable=True),
                Column("events", BIGINT, nullable=True),
                Column("anomalous", BIGINT, nullable=True),
            ),
        ),
        Relation(
            "v_cdn_clusters",
            (
                Column("edge_id", TEXT, nullable=True),
                Column("ts", TIMESTAMPTZ, nullable=True),
                Column("pop", TEXT, nullable=True),
                Column("region", TEXT, nullable=True),
                Column("cluster", INTEGER, nullable=True),
                Column("distance", DOUBLE, nullable=True),
                Column("threshold", DOUBLE, nullable=True),
                Column("anomalous", BOOLEAN, nullable=True),
                Column("model_version", TEXT, nullable=True),
                Column("distance_ratio", DOUBLE, nullable=True),
            ),
        ),
        Relation(
            "v_cpu_windows",
            (
                Column("server_id", TEXT, nullable=True),
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("window_end", TIMESTAMPTZ, nullable=True),
                Column("mean_cpu", DOUBLE, nullable=True),
                Column("std_cpu", DOUBLE, nullable=True),
                Column("samples", BIGINT, nullable=True),
                Column("expected_mean", DOUBLE, nullable=True),
                Column("expected_std", DOUBLE, nullable=True),
                Column("z", DOUBLE, nullable=True),
                Column("status", TEXT, nullable=True),
            ),
        ),
        Relation(
            "v_hot_store_stats",
            (
                Column("sampled_at", TIMESTAMPTZ, nullable=True),
                Column("backend", TEXT, nullable=True),
                Column("series", BIGINT, nullable=True),
                Column("used_memory_mib", NUMERIC, nullable=True),
                Column("oldest_sample_at", TIMESTAMPTZ, nullable=True),
                Column("archive_lag_hours", NUMERIC, nullable=True),
            ),
        ),
        Relation(
            "v_ip_scans",
            (
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("window_end", TIMESTAMPTZ, nullable=True),
                Column("ip", TEXT, nullable=True),
                Column("feature", TEXT, nullable=True),
                Column("value", DOUBLE, nullable=True),
                Column("expected", DOUBLE, nullable=True),
                Column("score", DOUBLE, nullable=True),
                Column("severity", TEXT, nullable=True),
                Column("model_version", TEXT, nullable=True),
                Column("detected_at", TIMESTAMPTZ, nullable=True),
            ),
        ),
        Relation(
            "v_ip_traffic",
            (
                Column("ip", TEXT, nullable=True),
                Column("feature", TEXT, nullable=True),
                Column("ts", TIMESTAMPTZ, nullable=True),
                Column("actual", DOUBLE, nullable=True),
                Column("forecast", DOUBLE, nullable=True),
                Column("forecast_lower", DOUBLE, nullable=True),
                Column("forecast_upper", DOUBLE, nullable=True),
            ),
        ),
        Relation(
            "v_ip_windows",
            (
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("window_end", TIMESTAMPTZ, nullable=True),
                Column("ip", TEXT, nullable=True),
                Column("feature", TEXT, nullable=True),
                Column("samples", BIGINT, nullable=True),
                Column("total", DOUBLE, nullable=True),
                Column("mean", DOUBLE, nullable=True),
            ),
        ),
        Relation(
            "v_models",
            (
                Column("model_name", TEXT, nullable=True),
                Column("version", TEXT, nullable=True),
                Column("threshold", DOUBLE, nullable=True),
                Column("promoted", BOOLEAN, nullable=True),
                Column("created_at", TIMESTAMPTZ, nullable=True),
                Column("metrics", TEXT, nullable=True),
            ),
        ),
        Relation(
            "v_server_status",
            (
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("window_end", TIMESTAMPTZ, nullable=True),
                Column("country_code", TEXT, nullable=True),
                Column("country_name", TEXT, nullable=True),
                Column("city", TEXT, nullable=True),
                Column("datacenter", TEXT, nullable=True),
                Column("status_color", TEXT, nullable=True),
                Column("severity_level", INTEGER, nullable=True),
                Column("messages", BIGINT, nullable=True),
                Column("total_resolution_time", BIGINT, nullable=True),
            ),
        ),
        Relation(
            "v_speed_layer_errors",
            (
                Column("query", TEXT, nullable=True),
                Column("batch_id", BIGINT, nullable=True),
                Column("error", TEXT, nullable=True),
                Column("records", INTEGER, nullable=True),
                Column("disposition", TEXT, nullable=True),
                Column("recorded_at", TIMESTAMPTZ, nullable=True),
            ),
        ),
        Relation(
            "v_speed_layer_set_aside",
            (
                Column("query", TEXT, nullable=True),
                Column("records_set_aside", BIGINT, nullable=True),
                Column("batches", BIGINT, nullable=True),
                Column("last_at", TIMESTAMPTZ, nullable=True),
                Column("last_disposition", TEXT, nullable=True),
                Column("last_error", TEXT, nullable=True),
            ),
        ),
        Relation(
            "v_stream_progress",
            (
                Column("query", TEXT, nullable=True),
                Column("batch_id", BIGINT, nullable=True),
                Column("source", TEXT, nullable=True),
                Column("batch_ts", TIMESTAMPTZ, nullable=True),
                Column("input_rows", BIGINT, nullable=True),
                Column("input_rows_per_second", DOUBLE, nullable=True),
                Column("processed_rows_per_second", DOUBLE, nullable=True),
                Column("offsets_behind_latest", BIGINT, nullable=True),
                Column("batch_duration_ms", BIGINT, nullable=True),
                Column("watermark", TIMESTAMPTZ, nullable=True),
                Column("late_rows", BIGINT, nullable=True),
                Column("lost_rows", BIGINT, nullable=True),
            ),
        ),
        Relation(
            "v_backtest_runs",
            tuple(
                Column(name, kind, nullable=True)
                for name, kind in [
                    ("run_id", TEXT),
                    ("detector", TEXT),
                    ("history", TEXT),
                    ("model_versions", TEXT),
                    ("judged", BIGINT),
                    ("warn", BIGINT),
                    ("error", BIGINT),
                    ("first_event", TIMESTAMPTZ),
                    ("last_event", TIMESTAMPTZ),
                    ("started_at", TIMESTAMPTZ),
                    ("finished_at", TIMESTAMPTZ),
                ]
            )
            + BACKTEST_JUDGEMENT,
        ),
        Relation(
            "v_backtest_findings",
            (
                Column("run_id", TEXT, nullable=True),
                Column("detector", TEXT, nullable=True),
                Column("entity", TEXT, nullable=True),
                Column("metric", TEXT, nullable=True),
                Column("window_start", TIMESTAMPTZ, nullable=True),
                Column("backtest_severity", TEXT, nullable=True),
                Column("live_severity", TEXT, nullable=True),
                Column("agreement", TEXT, nullable=True),
            ),
        ),
        Relation(
            "v_backtest_episodes",
            (
                Column("run_id", TEXT, nullable=True),
                Column("detector", TEXT, nullable=True),
                Column("entity", TEXT, nullable=True),
                Column("kind", TEXT, nullable=True),
                Column("start_ts", TIMESTAMPTZ, nullable=True),
                Column("end_ts", TIMESTAMPTZ, nullable=True),
                Column("first_finding", TIMESTAMPTZ, nullable=True),
                Column("first_error", TIMESTAMPTZ, nullable=True),
                Column("time_to_detect_s", DOUBLE, nullable=True),
                Column("detected", BOOLEAN, nullable=True),
            ),
        ),
        Relation(
            "v_late_events",
            (
                Column("query", TEXT, nullable=True),
                Column("source", TEXT, nullable=True),
                Column("late_events", NUMERIC, nullable=True),
                Column("batches_with_late_events", BIGINT, nullable=True),
                Column("last_late_at", TIMESTAMPTZ, nullable=True),
                Column("watermark", TIMESTAMPTZ, nullable=True),
            ),
        ),
        Relation(
            "v_lost_records",
            (
                Column("query", TEXT, nullable=True),
                Column("source", TEXT, nullable=True),
                Column("lost_records", NUMERIC, nullable=True),
                Column("batches_with_lost_records", BIGINT, nullable=True),
                Column("last_lost_at", TIMESTAMPTZ, nullable=True),
            ),
        ),
        Relation(
            "v_incidents",
            tuple(
                Column(name, kind, nullable=True)
                for name, kind in (
                    ("incident_id", TEXT),
                    ("scope", TEXT),
                    ("state", TEXT),
                    ("severity", TEXT),
                    ("first_seen", TIMESTAMPTZ),
                    ("last_seen", TIMESTAMPTZ),
                    ("entities", TEXT),
                    ("metrics", TEXT),
                    ("detectors", TEXT),
                    ("entity_count", INTEGER),
                    ("members", INTEGER),
                    ("strongest_detector", TEXT),
                    ("strongest_entity", TEXT),
                    ("strongest_metric", TEXT),
                    ("strongest_score", DOUBLE),
                    ("summary", TEXT),
                    ("resolved_by", TEXT),
                    ("opened_at", TIMESTAMPTZ),
                    ("acknowledged_at", TIMESTAMPTZ),
                    ("resolved_at", TIMESTAMPTZ),
                    ("false_positive", BOOLEAN),
                    ("feedback", TEXT),
                    ("duration_minutes", NUMERIC),
                )
            ),
        ),
        Relation(
            "v_training_exclusions",
            (
                Column("entity", TEXT, nullable=True),
                Column("start_ts", TIMESTAMPTZ, nullable=True),
                Column("end_ts", TIMESTAMPTZ, nullable=True),
                Column("reason", TEXT, nullable=True),
                Column("incident_id", TEXT, nullable=True),
            ),
        ),
        Relation(
            "v_weather",
            tuple(
                Column(name, kind, nullable=True)
                for name, kind in (
                    ("ts", TIMESTAMPTZ),
                    ("city", TEXT),
                    ("temperature", DOUBLE),
                    ("feels_like", DOUBLE),
                    ("temperature_minus_feels_like", DOUBLE),
                    ("baseline_mean", DOUBLE),
                    ("baseline_stddev", DOUBLE),
                    ("baseline_variance", DOUBLE),
                    ("baseline_lower", DOUBLE),
                    ("baseline_upper", DOUBLE),
                    ("z", DOUBLE),
                )
            ),
        ),
        Relation(
            "v_incident_members",
            tuple(
                Column(name, kind, nullable=True)
                for name, kind in (
                    ("incident_id", TEXT),
                    ("state", TEXT),
                    ("incident_severity", TEXT),
                    ("scope", TEXT),
                    ("detector", TEXT),
                    ("entity", TEXT),
                    ("metric", TEXT),
                    ("window_start", TIMESTAMPTZ),
                    ("window_end", TIMESTAMPTZ),
                    ("value", DOUBLE),
                    ("expected", DOUBLE),
                    ("score", DOUBLE),
                    ("severity", TEXT),
                )
            ),
        ),
    )
}


RETAINED = {name: relation for name, relation in TABLES.items() if relation.time_column}
