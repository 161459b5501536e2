"""Run a speed-layer detector over a file: the same detector code, no Kafka, no service needed.

The file is read by the replay planner (``generators.replay``) as the detector's source's
events, so a backtest sees exactly the events ``lambdawatch replay`` would send.
``metric_scores`` scores each series with the detector's own pure model, in the order the
streaming query would: live and direct scores are identical. The other detectors run in batch
on a local Spark session, from the events as the speed layer parses them
(``parse_events`` of their JSON) through the query's own functions:

- ``cpu_anomalies``: ``cpu_window_stats`` and ``classify_cpu``, one row per server and window,
  against ``--normal-mean/--normal-stddev``, else the ``baselines`` table when PostgreSQL is
  reachable, else ``.env``'s;
- ``forecast_deviations``: ``judge_against_forecast`` on the ``ip_forecasts`` rows of the
  file's hours (PostgreSQL needed), one row per judged sample and feature;
- ``cdn_clusters``: the promoted KMeans model (PostgreSQL and the model files needed), one row
  per event;
- ``silence``: ``find_silences`` per entity up to the watermark the stream would have at the
  file's end, one row per gap.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from generators.replay import OptionError, ReplayOptions, plan_replay, replay_options
from lambdawatch.core import db
from lambdawatch.core.catalog import DETECTOR_SOURCES
from lambdawatch.core.events import SCHEMAS
from lambdawatch.core.model_registry import RegisteredModel, forecasts_between, promoted_model
from lambdawatch.core.secrets import secrets_for
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import TABLES
from lambdawatch.pipelines.backtest_labels import (
    Judgement,
    LabelError,
    ground_truth_labels,
    judge,
    read_labels,
)
from lambdawatch.pipelines.backtest_verdicts import (
    RESULT_COLUMNS,
    Verdicts,
    ordered,
    stored_verdicts,
    verdicts_of,
)
from lambdawatch.pipelines.quality import EpisodeVerdict
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ANOMALY_FIELDS = TABLES["anomalies"].names
DETECTORS = tuple(DETECTOR_SOURCES)


class BacktestError(ValueError):
    """A bad option or file, said in one line."""


@dataclass(frozen=True)
class Normal:
    """A baseline given on the command line, for every entity."""

    mean: float
    stddev: float


@dataclass(frozen=True)
class BacktestOptions:
    detector: str = "metric_scores"
    replay: ReplayOptions = field(default_factory=ReplayOptions)  # how the file is read
    normal: Normal | None = None  # overrides the baselines (cpu_anomalies)


def options_from_cli(
    detector: str,
    mapping: Iterable[str] | str | None,
    constants: Iterable[str] | str | None,
    time_column: str | None,
    value_column: str | None,
    normal_mean: float | None = None,
    normal_stddev: float | None = None,
    source: str | None = None,
) -> BacktestOptions:
    """``--map col=field`` and ``--set field=value`` as replay takes them (one rule)."""
    if detector not in DETECTORS:
        raise BacktestError(f"--detector: {detector!r} is not one of {', '.join(DETECTORS)}")
    sources = DETECTOR_SOURCES[detector]
    if source is not None and source not in sources:
        raise BacktestError(f"--source: {detector} reads {', '.join(sources)}, not {source!r}")
    if (normal_mean is None) != (normal_stddev is None):
        raise BacktestError("--normal-mean and --normal-stddev go together")
    normal = None
    if normal_mean is not None and normal_stddev is not None:
        if detector != "cpu_anomalies":
            raise BacktestError(f"--normal-mean: {detector} has no baseline to override")
        if not normal_stddev > 0:
            raise BacktestError(f"--normal-stddev: {normal_stddev} is not positive")
        normal = Normal(normal_mean, normal_stddev)
    try:
        replay = replay_options(source or sources[0], mapping, constants, time_column, value_column)
    except OptionError as exc:
        raise BacktestError(str(exc)) from None
    return BacktestOptions(detector, replay, normal)


def metric_samples(path: Path, options: BacktestOptions) -> pd.DataFrame:
    """The ``entity, metric, timestamp, value`` events replay would send for ``path``."""
    return _metric_frame(plan_replay(path, options.replay).events)


def _metric_frame(events: Iterable[tuple[int, str, dict[str, Any]]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [(e["entity"], e["metric"], millis, e["value"]) for millis, _key, e in events],
        columns=["entity", "metric", "timestamp", "value"],
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def score_metric_samples(samples: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Every series scored from a fresh state, as a new stream would be."""
    config = settings.models.metric_scores
    params = ScoringParams.from_config(config)
    thresholds = Thresholds.from_config(config)
    parts = []
    for (entity, metric), series in samples.groupby(["entity", "metric"], sort=True):
        scored, _state = score_frame(
            SeriesState(params), series[["timestamp", "value"]], thresholds
        )
        parts.append(
            scored.assign(
                detector="metric_scores",
                entity=entity,
                metric=metric,
                window_start=scored["timestamp"],
                window_end=scored["timestamp"],
                model_version=params.version,
            )[list(RESULT_COLUMNS)]
        )
    if not parts:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class Judges:
    """What a detector judges events by, looked up once per backtest."""

    baselines: list[tuple[Any, ...]] = field(default_factory=list)  # metric, entity, mean, σ
    forecasts: list[tuple[Any, ...]] = field(default_factory=list)  # FORECAST_LOOKUP_SCHEMA
    cdn_model: tuple[RegisteredModel, Any] | None = None  # the promoted version, loaded


