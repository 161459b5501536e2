"""Batch-layer transforms on small literal data: baselines, forecasting, KMeans promotion."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from spark_apps.transforms.forecast import (
    ForecastParams,
    choose_seasonality_mode,
    floored_at_zero,
    forecast_series,
    interval_metrics,
    mase_scale,
    normal_quantile,
    sample_band,
    seasonal_naive,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 2, tzinfo=UTC)
PARAMS = ForecastParams(
    horizon_hours=24,
    interval_width=0.95,
    min_points=48,
    holdout_hours=24,
    seasonality_mode="auto",
    uncertainty_samples=100,
)


def hourly(values: np.ndarray, ip: str = "198.18.0.1", feature: str = "unq_dst_ip") -> pd.DataFrame:
    ds = pd.date_range("2026-01-05", periods=len(values), freq="h")
    return pd.DataFrame({"ip": ip, "feature": feature, "ds": ds, "y": values})


def daily_wave(hours: int, noise: float = 2.0, seed: int = 3) -> np.ndarray:
    t = np.arange(hours)
    noise_values = np.random.default_rng(seed).normal(0, noise, hours)
    return 100 + 30 * np.sin(2 * np.pi * t / 24) + noise_values


def test_short_series_is_skipped_and_reported() -> None:
    out = forecast_series(hourly(daily_wave(30)), PARAMS)
    assert list(out["kind"]) == ["quality"]
    assert out["model"].iloc[0] == "none"
    assert "30 < 72 points" in out["reason"].iloc[0]


def test_daily_series_gets_a_calibrated_forecast() -> None:
    out = forecast_series(hourly(daily_wave(24 * 10)), PARAMS)
    forecasts, quality = out[out["kind"] == "forecast"], out[out["kind"] == "quality"].iloc[0]
    assert len(forecasts) == 24
    assert forecasts["ds"].min() == pd.Timestamp("2026-01-15 00:00")  # the hour after history
    assert (forecasts["yhat_lower"] <= forecasts["yhat"]).all()
    assert (forecasts["yhat"] <= forecasts["yhat_upper"]).all()
    expected = 100 + 30 * np.sin(2 * np.pi * np.arange(24) / 24)
    assert np.abs(forecasts["yhat"].to_numpy() - expected).max() < 10
    assert quality["coverage"] >= 0.8
    assert quality["mase"] < 1.5


def test_the_sample_band_widens_the_interval_by_the_within_hour_scatter() -> None:
    point, lower, upper = np.array([100.0, 0.0]), np.array([70.0, 0.0]), np.array([140.0, 5.0])
    # one sample per hour (ratios 1): the band is the interval
    same_lower, same_upper = sample_band(point, lower, upper, 1.0, 1.0)
    assert np.allclose(same_lower, lower)
    assert np.allclose(same_upper, upper)
    # samples within 0.6x..1.3x their hour's mean: each side's half-widths in quadrature
    # (relative to the upper edge, 140: the hour's mean may be that high)
    band_lower, band_upper = sample_band(point, lower, upper, 0.6, 1.3)
    assert band_lower[0] == pytest.approx(100 - np.hypot(30, 0.4 * 140))
    assert band_upper[0] == pytest.approx(100 + np.hypot(40, 0.3 * 140))
    # a forecast of zero with room up to 5: a sample may still be 1.3 x 5 - ish
    assert band_upper[1] == pytest.approx(np.hypot(5, 1.5))


def test_a_count_band_is_at_least_poisson_wide() -> None:
    # unq_dst_port around 3.7: samples of 3 and 4 give a band narrower than one step
    point, lower, upper = np.array([3.7, 900.0]), np.array([3.5, 800.0]), np.array([3.9, 960.0])
    z = normal_quantile(0.95)
    assert z == pytest.approx(1.96, abs=0.001)
    band_lower, band_upper = sample_band(point, lower, upper, 0.95, 1.05, count_z=z)
    assert band_upper[0] == pytest.approx(3.7 + z * np.sqrt(3.9))
    assert band_lower[0] == pytest.approx(3.7 - z * np.sqrt(3.9))
    assert band_upper[0] > 7  # a sample of 5 or 6 is ordinary for such a count
    # a large count's own scatter is wider than Poisson: unchanged
    wide_lower, wide_upper = sample_band(point, lower, upper, 0.95, 1.05)
    assert band_upper[1] == pytest.approx(wide_upper[1])
    assert band_lower[1] == pytest.approx(wide_lower[1])


def test_only_count_series_get_the_poisson_floor() -> None:
    values = 3.7 + 0.1 * np.sin(np.arange(24 * 10) * 2 * np.pi / 24)
    plain = forecast_series(hourly(values), PARAMS)
    counted = forecast_series(hourly(values).assign(is_count=True), PARAMS)
    plain, counted = (f[f["kind"] == "forecast"] for f in (plain, counted))
    assert np.allclose(plain["sample_upper"], plain["yhat_upper"])
    z = normal_quantile(PARAMS.interval_width)
    floor = z * np.sqrt(np.maximum(counted["yhat"], counted["yhat_upper"]))
    assert (counted["sample_upper"] - counted["yhat"] >= floor - 1e-9).all()
    assert (counted["sample_upper"] > plain["sample_upper"] + 1).all()


def test_forecasts_carry_the_sample_band_of_their_series() -> None:
    plain = forecast_series(hourly(daily_wave(24 * 10)), PARAMS)
    plain = plain[plain["kind"] == "forecast"]
    assert np.allclose(plain["sample_lower"], plain["yhat_lower"])  # no scatter given
    assert np.allclose(plain["sample_upper"], plain["yhat_upper"])
    scattered = hourly(daily_wave(24 * 10)).assign(ratio_low=0.5, ratio_high=2.0)
    out = forecast_series(scattered, PARAMS)
    quality, out = out[out["kind"] == "quality"].iloc[0], out[out["kind"] == "forecast"]
    assert np.allclose(out["yhat"], plain["yhat"])  # the model is the hourly mean's, unchanged
    # each side at least as wide as the interval's and as the scatter's (2x and 0.5x the mean)
    assert (out["sample_upper"] >= np.maximum(out["yhat_upper"], 2 * out["yhat"])).all()
    assert (out["sample_lower"] <= np.minimum(out["yhat_lower"], 0.5 * out["yhat"])).all()
    assert (out["sample_lower"] >= 0).all()  # never negative in history: floored
    assert pd.isna(quality["sample_lower"])


def test_seasonal_naive_wins_when_prophet_cannot_follow() -> None:
    """A pattern that is a pure copy of the previous day (random shape) is the seasonal-naive
    model's home ground; the job must keep the better model and say so."""
    rng = np.random.default_rng(9)
    day = rng.uniform(0, 100, 24)
    values = np.tile(day, 8) + rng.normal(0, 0.5, 24 * 8)
    out = forecast_series(hourly(values), PARAMS)
    quality = out[out["kind"] == "quality"].iloc[0]
    assert quality["model"] == "seasonal_naive"
    assert "seasonal-naive" in quality["reason"]
    forecasts = out[out["kind"] == "forecast"]
    assert np.abs(forecasts["yhat"].to_numpy() - day).max() < 3


