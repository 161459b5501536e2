"""Forecast throughput and accuracy: the Spark job vs a serial Prophet loop vs ``Pool(2)``.

One isolated PostgreSQL holds ``--series`` hourly IP × feature series of ``--hours`` points
from the IP generator (office-hours, server and bursty profiles, weekly cycle, trend, noise,
injected anomalies). Measured in the same run:

* **spark_job**: the real ``forecast_ip_traffic`` job submitted with spark-submit in local
  mode (2 cores): JDBC read of the whole history, hourly roll-up, one Prophet fit per series
  in ``applyInPandas``, forecasts and fit quality upserted — wall time from submit to exit;
* **serial**: ``forecast_series`` (the same function) in a plain Python loop;
* **pool**: the same in ``multiprocessing.Pool(2)``.

The loops run on ``--reference-series`` of the series (a serial pass over all of them would
take longer than the job), so rates are compared as series per minute.

Accuracy comes from the job's ``forecast_quality`` rows: on each series' hold-out tail the job
scores Prophet and the seasonal-naive forecast (same value 24 h earlier) and keeps the better
one, so the share of series where Prophet was kept is the share where it beat the baseline.

Goals (issue 4/6): Spark >= 1.7 × the serial loop's series/min; 1,000 series × ~1.5k hourly
points in <= 5 min; Prophet beats seasonal-naive on >= 70 % of series, or the job picks the
better model per series and says so (it does: ``model`` and ``reason`` columns).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from rich.console import Console

from bench.common import running_stack, write_result
from generators.ip import EPOCH_2026_MS, IpGenerator
from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.pipelines.spark_jobs import run_spark_job
from spark_apps.transforms.forecast import ForecastParams, forecast_series

HOUR_MS = 3_600_000


def hourly_series(settings: Settings, series: int, hours: int) -> pd.DataFrame:
    """``ip, feature, ds, y`` for the first ``series`` IP × feature pairs, one point an hour."""
    features = settings.ips.features
    ips = settings.ips.resolved_addresses[: -(-series // len(features))]
    generator = IpGenerator(tuple(ips), interval_ms=HOUR_MS, seed=settings.generators.seed)
    batch = generator.generate(EPOCH_2026_MS, EPOCH_2026_MS + hours * HOUR_MS)
    events = pd.DataFrame(batch.events)
    events["ds"] = pd.to_datetime(events["timestamp"], utc=True)
    long = events.melt(id_vars=["src_ip", "ds"], value_vars=features, var_name="feature")
    long = long.rename(columns={"src_ip": "ip", "value": "y"})
    pairs = [(ip, feature) for ip in ips for feature in features][:series]
    wanted = pd.MultiIndex.from_tuples(pairs, names=["ip", "feature"])
    long = long.set_index(["ip", "feature"]).loc[lambda f: f.index.isin(wanted)].reset_index()
    long["y"] = long["y"].astype(float)
    return long


def load_history(settings: Settings, secrets: Any, frame: pd.DataFrame) -> int:
    with db.connect(settings, secrets, role="owner") as conn:
        db.apply_migrations(conn, settings.root / "sql")
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("TRUNCATE ip_history, ip_forecasts, forecast_quality")
            with cursor.copy("COPY ip_history (ip, feature, ts, value) FROM STDIN") as copy:
                for row in frame[["ip", "feature", "ds", "y"]].itertuples(index=False, name=None):
                    copy.write_row(row)
    return len(frame)


def _fit(job: tuple[pd.DataFrame, ForecastParams]) -> pd.DataFrame:
    return forecast_series(*job)


def python_loops(frame: pd.DataFrame, params: ForecastParams, count: int) -> dict[str, Any]:
    groups = [group for _key, group in frame.groupby(["ip", "feature"], sort=True)][:count]
    jobs = [(group, params) for group in groups]
    started = time.perf_counter()
    for job in jobs:
        _fit(job)
    serial = time.perf_counter() - started
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_fit, jobs, chunksize=1)
    pooled = time.perf_counter() - started

    def rate(seconds: float) -> dict[str, float]:
        return {"seconds": round(seconds, 2), "series_per_min": round(60 * len(jobs) / seconds, 1)}

    return {"series": len(jobs), "serial": rate(serial), "pool_2": rate(pooled)}


def accuracy(settings: Settings, secrets: Any, run_id: str) -> dict[str, Any]:
    with db.connect(settings, secrets) as conn:
        quality = pd.read_sql_query(  # type: ignore[call-overload]
            "SELECT model, mase, mase_naive, coverage, mape FROM forecast_quality "
            "WHERE run_id = %(run)s",
            conn,
            params={"run": run_id},
        )
    fitted = quality[quality["model"] != "none"]
    prophet = fitted[fitted["model"] == "prophet"]
    return {
        "series_scored": len(fitted),
        "skipped": int((quality["model"] == "none").sum()),
        "prophet_beats_seasonal_naive_share": round(len(prophet) / max(len(fitted), 1), 3),
        "median_mase_chosen": round(float(fitted["mase"].median()), 3),
        "median_mase_seasonal_naive": round(float(fitted["mase_naive"].median()), 3),
        "median_mase_prophet_where_kept": round(float(prophet["mase"].median()), 3)
        if len(prophet)
        else None,
        "median_interval_coverage_chosen": round(float(fitted["coverage"].median()), 3),
        "mean_interval_coverage_chosen": round(float(fitted["coverage"].mean()), 3),
        "median_mape_chosen": round(float(fitted["mape"].median()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=1500, help="hourly points per series")
    parser.add_argument("--reference-series", type=int, default=60)
    args = parser.parse_args()
    console = Console()
    with running_stack(["postgres"]) as (settings, stack):
        config = settings.models.prophet
        params = ForecastParams(
            horizon_hours=config.horizon_hours,
            interval_width=config.interval_width,
            min_points=config.min_points,
            holdout_hours=config.holdout_hours,
            seasonality_mode=config.seasonality_mode,
        )
        frame = hourly_series(settings, args.series, args.hours)
        rows = load_history(settings, stack.secrets, frame)
        series = frame.groupby(["ip", "feature"]).ngroups
        console.print(f"history: {series} series, {rows:,} hourly points")
        end = datetime.fromtimestamp(
            (EPOCH_2026_MS + args.hours * HOUR_MS) / 1000, tz=UTC
        ) + timedelta(hours=1)
        started = time.perf_counter()
        summary = run_spark_job(
            settings, "forecast_ip_traffic", ["--interval-end", end.isoformat()]
        )
        spark_seconds = time.perf_counter() - started
        console.print(f"spark job: {spark_seconds:.0f} s, {summary}")
        quality = accuracy(settings, stack.secrets, summary["run_id"])
        loops = python_loops(frame, params, args.reference_series)
    spark_rate = 60 * summary["series"] / spark_seconds
    serial_rate = loops["serial"]["series_per_min"]
    payload = {
        "goals": {
            "spark_vs_serial": ">= 1.7x series/min",
            "wall_time_1000_series": "<= 300 s",
            "prophet_beats_naive": ">= 70 % of series, or best model picked per series",
        },
        "series": series,
        "points_per_series": statistics.median(frame.groupby(["ip", "feature"]).size()),
        "spark_job": {
            "seconds_submit_to_exit": round(spark_seconds, 1),
            "series_per_min": round(spark_rate, 1),
            "summary": summary,
        },
        "python_loops": loops,
        "spark_vs_serial": round(spark_rate / serial_rate, 2),
        "spark_vs_pool_2": round(spark_rate / loops["pool_2"]["series_per_min"], 2),
        "accuracy": quality,
    }
    path = write_result("forecast", payload)
    console.print(
        f"spark {spark_rate:.0f} series/min ({spark_seconds:.0f} s for {series}) vs serial "
        f"{serial_rate:.0f}/min (×{spark_rate / serial_rate:.2f}) and Pool(2) "
        f"{loops['pool_2']['series_per_min']:.0f}/min; Prophet kept on "
        f"{quality['prophet_beats_seasonal_naive_share']:.0%} of series → {path}"
    )


if __name__ == "__main__":
    main()
