"""Score a file with a speed-layer detector directly: no Kafka, no Spark, no service running.

The file is read by the replay planner (``generators.replay``), so a backtest sees exactly the
events ``lambdawatch replay`` would send, and each series is scored by the detector's own pure
model in the order the streaming query would score it: live and direct scores are identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from generators.replay import ReplayOptions, plan_replay
from lambdawatch.core.settings import Settings
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame

OUTPUT_COLUMNS = (
    "detector", "entity", "metric", "window_start", "window_end", "value", "expected", "score",
    "severity",
)  # fmt: skip
DETECTORS = ("metric_scores",)
MAPPABLE_FIELDS = ("timestamp", "value", "entity")  # --map column=field
SETTABLE_FIELDS = ("entity", "metric")  # --set field=value


class BacktestError(ValueError):
    """A bad option or file, said in one line."""


@dataclass(frozen=True)
class BacktestOptions:
    detector: str = "metric_scores"
    columns: Mapping[str, str] = field(default_factory=dict)  # field → CSV column
    constants: Mapping[str, str] = field(default_factory=dict)  # field → value


def parse_pairs(text: str | None, option: str) -> dict[str, str]:
    """``a=b,c=d`` into a dict; a malformed pair names itself."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        left, sep, right = part.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise BacktestError(f"{option}: {part!r} is not name=value")
        pairs[left.strip()] = right.strip()
    return pairs


def options_from_cli(
    detector: str,
    mapping: str | None,
    settings: str | None,
    time_column: str | None,
    value_column: str | None,
) -> BacktestOptions:
    """``--map col=field`` and ``--set field=value`` checked against the detector's fields;
    ``--time-column`` and ``--value-column`` are shorthands for ``--map``."""
    if detector not in DETECTORS:
        raise BacktestError(f"--detector: {detector!r} is not one of {', '.join(DETECTORS)}")
    columns: dict[str, str] = {}
    for column, name in parse_pairs(mapping, "--map").items():
        if name not in MAPPABLE_FIELDS:
            raise BacktestError(
                f"--map: field {name!r} (from column {column!r}) is not one of "
                + ", ".join(MAPPABLE_FIELDS)
            )
        columns[name] = column
    for name, column in (("timestamp", time_column), ("value", value_column)):
        if column:
            columns[name] = column
    constants = parse_pairs(settings, "--set")
    for name in constants:
        if name not in SETTABLE_FIELDS:
            raise BacktestError(f"--set: field {name!r} is not one of {', '.join(SETTABLE_FIELDS)}")
    if "entity" in constants and "entity" in columns:
        raise BacktestError("entity is both mapped from a column and set to a value")
    return BacktestOptions(detector, columns, constants)


def metric_samples(path: Path, options: BacktestOptions) -> pd.DataFrame:
    """The ``entity, metric, timestamp, value`` events replay would send for ``path``."""
    plan = plan_replay(
        path,
        ReplayOptions(
            entity=options.constants.get("entity"),
            time_column=options.columns.get("timestamp"),
            value_column=options.columns.get("value"),
            entity_column=options.columns.get("entity"),
        ),
    )  # a malformed row raises ReplayError, which names its line
    frame = pd.DataFrame(
        [(e["entity"], e["metric"], millis, e["value"]) for millis, _key, e in plan.events],
        columns=["entity", "metric", "timestamp", "value"],
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    if "metric" in options.constants:
        frame["metric"] = options.constants["metric"]
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


def backtest(path: Path, options: BacktestOptions, settings: Settings) -> pd.DataFrame:
    """One row per sample: the columns every detector's backtest writes (``OUTPUT_COLUMNS``)."""
    return score_metric_samples(metric_samples(path, options), settings)


def write_output(scores: pd.DataFrame, path: Path) -> None:
    out = scores.copy()
    for column in ("window_start", "window_end"):
        out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    out.to_csv(path, index=False, float_format="%.17g")