@pytest.mark.parametrize(
    ("swing_grows", "expected"), [(True, "multiplicative"), (False, "additive")]
)
def test_seasonality_mode_follows_the_data(swing_grows: bool, expected: str) -> None:
    t = np.arange(24 * 10)
    level = 50 + 10 * t / 24
    swing = (level * 0.4) if swing_grows else 20
    values = level + swing * np.sin(2 * np.pi * t / 24)
    ds = pd.date_range("2026-01-01", periods=len(t), freq="h")
    history = pd.DataFrame({"ds": ds, "y": values})
    assert choose_seasonality_mode(history, "auto") == expected
    assert choose_seasonality_mode(history, "additive") == "additive"


def test_metrics_and_naive_baseline() -> None:
    y = np.array([1.0, 2.0] * 24)  # period 2 inside a 24-h season: seasonal differences are 0
    assert np.isnan(mase_scale(y))
    train = np.arange(48, dtype=float)
    point, lower, upper = seasonal_naive(train, 30, 0.9)
    assert np.array_equal(point[:24], train[-24:])
    assert np.array_equal(point[24:], train[-24:-18])
    assert np.allclose(upper - point, 24)  # every seasonal difference y[t] - y[t-24] is 24
    assert np.allclose(lower - point, 24)
    # eight days and more: a week's repeat (a Monday is forecast from the last Monday)
    week = np.tile(np.r_[np.full(5 * 24, 10.0), np.full(2 * 24, 1.0)], 2)  # weekdays, weekend
    point, lower, upper = seasonal_naive(week, 24, 0.9)  # two weeks, up to a Sunday
    assert np.array_equal(point, np.full(24, 10.0))  # Monday, not a repeat of Sunday's 1
    assert np.allclose(upper - lower, 0)
    m = interval_metrics(
        np.array([10.0, 20.0]), np.array([11.0, 18.0]), np.array([9.0, 19.0]),
        np.array([12.0, 21.0]), scale=2.0,
    )  # fmt: skip
    assert m["mape"] == pytest.approx((0.1 + 0.1) / 2)
    assert m["coverage"] == 1.0
    assert m["mae"] == pytest.approx(1.5)
    assert m["mase"] == pytest.approx(1.5 / 2.0)


@pytest.mark.parametrize(
    ("history", "expected_lower"),
    [
        (np.array([0.0, 3.0, 5.0]), [0.0, 0.0, 1.0]),  # counts: never below zero
        (np.array([-2.0, 3.0, 5.0]), [-4.0, -0.5, 1.0]),  # a signed feature keeps its band
    ],
)
def test_a_never_negative_feature_is_not_forecast_below_zero(
    history: np.ndarray, expected_lower: list[float]
) -> None:
    point, lower, upper = np.array([1.0, 2.0, 3.0]), np.array([-4.0, -0.5, 1.0]), np.ones(3)
    floored = floored_at_zero(history, point, lower, upper)
    assert floored[1].tolist() == expected_lower
    assert floored[0].tolist() == [1.0, 2.0, 3.0]


def test_a_quiet_count_series_forecast_band_stays_at_or_above_zero() -> None:
    """Night hours near zero: Prophet's additive band would go below it."""
    hours = 24 * 21
    t = np.arange(hours)
    counts = np.maximum(0.0, 20 * np.sin(2 * np.pi * t / 24)) + np.random.default_rng(1).poisson(
        1, hours
    )
    out = forecast_series(hourly(counts), PARAMS)
    forecasts = out[out["kind"] == "forecast"]
    assert len(forecasts) > 0
    assert (forecasts["yhat_lower"] >= 0).all()
    assert (forecasts["yhat"] >= 0).all()


def test_a_series_gets_the_same_forecast_on_every_run() -> None:
    """Prophet samples its interval from numpy's global generator: a retried job must not
    write other bands, and the caller's generator is left as it was."""
    series = hourly(daily_wave(24 * 10))
    np.random.seed(1)
    untouched = np.random.random()
    np.random.seed(1)
    first = forecast_series(series, PARAMS)
    assert np.random.random() == untouched
    np.random.seed(2)
    second = forecast_series(series, PARAMS)
    pd.testing.assert_frame_equal(first, second)
