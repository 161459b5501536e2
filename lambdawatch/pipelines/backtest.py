"""Score a file with a speed-layer detector directly: no Kafka, no Spark, no service running.

The file is read by the replay planner (``generators.replay``), so a backtest sees exactly the
events ``lambdawatch replay`` would send, and each series is scored by the detector's own pure
model in the order the streaming query would score it: live and direct scores are identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from generators.replay import OptionError, ReplayOptions, metric_replay_options, plan_replay
from lambdawatch.core.settings import Settings
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, Thresholds, score_frame

OUTPUT_COLUMNS = (
    "detector", "entity", "metric", "window_start", "window_end", "value", "expected", "score",
    "severity",
)  # fmt: skip
DETECTORS = ("metric_scores",)


class BacktestError(ValueError):
    """A bad option or file, said in one line."""


@dataclass(frozen=True)
class BacktestOptions:
    detector: str = "metric_scores"
    replay: ReplayOptions = field(default_factory=ReplayOptions)  # how the file is read


def options_from_cli(
    detector: str,
    mapping: Iterable[str] | str | None,
    constants: Iterable[str] | str | None,
    time_column: str | None,
    value_column: str | None,
) -> BacktestOptions:
    """``--map col=field`` and ``--set field=value`` as replay takes them (one rule)."""
    if detector not in DETECTORS:
        raise BacktestError(f"--detector: {detector!r} is not one of {', '.join(DETECTORS)}")
    try:
        replay = metric_replay_options(mapping, constants, time_column, value_column)
    except OptionError as exc:
        raise BacktestError(str(exc)) from None
    return BacktestOptions(detector, replay)


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


def backtest(path: Path, options: BacktestOptions, settings: Settings) -> pd.DataFrame:
    """One row per sample: the columns every detector's backtest writes (``OUTPUT_COLUMNS``)."""
    return score_metric_samples(metric_samples(path, options), settings)


def write_output(scores: pd.DataFrame, path: Path) -> None:
    out = scores.copy()
    for column in ("window_start", "window_end"):
        out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    out.to_csv(path, index=False, float_format="%.17g")