def _database(settings: Settings, needed_by: str | None = None) -> Any:
    """A connection, or None when PostgreSQL cannot be reached and ``needed_by`` is None."""
    try:
        return db.connect(settings, secrets_for(settings))
    except Exception as exc:  # unreachable or no credentials
        if needed_by is None:
            return None
        raise BacktestError(
            f"{needed_by}; PostgreSQL at {settings.postgres_host}:{settings.postgres_port} is "
            f"not reachable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def stored_baselines(settings: Settings) -> list[tuple[Any, ...]] | None:
    """``(metric, entity, mean, stddev)`` rows of the ``baselines`` table, or None when
    PostgreSQL is not reachable (a file backtest needs no service)."""
    conn = _database(settings)
    if conn is None:
        return None
    try:
        with conn:
            return conn.execute("SELECT metric, entity, mean, stddev FROM baselines").fetchall()
    except Exception:  # not migrated yet: fall back to .env
        return None


def look_up(options: BacktestOptions, settings: Settings, first_ms: int, last_ms: int) -> Judges:
    """The baselines, forecasts or model the detector judges the file's span by."""
    if options.detector == "cpu_anomalies":
        return Judges(baselines=[] if options.normal else stored_baselines(settings) or [])
    if options.detector == "forecast_deviations":
        with _database(
            settings, "forecast_deviations judges by the forecasts in ip_forecasts"
        ) as c:
            forecasts = forecasts_between(c, first_ms * 1000, last_ms * 1000)
        if not forecasts:
            raise BacktestError(
                f"no forecast in ip_forecasts covers {_iso(first_ms)} to {_iso(last_ms)}: "
                "forecast_deviations has nothing to judge by"
            )
        return Judges(forecasts=forecasts)
    if options.detector == "cdn_clusters":
        from pyspark.ml import PipelineModel  # noqa: PLC0415 - PySpark only when used

        from spark_apps.detectors.cdn_kmeans import MODEL_NAME  # noqa: PLC0415

        with _database(settings, "cdn_clusters judges by the promoted model") as conn:
            registered = promoted_model(conn, MODEL_NAME)
        if registered is None:
            raise BacktestError(f"no promoted {MODEL_NAME} model: retrain_cdn_kmeans has not run")
        return Judges(cdn_model=(registered, PipelineModel.load(registered.path)))
    return Judges()


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


def event_frame(spark: SparkSession, events: Iterable[dict[str, Any]], source: str) -> DataFrame:
    """Events as the speed layer parses them: their JSON through ``parse_events``."""
    from spark_apps.transforms.parsing import parse_events  # noqa: PLC0415

    records = spark.createDataFrame(
        [(orjson.dumps(event), source, 0, i) for i, event in enumerate(events)],
        "value binary, topic string, partition int, offset long",
    )
    parsed, _invalid = parse_events(records, SCHEMAS[source], "backtest")
    return parsed


def cpu_verdicts(
    spark: SparkSession,
    events: DataFrame,
    settings: Settings,
    baselines: list[tuple[Any, ...]] | None = None,
    normal: Normal | None = None,
) -> DataFrame:
    """Parsed server events → each window judged by the speed layer's CPU detector, in batch.

    The windows are the query's (``cpu_window_stats``: a re-sent event counts once), and so is
    the verdict (``classify_cpu``); ``normal`` replaces every baseline, else ``baselines``
    rows apply, with ``.env``'s normal mean and σ for the servers they do not cover."""
    from spark_apps.detectors.cpu import (  # noqa: PLC0415 - PySpark only when used
        BASELINES_READ_SCHEMA,
        classify_cpu,
        cpu_window_stats,
    )

    config = settings.models.cpu_anomaly
    rows = [] if normal is not None else list(baselines or [])
    fallback = (
        (normal.mean, normal.stddev) if normal else (settings.normal_mean, settings.normal_stddev)
    )
    return classify_cpu(
        cpu_window_stats(events, config.window, config.watermark),
        spark.createDataFrame(rows, BASELINES_READ_SCHEMA),
        *fallback,
        config.warn_sigma,
        config.error_sigma,
        (config.fallback_warn_sigma, config.fallback_error_sigma),
    )


def spark_verdicts(
    spark: SparkSession, events: DataFrame, options: BacktestOptions, settings: Settings,
    judges: Judges,
) -> DataFrame:  # fmt: skip
    """Every window, sample or event the detector judges, as ``RESULT_COLUMNS``."""
    # PySpark only when used
    from spark_apps.detectors.cdn_kmeans import cdn_anomaly_columns, cdn_cluster_rows  # noqa: PLC0415
    from spark_apps.detectors.cpu import cpu_anomaly_columns  # noqa: PLC0415
    from spark_apps.detectors.forecast_deviations import (  # noqa: PLC0415
        FORECAST_LOOKUP_SCHEMA,
        deviation_columns,
        judge_against_forecast,
    )
    from spark_apps.transforms.rollups import melt_ip_features  # noqa: PLC0415

    models = settings.models
    if options.detector == "cpu_anomalies":
        judged = cpu_verdicts(spark, events, settings, judges.baselines, options.normal)
        columns = cpu_anomaly_columns()
    elif options.detector == "forecast_deviations":
        lookup = spark.createDataFrame(judges.forecasts, FORECAST_LOOKUP_SCHEMA)
        judged = judge_against_forecast(melt_ip_features(events, settings.ips.features), lookup)
        prophet = models.prophet
        columns = deviation_columns(
            prophet.deviation_error_factor,
            prophet.deviation_error_direction,
            prophet.deviation_warn_factor,
        )
    else:  # cdn_clusters
        assert judges.cdn_model is not None
        registered, model = judges.cdn_model
        threshold = registered.threshold if registered.threshold is not None else float("inf")
        judged = cdn_cluster_rows(model, events, registered.version, threshold)
        columns = cdn_anomaly_columns(models.kmeans.error_threshold_factor)
    return judged.select(*columns).select(*RESULT_COLUMNS)


def report_times(pairs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """``(entity, epoch ms)`` pairs → each entity's report times."""
    stamps: dict[str, list[int]] = {}
    for entity, millis in pairs:
        stamps.setdefault(str(entity), []).append(int(millis))
    return stamps


def silence_gaps(stamps: dict[str, list[int]], source: str, settings: Settings) -> pd.DataFrame:
    """Every gap in each entity's reports, up to the watermark the stream would have at the
    end of history (its newest event less the query's delay)."""
    from spark_apps.detectors.silence import (  # noqa: PLC0415
        find_silences,
        report_intervals_ms,
        silence_anomaly,
    )

    config = settings.models.silence
    interval = report_intervals_ms(settings.generators)[source]
    if not stamps:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    newest = max(max(times) for times in stamps.values())
    watermark = newest - int(pd.Timedelta(config.watermark).total_seconds() * 1000)
    rows = [
        silence_anomaly(source, entity, last, interval, config.missed_intervals, watermark, resumed)
        for entity, times in sorted(stamps.items())
        for last, resumed in find_silences(times, interval, config.missed_intervals, watermark)
    ]
    return pd.DataFrame(rows, columns=list(ANOMALY_FIELDS))[list(RESULT_COLUMNS)]


def backtest(path: Path, options: BacktestOptions, settings: Settings) -> pd.DataFrame:
    """Every sample, window or gap the detector judges in the file, as ``RESULT_COLUMNS``
    (``OUTPUT_COLUMNS`` and the model or baseline that judged it), by entity and time."""
    plan = plan_replay(path, options.replay)  # a malformed row raises ReplayError with its line
    source = options.replay.source
    if options.detector == "metric_scores":
        return score_metric_samples(_metric_frame(plan.events), settings)
    if options.detector == "silence":
        key = SCHEMAS[source].key_field
        pairs = ((event[key], millis) for millis, _key, event in plan.events)
        return silence_gaps(report_times(pairs), source, settings)
    if not plan.events:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    judges = look_up(options, settings, plan.events[0][0], plan.events[-1][0])
    with local_session() as spark:
        frame = event_frame(spark, (event for _ms, _key, event in plan.events), source)
        return ordered(spark_verdicts(spark, frame, options, settings, judges).toPandas())


def history_span(start: str, end: str) -> tuple[datetime, datetime]:
    """``--from`` and ``--to`` (ISO-8601, naive meaning UTC, or epoch numbers) as instants."""
    from generators.replay import parse_time  # noqa: PLC0415

    bounds = []
    for option, text in (("--from", start), ("--to", end)):
        try:
            bounds.append(datetime.fromtimestamp(parse_time(text) / 1000, tz=UTC))
        except (ValueError, OverflowError) as exc:
            raise BacktestError(f"{option}: {exc}") from None
    return bounds[0], bounds[1]


def archive_history(options: BacktestOptions, start: datetime, end: datetime) -> str:
    """How ``backtest_runs.history`` names an archived span."""
    return f"archive {options.replay.source} {start.isoformat()} to {end.isoformat()}"


@contextmanager
def archived_backtest(
    options: BacktestOptions, settings: Settings, start: datetime, end: datetime
) -> Iterator[Verdicts]:
    """The same, over the archived events of ``[start, end)`` (``archive_raw_events``), parsed
    as the stream parses them. The Spark detectors' verdicts are written once to Parquet
    under the history location (removed after the block): a long history need not fit in
    memory. Rows come grouped by series, each in time order."""
    from pyspark.sql import functions as F  # noqa: N812, PLC0415 - PySpark only when used

    from spark_apps.jobs.archive_raw_events import (  # noqa: PLC0415
        NothingArchivedError,
        read_archive,
    )
    from spark_apps.transforms.parsing import parse_events  # noqa: PLC0415

    if not start < end:
        raise BacktestError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    source = options.replay.source
    schema = SCHEMAS[source]
    with local_session() as spark:
        try:
            records = read_archive(spark, settings, source, start, end)
        except NothingArchivedError as exc:
            raise BacktestError(str(exc)) from None
        events, _invalid = parse_events(records, schema, "backtest")
        if options.detector == "metric_scores":
            samples = (
                events.select("entity", "metric", F.unix_millis("timestamp").alias("ms"), "value")
                .orderBy("ms", "entity", "metric")
                .toPandas()
            )
            samples["timestamp"] = pd.to_datetime(samples.pop("ms"), unit="ms", utc=True)
            yield verdicts_of(score_metric_samples(
                samples[["entity", "metric", "timestamp", "value"]], settings
            ))  # fmt: skip
            return
        if options.detector == "silence":
            rows = events.select(schema.key_field, F.unix_millis("timestamp")).collect()
            yield verdicts_of(silence_gaps(report_times(tuple(r) for r in rows), source, settings))
            return
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        judges = look_up(options, settings, start_ms, end_ms)
        scratch = settings.history_path / "backtests" / uuid.uuid4().hex
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # UTC
        try:
            (
                spark_verdicts(spark, events, options, settings, judges)
                .repartition("entity")
                .sortWithinPartitions("entity", "metric", "window_start")
                .write.parquet(str(scratch))
            )
            yield stored_verdicts(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# A backtest aggregates its whole span at once (the speed layer: one micro-batch); with 1 GB,
# 3 M archived events took 28 s instead of 23 s, most of it in the JVM's garbage collection.
DRIVER_MEMORY = "2g"


@contextmanager
def local_session() -> Iterator[SparkSession]:
    """A small local Spark session, stopped after, unless this process runs one (tests)."""
    from pyspark import SparkContext  # noqa: PLC0415 - PySpark only when used

    from spark_apps.session import build_session  # noqa: PLC0415

    own = SparkContext._active_spark_context is None
    spark = build_session(
        "lambdawatch-backtest", master="local[2]", with_kafka=False, shuffle_partitions=2,
        extra={"spark.ui.enabled": "false", "spark.driver.memory": DRIVER_MEMORY},
    )  # fmt: skip
    if own:
        spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        if own:
            spark.stop()


def labelled(
    verdicts: Verdicts,
    options: BacktestOptions,
    settings: Settings,
    labels: Path | None = None,
    span: tuple[datetime, datetime] | None = None,
) -> Judgement | None:
    """The run judged against ``labels`` (a file) or, over archived history (``span``), the
    ``ground_truth`` episodes of its source when PostgreSQL holds any; None when unlabelled."""
    if labels is not None:
        try:
            return judge(verdicts, options.detector, read_labels(labels), str(labels))
        except LabelError as exc:
            raise BacktestError(f"--labels {exc}") from None
    if span is None:
        return None
    conn = _database(settings)
    if conn is None:
        return None
    with conn:
        found = ground_truth_labels(conn, options.replay.source, *span)
    return judge(verdicts, options.detector, found, "ground_truth") if found else None


# each detector's section of config.json's models, recorded with a run
DETECTOR_CONFIG = {
    "metric_scores": "metric_scores", "cpu_anomalies": "cpu_anomaly",
    "forecast_deviations": "prophet", "cdn_clusters": "kmeans", "silence": "silence",
}  # fmt: skip


@dataclass(frozen=True)
class BacktestRun:
    """One backtest as ``backtest_runs`` records it (an id that is run again is replaced)."""

    run_id: str
    detector: str
    history: str  # the file, or the archived span
    parameters: dict[str, Any]
    started_at: datetime


def run_parameters(options: BacktestOptions, settings: Settings) -> dict[str, Any]:
    """What the verdicts depend on beside the events: the options and the detector's
    configuration."""
    section = getattr(settings.models, DETECTOR_CONFIG[options.detector])
    return {
        "detector": options.detector,
        "replay": asdict(options.replay),
        "normal": asdict(options.normal) if options.normal else None,
        "config": section.model_dump(mode="json"),
    }


def record_run(
    conn: Any, run: BacktestRun, verdicts: Verdicts, judgement: Judgement | None = None
) -> int:
    """The run, its WARN and ERROR findings and, when labelled, its judgement and episodes, in
    one transaction (a run id recorded again is replaced); returns the findings."""
    rows = _findings_table(run.run_id, verdicts.findings)
    judged = judgement.row() if judgement else {}
    columns = {
        "run_id": run.run_id, "detector": run.detector, "history": run.history,
        "parameters": orjson.dumps(run.parameters).decode(),
        "model_versions": ",".join(verdicts.model_versions), "judged": verdicts.judged,
        "warn": verdicts.warn, "error": verdicts.error,
        "first_event": _plain(verdicts.first),
        "last_event": _plain(verdicts.last),
        "started_at": run.started_at, **judged,
    }  # fmt: skip
    with conn.transaction():
        conn.execute("DELETE FROM backtest_runs WHERE run_id = %s", (run.run_id,))
        db.upsert_rows(conn, "backtest_runs", list(columns), [tuple(columns.values())],
                       TABLES["backtest_runs"].key)  # fmt: skip
        # the run's rows are gone and its findings' keys are unique: copied, not merged
        db.copy_rows(conn, "backtest_anomalies", rows)
        if judgement:
            episodes = TABLES["backtest_episodes"]
            db.upsert_rows(
                conn, episodes.name, episodes.names,
                [_episode_row(run.run_id, verdict, first_error) for verdict, first_error
                 in zip(judgement.episodes, judgement.first_errors, strict=True)],
                episodes.key,
            )  # fmt: skip
    return int(rows.num_rows)


def _findings_table(run_id: str, findings: pd.DataFrame) -> Any:
    """The findings as ``backtest_anomalies`` rows, an Arrow table (COPYed as one CSV: a long
    history's findings number in the hundreds of thousands)."""
    import pyarrow as pa  # noqa: PLC0415 - with pandas

    table = TABLES["backtest_anomalies"]
    rows = findings[list(RESULT_COLUMNS)].assign(run_id=run_id, detected_at=datetime.now(UTC))
    arrow = pa.Table.from_pandas(rows[list(table.names)], preserve_index=False)
    return arrow.cast(
        pa.schema(
            pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
            for f in arrow.schema
        )
    )


def _episode_row(run_id: str, verdict: EpisodeVerdict, first_error: datetime | None) -> tuple:
    label, ttd = verdict.label, verdict.time_to_detect
    return (run_id, label.entity, label.kind, label.start, label.end, verdict.first_finding,
            first_error, ttd.total_seconds() if ttd is not None else None)  # fmt: skip


def _plain(value: Any) -> Any:
    """A pandas value as psycopg takes it."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def record_backtest(
    settings: Settings, run: BacktestRun, verdicts: Verdicts, judgement: Judgement | None
) -> int | None:
    """``record_run`` when PostgreSQL is reachable; None when it is not."""
    conn = _database(settings)
    if conn is None:
        return None
    with conn:
        return record_run(conn, run, verdicts, judgement)
