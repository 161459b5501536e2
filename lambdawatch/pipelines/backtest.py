"""Score a file with a speed-layer detector directly: no Kafka, no service running.

The file is read by the replay planner (``generators.replay``), so a backtest sees exactly the
events ``lambdawatch replay`` would send (``--source`` is the detector's). ``metric_scores``
scores each series with the detector's own pure model, in the order the streaming query
would: live and direct scores are identical. ``cpu_anomalies`` runs the speed layer's CPU
window and classification functions in batch on a local Spark session, against the baseline
given (``--normal-mean/--normal-stddev``), else the ``baselines`` table when PostgreSQL is
reachable, else ``.env``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from generators.replay import OptionError, ReplayOptions, plan_replay, replay_options
from lambdawatch.core import db
from lambdawatch.core.secrets import secrets_for
from lambdawatch.core.settings import Settings
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

OUTPUT_COLUMNS = (
    "detector", "entity", "metric", "window_start", "window_end", "value", "expected", "score",
    "severity",
)  # fmt: skip
# detector → the source whose events it reads (the file is read as that source's events)
DETECTOR_SOURCES = {"metric_scores": "metric", "cpu_anomalies": "server"}
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
) -> BacktestOptions:
    """``--map col=field`` and ``--set field=value`` as replay takes them (one rule)."""
    if detector not in DETECTORS:
        raise BacktestError(f"--detector: {detector!r} is not one of {', '.join(DETECTORS)}")
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
        replay = replay_options(
            DETECTOR_SOURCES[detector], mapping, constants, time_column, value_column
        )
    except OptionError as exc:
        raise BacktestError(str(exc)) from None
    return BacktestOptions(detector, replay, normal)


def metric_samples(path: Path, options: BacktestOptions) -> pd.DataFrame:
    """The ``entity, metric, timestamp, value`` events replay would send for ``path``."""
    plan = plan_replay(path, options.replay)  # a malformed row raises ReplayError with its line
    frame = pd.DataFrame(
        [(e["entity"], e["metric"], millis, e["value"]) for millis, _key, e in plan.events],
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
            )[list(OUTPUT_COLUMNS)]
        )
    if not parts:
        return pd.DataFrame(columns=list(OUTPUT_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def stored_baselines(settings: Settings) -> list[tuple[str, str, float, float]] | None:
    """``(metric, entity, mean, stddev)`` rows of the ``baselines`` table, or None when
    PostgreSQL is not reachable (a file backtest needs no service)."""
    try:
        with db.connect(settings, secrets_for(settings)) as conn:
            return conn.execute("SELECT metric, entity, mean, stddev FROM baselines").fetchall()
    except Exception:  # unreachable, no credentials or not migrated: fall back to .env
        return None


def cpu_verdicts(
    spark: SparkSession,
    events: Iterable[dict[str, Any]],
    settings: Settings,
    baselines: list[tuple[str, str, float, float]] | None = None,
    normal: Normal | None = None,
) -> DataFrame:
    """Server events → each window judged by the speed layer's CPU detector, in batch.

    The windows are the query's (``cpu_window_stats``: a re-sent event counts once), and so is
    the verdict (``classify_cpu``); ``normal`` replaces every baseline, else ``baselines``
    rows apply, with ``.env``'s normal mean and σ for the servers they do not cover."""
    from spark_apps.detectors.cpu import (  # noqa: PLC0415 - PySpark only when used
        BASELINES_READ_SCHEMA,
        classify_cpu,
        cpu_window_stats,
    )

    frame = spark.createDataFrame(
        [
            (e["event_id"], e["server_id"], float(e["cpu_usage"]), _when(e["timestamp"]))
            for e in events
        ],
        "event_id string, server_id string, cpu_usage double, timestamp timestamp",
    )
    config = settings.models.cpu_anomaly
    rows = [] if normal is not None else list(baselines or [])
    fallback = (
        (normal.mean, normal.stddev) if normal else (settings.normal_mean, settings.normal_stddev)
    )
    return classify_cpu(
        cpu_window_stats(frame, config.window, config.watermark),
        spark.createDataFrame(rows, BASELINES_READ_SCHEMA),
        *fallback,
        config.warn_sigma,
        config.error_sigma,
    )


def _when(text: str) -> Any:
    return pd.Timestamp(text).to_pydatetime()


def cpu_backtest(path: Path, options: BacktestOptions, settings: Settings) -> pd.DataFrame:
    """Every CPU window of the file's server events, SAFE ones included, as ``OUTPUT_COLUMNS``."""
    from pyspark import SparkContext  # noqa: PLC0415 - PySpark only when used

    from spark_apps.detectors.cpu import cpu_anomaly_columns  # noqa: PLC0415
    from spark_apps.session import build_session  # noqa: PLC0415

    plan = plan_replay(path, options.replay)
    baselines = None if options.normal else stored_baselines(settings)
    own_session = SparkContext._active_spark_context is None  # else: the caller's (tests)
    spark = build_session(
        "lambdawatch-backtest", master="local[2]", with_kafka=False, shuffle_partitions=2,
        extra={"spark.ui.enabled": "false"},
    )  # fmt: skip
    try:
        verdicts = cpu_verdicts(
            spark, (event for _ms, _key, event in plan.events), settings, baselines,
            options.normal,
        )  # fmt: skip
        table = verdicts.select(*cpu_anomaly_columns()).select(*OUTPUT_COLUMNS).toPandas()
    finally:
        if own_session:
            spark.stop()
    for column in ("window_start", "window_end"):
        table[column] = pd.to_datetime(table[column], utc=True)
    return table.sort_values(["entity", "window_start"], ignore_index=True)


def backtest(path: Path, options: BacktestOptions, settings: Settings) -> pd.DataFrame:
    """One row per sample or window: the columns every detector's backtest writes
    (``OUTPUT_COLUMNS``)."""
    if options.detector == "cpu_anomalies":
        return cpu_backtest(path, options, settings)
    return score_metric_samples(metric_samples(path, options), settings)


def write_output(scores: pd.DataFrame, path: Path) -> None:
    out = scores.copy()
    for column in ("window_start", "window_end"):
        out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    out.to_csv(path, index=False, float_format="%.17g")
