"""Silence detection and the online metric scorer: the pure rules both the streaming queries
and a batch backtest use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from spark_apps.transforms.metric_scores import ScoringParams, SeriesModel, score_series
from spark_apps.transforms.silence import find_silences, silence_anomaly, silence_deadline

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reports", "end", "expected"),
    [
        ([0, 10, 20, 30], 60, []),  # steady; the open tail (30 → 60) is within 3 intervals
        ([0, 10, 20, 30], 61, [(30, None)]),  # ... until the deadline has passed
        ([0, 10, 50, 60], 60, [(10, 50)]),  # a 4-interval gap, ended by the report at 50
        ([0, 10, 40, 50], 60, []),  # exactly 3 intervals late is still on time
        ([20, 0, 10, 10], 30, []),  # unsorted and duplicated reports
        ([], 100, []),
    ],
)
def test_find_silences(
    reports: list[int], end: int, expected: list[tuple[int, int | None]]
) -> None:
    assert find_silences(reports, interval_ms=10, missed=3, end_ms=end) == expected


def test_a_gap_becomes_one_error_keyed_by_its_first_missed_tick() -> None:
    last = int(T0.timestamp() * 1000)
    assert silence_deadline(last, 60_000, 3) == last + 180_000
    first = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, now_ms=last + 300_000)
    again = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, now_ms=last + 200_000)
    assert first["window_start"] == T0 + timedelta(minutes=1) == again["window_start"]
    assert first["window_end"] == T0 + timedelta(minutes=3)
    assert first["severity"] == "ERROR"
    assert first["metric"] == "ip:reports_missing"
    assert (first["value"], again["value"]) == (5.0, 3.0)  # the gap so far, in intervals
    closed = silence_anomaly("ip", "198.18.0.1", last, 60_000, 3, last, resumed_ms=last + 600_000)
    assert closed["window_start"] == first["window_start"]  # the same record, completed
    assert closed["window_end"] == T0 + timedelta(minutes=10)
    assert closed["value"] == 10.0


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
