"""Per-series forecasting: Prophet with a hold-out check against a seasonal-naive baseline.

``forecast_series`` is a pandas → pandas function of one (ip, feature) series, so Spark runs it
per group with ``applyInPandas`` and a test runs it on a literal frame. For each series it
1. skips (and reports) series shorter than ``min_points``;
2. fits Prophet on all but the last ``holdout_hours`` points with the seasonality the span
   supports (daily; weekly from two weeks; working-hours vs weekend daily profiles from two
   weeks), multiplicative when the daily swing grows with the level;
3. scores it on the hold-out (MAPE, interval coverage, MASE) next to the seasonal-naive
   forecast (the value a week earlier once there are eight days to learn from, else a day),
   and keeps whichever has the lower MASE;
4. refits the chosen Prophet on the full series, warm-started from step 2's parameters
   (Prophet's documented way to update a model cheaply), and forecasts ``horizon_hours``;
5. widens each hour's interval into a *sample band* (``sample_band``): the models forecast the
   hourly mean, but the speed layer judges single samples, which also scatter within the hour.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from prophet import Prophet
from prophet.utilities import warm_start_params

SEASON = 24  # hourly data: one day
WEEK = 7 * SEASON
OUTPUT_SCHEMA = (
    "kind string, ip string, feature string, ds timestamp, yhat double, yhat_lower double, "
    "yhat_upper double, model string, points long, mape double, coverage double, "
    "mase double, mase_naive double, seasonality_mode string, reason string, "
    "sample_lower double, sample_upper double"
)
OUTPUT_COLUMNS = [part.strip().split(" ")[0] for part in OUTPUT_SCHEMA.split(",")]
STRING_COLUMNS = [
    part.strip().split(" ")[0]
    for part in OUTPUT_SCHEMA.split(",")
    if part.strip().endswith("string")
]


@dataclass(frozen=True)
class ForecastParams:
    horizon_hours: int
    interval_width: float
    min_points: int
    holdout_hours: int
    seasonality_mode: str  # additive | multiplicative | auto
    uncertainty_samples: int = 300


def choose_seasonality_mode(history: pd.DataFrame, configured: str) -> str:
    """``auto``: multiplicative when days with a higher level also swing more (and y > 0)."""
    if configured != "auto":
        return configured
    if (history["y"] <= 0).any() or len(history) < 3 * SEASON:
        return "additive"
    daily = history.set_index("ds")["y"].resample("D").agg(["mean", "std"]).dropna()
    if len(daily) < 3 or daily["mean"].std() == 0 or daily["std"].std() == 0:
        return "additive"
    return "multiplicative" if daily["mean"].corr(daily["std"]) > 0.5 else "additive"


def mase_scale(y: np.ndarray) -> float:
    """In-sample mean absolute seasonal difference: the denominator of MASE."""
    if len(y) <= SEASON:
        return float("nan")
    scale = float(np.mean(np.abs(y[SEASON:] - y[:-SEASON])))
    return scale if scale > 0 else float("nan")


def floored_at_zero(history: np.ndarray, *series: np.ndarray) -> tuple[np.ndarray, ...]:
    """A feature never negative in its history (counts, bytes) is not forecast below zero:
    Prophet's additive band reaches below it around quiet hours."""
    if len(history) and np.nanmin(history) >= 0:
        return tuple(np.maximum(values, 0.0) for values in series)
    return series


