"""forecast_ip_traffic: one Prophet model per IP × feature on the full archived history,
fitted in parallel with ``groupBy().applyInPandas()``; forecasts (with the band a single sample
is judged by) and fit quality → PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.core.tables import TABLES
from spark_apps.io import read_exclusions, read_query
from spark_apps.jobs.common import parse_interval_end, print_summary
from spark_apps.session import build_session
from spark_apps.transforms.exclusions import without_excluded
from spark_apps.transforms.forecast import OUTPUT_SCHEMA, ForecastParams, forecast_series

FORECAST_COLUMNS = TABLES["ip_forecasts"].names_except("created_at")
QUALITY_COLUMNS = TABLES["forecast_quality"].names_except("created_at")


def hourly_history(history: DataFrame, interval_width: float) -> DataFrame:
    """Raw samples → one mean per IP × feature × hour (the model's ``ds, y``), with the
    series' within-hour scatter: ``sample / hourly mean`` at the interval's two quantiles
    (``ratio_low``, ``ratio_high``; absent where no hour has a positive mean), and whether
    every sample of the series is a whole number ≥ 0 (``is_count``)."""
    samples = history.withColumn("ds", F.date_trunc("hour", "ts"))
    whole = (F.col("value") >= 0) & (F.col("value") == F.floor("value"))
    hourly_with_flag = samples.groupBy("ip", "feature", "ds").agg(
        F.avg("value").alias("y"), F.bool_and(whole).alias("hour_is_count")
    )
    hourly = hourly_with_flag.drop("hour_is_count")
    counts = hourly_with_flag.groupBy("ip", "feature").agg(
        F.bool_and("hour_is_count").alias("is_count")
    )
    tail = (1 - interval_width) / 2
    ratios = (
        samples.join(hourly.where(F.col("y") > 0), ["ip", "feature", "ds"])
        .groupBy("ip", "feature")
        .agg(F.percentile_approx(F.col("value") / F.col("y"), [tail, 1 - tail]).alias("q"))
        .select(
            "ip", "feature", F.col("q")[0].alias("ratio_low"), F.col("q")[1].alias("ratio_high")
        )
    )
    return hourly.join(ratios, ["ip", "feature"], "left").join(counts, ["ip", "feature"])


def fit_all(hourly: DataFrame, params: ForecastParams, partitions: int) -> DataFrame:
    """Every series fitted in parallel: one pandas group per (ip, feature).

    Series are spread over ``partitions`` tasks explicitly; adaptive execution would otherwise
    coalesce the small grouped shuffle into one task and fit everything on one core.
    """

    def fit(series: pd.DataFrame) -> pd.DataFrame:
        return forecast_series(series, params)

    return (
        hourly.repartition(partitions, "ip", "feature")
        .groupBy("ip", "feature")
        .applyInPandas(fit, OUTPUT_SCHEMA)
    )


def run(spark: SparkSession, settings: Settings, secrets: Secrets, end: datetime) -> dict[str, Any]:
    config = settings.models.prophet
    params = ForecastParams(
        horizon_hours=config.horizon_hours,
        interval_width=config.interval_width,
        min_points=config.min_points,
        holdout_hours=config.holdout_hours,
        seasonality_mode=config.seasonality_mode,
    )
    run_id = "forecast-" + end.strftime("%Y%m%dT%H%M%SZ")
    history = read_query(
        spark,
        settings,
        secrets,
        "SELECT ip, feature, ts, value FROM ip_history "
        f"WHERE ts < '{end.isoformat()}'::timestamptz",
    )
    history = without_excluded(history, read_exclusions(spark, settings, secrets), "ip", "ts")
    partitions = max(2, spark.sparkContext.defaultParallelism * 2)
    results = fit_all(hourly_history(history, params.interval_width), params, partitions).toPandas()
    forecasts = results[results["kind"] == "forecast"].assign(run_id=run_id)
    quality = results[results["kind"] == "quality"].assign(run_id=run_id)
    forecast_rows = list(forecasts[list(FORECAST_COLUMNS)].itertuples(index=False, name=None))
    quality_rows = [
        tuple(None if pd.isna(v) else v for v in row)
        for row in quality[list(QUALITY_COLUMNS)].itertuples(index=False, name=None)
    ]
    with db.connect(settings, secrets) as conn:
        for table, columns, rows in (
            ("ip_forecasts", FORECAST_COLUMNS, forecast_rows),
            ("forecast_quality", QUALITY_COLUMNS, quality_rows),
        ):
            db.upsert_rows(conn, table, columns, rows, TABLES[table].key)
    fitted = quality[quality["model"] != "none"]
    return {
        "run_id": run_id,
        "series": len(quality),
        "fitted": len(fitted),
        "skipped": int((quality["model"] == "none").sum()),
        "prophet": int((fitted["model"] == "prophet").sum()),
        "seasonal_naive": int((fitted["model"] == "seasonal_naive").sum()),
        "forecasts": len(forecast_rows),
        "median_coverage": float(fitted["coverage"].median()) if len(fitted) else None,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_interval_end(argv, __doc__ or "")
    settings = load_settings()
    spark = build_session(
        "lambdawatch-forecast_ip_traffic",
        settings,
        with_kafka=False,
        with_jdbc=True,
        extra={"spark.sql.adaptive.coalescePartitions.enabled": "false"},
    )
    try:
        secrets = secrets_for(settings)
        print_summary(run(spark, settings, secrets, args.interval_end))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
