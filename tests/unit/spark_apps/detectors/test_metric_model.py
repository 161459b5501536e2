"""The per-series model behind ``metric_scores``: causal, calibrated, one state vector."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lambdawatch.core.config_model import MetricScoresConfig
from spark_apps.detectors.metric_model import (
    WEEKLY_EVIDENCE_DAYS,
    WEEKLY_RATIO,
    ScoringParams,
    SeriesState,
    Thresholds,
    _at_or_before,
    score_samples,
)

FIVE_MINUTES = 300.0
DAY = 288  # five-minute samples
PARAMS = ScoringParams.from_config()
AUTO = replace(PARAMS, weekly="auto")
WARN = MetricScoresConfig().warn_score
ERROR = MetricScoresConfig().error_score


def _score(values: np.ndarray, params: ScoringParams = PARAMS) -> np.ndarray:
    stamps = 1_700_000_000 + np.arange(len(values)) * FIVE_MINUTES
    scores, _state = score_samples(SeriesState(params), stamps, values)
    return scores.score


def _state(values: np.ndarray, params: ScoringParams = PARAMS) -> SeriesState:
    stamps = 1_700_000_000 + np.arange(len(values)) * FIVE_MINUTES
    return score_samples(SeriesState(params), stamps, values)[1]


def _alarms(scores: np.ndarray, start: int = 0, end: int | None = None) -> int:
    return int((scores[start:end] >= WARN).sum())


def _daily(days: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = np.arange(days * DAY) / DAY
    return 50 + 20 * np.sin(2 * np.pi * phase) + rng.normal(0, 1, days * DAY)


def test_quiet_on_noise_and_on_a_clean_daily_cycle() -> None:
    rng = np.random.default_rng(1)
    noise = _score(rng.normal(20, 3, 6000))
    daily = _score(_daily(12, 2))
    assert (noise[: PARAMS.warmup] == 0).all()  # the likelihood has not learnt yet
    # WARN means about one in a thousand: white noise may reach it that often, no more
    assert _alarms(noise) <= len(noise) / 1000
    assert _alarms(daily) <= 3
    assert noise.min() >= 0
    assert noise.max() <= 1


@pytest.mark.parametrize("kind", ["spike", "level shift", "variance change"])
def test_each_kind_of_change_raises_an_alarm_soon_after_it_starts(kind: str) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(20, 1, 5000)
    at = 4000
    if kind == "spike":
        values[at] += 15
    elif kind == "level shift":
        values[at:] += 2.5 * 20  # 2.5x the normal mean, sustained
    else:
        values[at:] = 20 + rng.normal(0, 5, 1000)
    scores = _score(values)
    assert _alarms(scores, at, at + 100) >= 1, kind
    # before the change it is white noise: WARN about one in a thousand, as above
    assert _alarms(scores, PARAMS.warmup, at) <= (at - PARAMS.warmup) / 1000


def test_a_missing_daily_peak_is_an_alarm_though_every_value_is_ordinary() -> None:
    values = _daily(12, 4)
    day = 10
    peak = slice(day * DAY, day * DAY + DAY // 2)  # the day's high half, flat and continuous
    values[peak] = 50 + np.random.default_rng(5).normal(0, 1, peak.stop - peak.start)
    scores = _score(values)
    assert _alarms(scores, peak.start, peak.stop) >= 1
    without_seasons = _score(values, replace(PARAMS, seasonal_days=0))
    assert _alarms(without_seasons, peak.start, peak.stop) == 0


def _weekly_rhythm(days: int, seed: int) -> np.ndarray:
    """Weekdays with a daily cycle, flat weekends (day 0 a weekday; days 5 and 6 of each week
    the weekend)."""
    index = np.arange(days * DAY)
    weekday = (index // DAY) % 7 < 5
    values = np.where(weekday, 50 + 20 * np.sin(2 * np.pi * index / DAY), 50.0)
    return values + np.random.default_rng(seed).normal(0, 1, len(index))


def _flat_day(values: np.ndarray, day: int, seed: int) -> slice:
    flat = slice(day * DAY, (day + 1) * DAY)
    values[flat] = 50 + np.random.default_rng(seed).normal(0, 1, DAY)
    return flat


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_weekday_shaped_like_the_weekend_is_an_alarm_with_weekly_on(seed: int) -> None:
    """Off, the day is near last Sunday's shape; on, it is compared with last Monday's."""
    values = _weekly_rhythm(24, seed)
    flat = _flat_day(values, 21, seed + 10)
    weekly = _score(values, replace(PARAMS, weekly="on"))
    assert _alarms(weekly, flat.start, flat.stop) >= 1
    assert _alarms(weekly, PARAMS.warmup, flat.start) <= 1
    assert _alarms(_score(values), flat.start, flat.stop) == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weekly_auto_compares_with_a_week_ago_once_two_weeks_show_the_rhythm(seed: int) -> None:
    values = _weekly_rhythm(31, seed)
    flat = _flat_day(values, 28, seed + 10)  # a Monday, three weeks after the first week
    scores = _score(values, AUTO)
    daily = _score(values)
    assert _alarms(scores, flat.start, flat.stop) >= 1
    assert _alarms(daily, flat.start, flat.stop) == 0
    # the switch to a week ago is quiet: no alarm the daily comparison does not raise too
    assert _alarms(scores, PARAMS.warmup, flat.start) <= _alarms(daily, PARAMS.warmup, flat.start)
    days, ratio = _state(values[: flat.start], AUTO).weekly_evidence or (0.0, 1.0)
    assert days >= WEEKLY_EVIDENCE_DAYS
    assert ratio < WEEKLY_RATIO


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_day_long_incident_does_not_make_a_daily_series_weekly(seed: int) -> None:
    """The day after it, a week ago looks closer than yesterday; a week later, farther."""
    values = _daily(30, seed)
    _flat_day(values, 10, seed + 10)
    days, ratio = _state(values, AUTO).weekly_evidence or (0.0, 0.0)
    assert days >= WEEKLY_EVIDENCE_DAYS
    assert ratio > WEEKLY_RATIO
    # never switched: every score is the daily comparison's
    assert np.array_equal(_score(values, AUTO), _score(values))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_slow_drift_past_the_history_s_range_reads_as_a_red_alarm(seed: int) -> None:
    """Spiky noise keeps the discord channels' likelihood wide, so a creeping fall is near some
    neighbour at every step; past the lowest value the history held, the range test speaks."""
    rng = np.random.default_rng(seed)
    at, end = 4000, 4600
    values = 20 + rng.normal(0, 1, end) + (rng.random(end) < 0.02) * rng.uniform(5, 15, end)
    values[at:] -= np.arange(end - at) * 0.03
    crossed = at + int(np.flatnonzero(values[at:] < values[:at].min())[0])
    unrested = replace(PARAMS, rest=0)
    with_range = _score(values, unrested)[crossed : crossed + 200].max()
    without_range = _score(values, replace(unrested, range_gain=0.0))[crossed : crossed + 200].max()
    assert with_range >= ERROR
    assert with_range > without_range


def test_one_incident_gives_one_alarm_then_the_series_rests() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(20, 1, 5000)
    values[4000:4020] += 30
    scores = _score(values)
    assert _alarms(scores, 4000, 4000 + PARAMS.rest) == 1


def test_scores_do_not_saturate_a_bigger_deviation_scores_higher() -> None:
    """Within the range the history has seen (an earlier excursion set it), the score grows
    with the deviation and stays below 1; past that range the range test reads it as red."""
    rng = np.random.default_rng(7)
    base = rng.normal(20, 1, 3000)
    base[1200:1210] += 20
    small, large, beyond = base.copy(), base.copy(), base.copy()
    small[2500] += 4
    large[2500] += 12
    beyond[2500] += 30
    assert _score(small)[2500] < _score(large)[2500] < 1
    assert _score(beyond)[2500] >= ERROR


def test_scoring_in_pieces_equals_scoring_at_once() -> None:
    """Micro-batches carry the state: any cut of the stream gives the same scores, bit for bit."""
    values = _daily(9, 8)
    stamps = 1_700_000_000 + np.arange(len(values)) * FIVE_MINUTES
    whole, whole_state = score_samples(SeriesState(PARAMS), stamps, values)
    state, parts = SeriesState(PARAMS), []
    for a, b in [(0, 1), (1, 30), (30, 2100), (2100, 2101), (2101, len(values))]:
        piece, state = score_samples(
            SeriesState.from_bytes(PARAMS, state.to_bytes()), stamps[a:b], values[a:b]
        )
        parts.append(piece.score)
    np.testing.assert_array_equal(np.concatenate(parts), whole.score)
    assert state.to_bytes() == whole_state.to_bytes()
    assert state.samples == len(values)


def test_state_stays_within_64_kb_even_at_the_largest_settings() -> None:
    largest = MetricScoresConfig(history=2500, window=64, average=100)
    for params in (PARAMS, ScoringParams.from_config(largest)):
        values = np.random.default_rng(9).normal(0, 1, params.history + 500)
        _scores, state = score_samples(
            SeriesState(params), np.arange(len(values), dtype=float), values
        )
        assert len(state.to_bytes()) <= 64 * 1024


def test_a_state_of_other_parameters_starts_the_series_afresh() -> None:
    values = np.random.default_rng(10).normal(0, 1, 400)
    _scores, state = score_samples(SeriesState(PARAMS), np.arange(400.0), values)
    assert SeriesState.from_bytes(PARAMS, state.to_bytes()).samples == 400
    assert SeriesState.from_bytes(replace(PARAMS, history=500), state.to_bytes()).samples == 0


def test_severity_is_one_rule_on_the_calibrated_score() -> None:
    thresholds = Thresholds(warn=WARN, error=ERROR)
    assert list(thresholds.severities(np.array([0.0, WARN, ERROR]))) == ["SAFE", "WARN", "ERROR"]


def test_config_must_order_the_thresholds() -> None:
    with pytest.raises(ValueError, match="error_score must be greater"):
        MetricScoresConfig(warn_score=0.6, error_score=0.5)


@pytest.mark.parametrize("samples", [500, 2100, 2100 + 37])  # history still filling; full
def test_the_slid_distances_equal_the_distances_summed_afresh(samples: int) -> None:
    """The state's distance at each lag, slid sample by sample (and summed afresh only every
    RESTART samples), is the squared distance of the two subsequences by definition."""
    values = np.cumsum(np.random.default_rng(11).normal(0, 1, samples))  # a random walk
    _scores, state = score_samples(SeriesState(PARAMS), np.arange(samples, dtype=float), values)
    w, history = PARAMS.window, PARAMS.history
    slid = state.vector[-(history + 1) :]
    newest = values[-w:]
    for lag in range(w, min(samples - w, history) + 1):
        earlier = values[samples - lag - w : samples - lag]
        assert slid[lag] == pytest.approx(((newest - earlier) ** 2).sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("target", "index"),
    [(5.0, 0), (10.0, 1), (19.9, 1), (20.0, 2), (25.0, 2), (30.0, 3), (99.0, 3)],
)
def test_the_same_time_k_days_back_is_the_last_sample_at_or_before_it(
    target: float, index: int
) -> None:
    """One rule for the daily and the weekly lookups: the span's oldest sample counts, and
    ``lo - 1`` says none does."""
    stamps = np.array([0.0, 10.0, 20.0, 30.0])
    assert _at_or_before(stamps, 1, 3, target) == index
