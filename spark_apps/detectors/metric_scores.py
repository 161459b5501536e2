"""Anomaly scores for any ``{entity, metric, timestamp, value}`` stream: an online model per series.

Each series keeps an exponentially weighted level and variance plus an hour-of-day profile
(the seasonality of infrastructure metrics is mostly daily). A sample's score is the
two-sided normal probability of its deviation from ``level + profile[hour]``:
``erf(|z| / √2)``, in [0, 1), 0.99 at |z| ≈ 2.6. The model learns from each sample after
scoring it, with the residual clipped so an incident does not teach the model that the
incident is normal. No score is given (0) until ``warmup`` samples have been seen.

``score_series`` is pure (a model and a frame in, scores and the new model out): the streaming
query keeps the model as Spark state, a backtest over a replayed file calls it directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from spark_apps.detectors.anomaly import TIMESTAMP_FORMAT, anomaly_columns

DETECTOR = "metric_scores"
HOURS = 24
STATE_SCHEMA = "model string"
SCORE_SCHEMA = (
    "entity string, metric string, timestamp timestamp, value double, expected double, "
    "sigma double, score double, samples long"
)


@dataclass(frozen=True)
class ScoringParams:
    alpha: float = 0.05  # level/variance smoothing: ~20-sample memory
    season_beta: float = 0.1  # hour-of-day profile smoothing
    warmup: int = 30
    season_min: int = 3  # samples in an hour bucket before its offset is trusted
    clip_sigma: float = 4.0
    version: str = "ewma-hod-v1"


@dataclass
class SeriesModel:
    samples: int = 0
    level: float = 0.0
    variance: float = 0.0
    season: list[float] = field(default_factory=lambda: [0.0] * HOURS)
    season_samples: list[int] = field(default_factory=lambda: [0] * HOURS)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SeriesModel:
        return cls(**json.loads(text))


def score_series(
    model: SeriesModel, frame: pd.DataFrame, params: ScoringParams
) -> tuple[pd.DataFrame, SeriesModel]:
    """Score ``timestamp, value`` rows in time order and learn from them; returns the rows with
    ``expected, sigma, score, samples`` and the updated model (the input model is not changed)."""
    m = SeriesModel.from_json(model.to_json())
    ordered = frame.sort_values("timestamp", kind="stable")
    hours = pd.to_datetime(ordered["timestamp"]).dt.hour.to_numpy()
    expected, sigmas, scores, seen = [], [], [], []
    for value, hour in zip(ordered["value"].to_numpy(float), hours, strict=True):
        offset = m.season[hour] if m.season_samples[hour] >= params.season_min else 0.0
        guess = m.level + offset if m.samples else value
        sigma = math.sqrt(m.variance)
        floor = 1e-6 * max(1.0, abs(guess))
        residual = value - guess
        warmed = m.samples >= params.warmup
        z = abs(residual) / max(sigma, floor)
        expected.append(guess)
        sigmas.append(sigma)
        scores.append(math.erf(z / math.sqrt(2)) if warmed else 0.0)
        seen.append(m.samples)
        # Learn, with the residual clipped once the model is warm.
        if warmed:
            limit = params.clip_sigma * max(sigma, floor)
            residual = max(-limit, min(limit, residual))
        if m.samples == 0:
            m.level = value
        else:
            m.level += params.alpha * residual
            m.variance = (1 - params.alpha) * m.variance + params.alpha * residual * residual
        m.season[hour] += params.season_beta * ((guess + residual - m.level) - m.season[hour])
        m.season_samples[hour] += 1
        m.samples += 1
    scored = ordered.assign(expected=expected, sigma=sigmas, score=scores, samples=seen)
    return scored, m


def score_metrics(events: DataFrame, params: ScoringParams) -> DataFrame:
    """Streaming: per (entity, metric) series, every sample scored by its online model."""

    def step(
        key: tuple[str, str], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        entity, metric = key
        frame = pd.concat(list(batches), ignore_index=True)
        model = SeriesModel.from_json(state.get[0]) if state.exists else SeriesModel()
        scored, model = score_series(model, frame[["timestamp", "value"]], params)
        state.update((model.to_json(),))
        yield scored.assign(entity=entity, metric=metric)[
            [part.split(" ")[0] for part in SCORE_SCHEMA.split(", ")]
        ]

    return (
        events.select("entity", "metric", "timestamp", "value")
        .groupBy("entity", "metric")
        .applyInPandasWithState(
            step, SCORE_SCHEMA, STATE_SCHEMA, "append", GroupStateTimeout.NoTimeout
        )
    )


def metric_anomalies(scored: DataFrame, warn: float, error: float, version: str) -> DataFrame:
    flagged = scored.where(F.col("score") >= warn)
    return flagged.select(
        *anomaly_columns(
            DETECTOR,
            entity=F.col("entity"),
            metric=F.col("metric"),
            window_start=F.col("timestamp"),
            window_end=F.col("timestamp"),
            value=F.col("value"),
            expected=F.col("expected"),
            score=F.col("score"),
            severity=F.when(F.col("score") >= error, "ERROR").otherwise("WARN"),
            model_version=F.lit(version),
        )
    )


def scores_to_kafka(scored: DataFrame, version: str) -> DataFrame:
    body = F.to_json(
        F.struct(
            "entity", "metric", "timestamp", "value", "expected", "score",
            F.lit(version).alias("model_version"),
        ),
        {"timestampFormat": TIMESTAMP_FORMAT},
    )  # fmt: skip
    return scored.select(
        F.concat_ws("|", "entity", "metric").cast("binary").alias("key"),
        body.cast("binary").alias("value"),
    )
