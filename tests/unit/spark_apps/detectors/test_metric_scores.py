"""The online metric scorer: the pure per-series model the streaming query runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from spark_apps.detectors.metric_scores import ScoringParams, SeriesModel, score_series

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _series(values: np.ndarray, start: datetime = T0) -> pd.DataFrame:
    stamps = [start + timedelta(minutes=10 * i) for i in range(len(values))]
    return pd.DataFrame({"timestamp": stamps, "value": values})


def test_scores_stay_low_on_normal_data_and_spike_on_outliers() -> None:
    rng = np.random.default_rng(4)
    values = 50 + rng.normal(0, 2, 500)
    values[400] = 80  # a 15-sigma spike
    scored, model = score_series(SeriesModel(), _series(values), ScoringParams())
    assert (scored["score"].iloc[:30] == 0).all()  # warm-up
    normal = scored["score"].drop(index=400).iloc[30:]
    assert (normal >= 0.99).mean() < 0.03
    assert scored["score"].iloc[400] > 0.9999
    assert model.samples == 500
    # The spike was clipped while learning: the level barely moved.
    assert abs(scored["expected"].iloc[401] - 50) < 2


def test_daily_seasonality_is_expected_not_flagged() -> None:
    hours = np.arange(24 * 6 * 14) / 6  # 14 days, every 10 minutes
    rng = np.random.default_rng(5)
    curve = 100 + 40 * np.sin(2 * np.pi * hours / 24)
    values = curve + rng.normal(0, 2, len(hours))
    trough = len(hours) - 24 * 6 + 18 * 6  # 18:00 on the last day: the curve's low point
    values[trough] += 25  # high for 18:00, yet well inside the daily range
    scored, _model = score_series(SeriesModel(), _series(values), ScoringParams())
    last_week = scored.iloc[-24 * 6 * 7 :]
    assert (last_week["score"].drop(index=trough) >= 0.99).mean() < 0.05
    assert np.abs(last_week["expected"] - curve[-24 * 6 * 7 :]).mean() < 5
    assert scored["score"].iloc[trough] >= 0.99
    # Without the hour-of-day profile the wide daily swing hides the same deviation.
    flat_scores, _ = score_series(SeriesModel(), _series(values), ScoringParams(season_min=10**9))
    assert flat_scores["score"].iloc[trough] < 0.99


def test_scoring_in_pieces_equals_scoring_at_once() -> None:
    """Micro-batches carry the model as state: cutting the stream changes nothing."""
    rng = np.random.default_rng(6)
    frame = _series(20 + rng.normal(0, 1, 300))
    whole, _ = score_series(SeriesModel(), frame, ScoringParams())
    model, parts = SeriesModel(), []
    for piece in (frame.iloc[:77], frame.iloc[77:200], frame.iloc[200:]):
        scored, model = score_series(SeriesModel.from_json(model.to_json()), piece, ScoringParams())
        parts.append(scored)
    pd.testing.assert_frame_equal(pd.concat(parts), whole)