def sample_band(
    point: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    ratio_low: float,
    ratio_high: float,
    count_z: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Where one sample of the hour falls, at the interval's width: the prediction interval
    of a sum of independent errors (hourly mean's forecast error, sample's scatter around its
    hourly mean), each side's half-widths added in quadrature. The scatter is relative: the
    within-hour ratio ``sample / hourly mean`` at the interval's quantiles (1, 1 for one
    sample per hour, where the band is the interval), taken at the interval's upper edge: the
    hour's mean may be that high, and a forecast of zero still gets its scatter.

    For a count (``count_z``: the interval's normal quantile; 0 for other series) each side
    is at least the Poisson half-width ``z·√λ``, λ the same upper edge: a count's sample
    varies at least that much, and quantiles of a few small whole numbers (3, 4, now and then
    5) make a band narrower than one step."""
    scale = np.maximum(np.abs(point), np.abs(upper))
    poisson = count_z * np.sqrt(scale)
    above = np.maximum(np.hypot(upper - point, scale * max(ratio_high - 1.0, 0.0)), poisson)
    below = np.maximum(np.hypot(point - lower, scale * max(1.0 - ratio_low, 0.0)), poisson)
    return point - below, point + above


def normal_quantile(interval_width: float) -> float:
    """z of a central interval this wide (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + interval_width / 2)


def interval_metrics(
    actual: np.ndarray, predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray, scale: float
) -> dict[str, float]:
    nonzero = actual != 0
    mape = (
        float(np.mean(np.abs((actual[nonzero] - predicted[nonzero]) / actual[nonzero])))
        if nonzero.any()
        else float("nan")
    )
    mae = float(np.mean(np.abs(actual - predicted)))
    return {
        "mae": mae,
        "mape": mape,
        "coverage": float(np.mean((actual >= lower) & (actual <= upper))),
        "mase": mae / scale,
    }


def seasonal_naive(train: np.ndarray, steps: int, width: float) -> tuple[np.ndarray, ...]:
    """Repeat the last season; the interval comes from the seasonal differences' quantiles.

    The season is a week once the history holds a week plus a day of seasonal differences
    (Hyndman & Athanasopoulos' seasonal naive with m = 168 for hourly data): a day's repeat
    forecasts a Monday from a Sunday."""
    season = WEEK if len(train) >= WEEK + SEASON else SEASON
    reps = int(np.ceil(steps / season))
    point = np.tile(train[-season:], reps)[:steps]
    residuals = train[season:] - train[:-season]
    lo, hi = np.quantile(residuals, [(1 - width) / 2, 1 - (1 - width) / 2])
    return point, point + lo, point + hi


def _prophet(params: ForecastParams, mode: str, span_days: float) -> Prophet:
    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    weekly = span_days >= 14
    model = Prophet(
        interval_width=params.interval_width,
        seasonality_mode=mode,
        daily_seasonality=not weekly,  # with two weeks, split into workday/weekend profiles
        weekly_seasonality=weekly,
        yearly_seasonality=False,
        uncertainty_samples=params.uncertainty_samples,
    )
    if weekly:
        model.add_seasonality("daily_workday", period=1, fourier_order=4, condition_name="workday")
        model.add_seasonality("daily_weekend", period=1, fourier_order=4, condition_name="weekend")
    return model


def _with_conditions(frame: pd.DataFrame) -> pd.DataFrame:
    workday = frame["ds"].dt.dayofweek < 5
    return frame.assign(workday=workday, weekend=~workday)


@contextmanager
def seeded_numpy(key: str) -> Iterator[None]:
    """numpy's global generator seeded by ``key`` for the block, then restored. Prophet draws
    its interval's trend and noise samples from that generator: seeded by the series, a re-run
    or retried job writes the same forecasts, and a tuning run reads the same bands."""
    state = np.random.get_state()
    np.random.seed(zlib.crc32(key.encode()))
    try:
        yield
    finally:
        np.random.set_state(state)


def forecast_series(series: pd.DataFrame, params: ForecastParams) -> pd.DataFrame:
    """One (ip, feature) series of hourly ``ds, y`` → forecast rows and one quality row, the
    same on every run (``seeded_numpy``).

    Optional ``ratio_low``, ``ratio_high`` columns (one value per series): the within-hour
    ratios that ``sample_band`` widens the forecast interval by; optional ``is_count``: the
    series' samples are counts, whose band is at least Poisson."""
    ip, feature = str(series["ip"].iloc[0]), str(series["feature"].iloc[0])
    with seeded_numpy(f"{ip}|{feature}"):
        return _forecast_series(series, ip, feature, params)


def _forecast_series(
    series: pd.DataFrame, ip: str, feature: str, params: ForecastParams
) -> pd.DataFrame:
    count_flag = series["is_count"].iloc[0] if "is_count" in series else None
    is_count = bool(count_flag) if pd.notna(count_flag) else False
    ratio_low, ratio_high = (
        float(series[column].iloc[0])
        if column in series and pd.notna(series[column].iloc[0])
        else 1.0
        for column in ("ratio_low", "ratio_high")
    )
    history = (
        series[["ds", "y"]].dropna().sort_values("ds").drop_duplicates("ds").reset_index(drop=True)
    )
    history["ds"] = pd.to_datetime(history["ds"]).dt.tz_localize(None)
    quality = {"kind": "quality", "ip": ip, "feature": feature, "points": len(history)}
    needed = max(params.min_points, params.holdout_hours + 2 * SEASON)
    if len(history) < needed:
        return _frame([{**quality, "model": "none", "reason": f"{len(history)} < {needed} points"}])
    train, holdout = history.iloc[: -params.holdout_hours], history.iloc[-params.holdout_hours :]
    mode = choose_seasonality_mode(train, params.seasonality_mode)
    span_days = (history["ds"].iloc[-1] - history["ds"].iloc[0]).total_seconds() / 86400
    scale = mase_scale(train["y"].to_numpy())

    model = _prophet(params, mode, span_days).fit(_with_conditions(train))
    predicted = model.predict(_with_conditions(holdout[["ds"]]))
    actual = holdout["y"].to_numpy()
    prophet_scores = interval_metrics(
        actual,
        *floored_at_zero(
            train["y"].to_numpy(),
            predicted["yhat"].to_numpy(),
            predicted["yhat_lower"].to_numpy(),
            predicted["yhat_upper"].to_numpy(),
        ),
        scale,
    )
    naive = seasonal_naive(train["y"].to_numpy(), len(holdout), params.interval_width)
    naive_scores = interval_metrics(actual, *naive, scale)
    # Same series, same scale: comparing MAE is comparing MASE, and survives a zero scale.
    use_prophet = prophet_scores["mae"] <= naive_scores["mae"]

    future = pd.DataFrame(
        {
            "ds": pd.date_range(
                history["ds"].iloc[-1] + pd.Timedelta(hours=1),
                periods=params.horizon_hours,
                freq="h",
            )
        }
    )
    if use_prophet:
        full = _prophet(params, mode, span_days).fit(
            _with_conditions(history), init=warm_start_params(model)
        )
        out = full.predict(_with_conditions(future))
        point, lower, upper = (out[c].to_numpy() for c in ("yhat", "yhat_lower", "yhat_upper"))
    else:
        point, lower, upper = seasonal_naive(
            history["y"].to_numpy(), params.horizon_hours, params.interval_width
        )
    point, lower, upper = floored_at_zero(history["y"].to_numpy(), point, lower, upper)
    count_z = normal_quantile(params.interval_width) if is_count else 0.0
    sample_lower, sample_upper = sample_band(point, lower, upper, ratio_low, ratio_high, count_z)
    (sample_lower,) = floored_at_zero(history["y"].to_numpy(), sample_lower)
    chosen = "prophet" if use_prophet else "seasonal_naive"
    scores = prophet_scores if use_prophet else naive_scores
    rows = [
        {
            "kind": "forecast",
            "ip": ip,
            "feature": feature,
            "ds": ds,
            "yhat": p,
            "yhat_lower": lo,
            "yhat_upper": hi,
            "sample_lower": sample_lo,
            "sample_upper": sample_hi,
            "model": chosen,
            "points": len(history),
        }
        for ds, p, lo, hi, sample_lo, sample_hi in zip(
            future["ds"], point, lower, upper, sample_lower, sample_upper, strict=True
        )
    ]
    rows.append(
        {
            **quality,
            **{k: v for k, v in scores.items() if k != "mae"},
            "model": chosen,
            "mase_naive": naive_scores["mase"],
            "seasonality_mode": mode,
            "reason": None if use_prophet else "seasonal-naive beat Prophet on the hold-out",
        }
    )
    return _frame(rows)


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).reindex(columns=OUTPUT_COLUMNS)
    frame["points"] = frame["points"].astype("int64")  # every row carries the series length
    frame["ds"] = pd.to_datetime(frame["ds"])  # all-missing on quality rows: still timestamps
    for column in STRING_COLUMNS:  # an all-missing column must not turn float for Arrow
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame
