"""baseline_stats: mean, variance and σ per metric × entity over a trailing window → ``baselines``.

CPU per server (pooled from the speed layer's windows; the CPU detector reads these live),
temperature, feels-like and their difference per city, and every IP feature per IP (from the
archived history).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.core.tables import TABLES
from spark_apps.detectors.cpu import METRIC as CPU_METRIC
from spark_apps.io import read_exclusions, read_query
from spark_apps.jobs.common import parse_interval_end, print_summary, time_between
from spark_apps.session import build_session
from spark_apps.transforms.baselines import (
    BASELINE_COLUMNS,
    robust_pooled_baselines,
    sample_baselines,
)
from spark_apps.transforms.exclusions import flag_excluded, without_excluded

WEATHER_METRICS = ("temperature", "feels_like", "temperature_minus_feels_like")


def compute_baselines(
    cpu_windows: DataFrame,
    weather: DataFrame,
    ip_history: DataFrame,
    start: datetime,
    end: datetime,
) -> DataFrame:
    """Every baseline of one trailing window, in the ``baselines`` table's shape: CPU from
    the windows that describe normal behaviour (``robust_pooled_baselines``; ``cpu_windows``
    carries an ``excluded`` flag), the rest from plain sample statistics."""
    lo, hi = F.lit(start).cast("timestamp"), F.lit(end).cast("timestamp")
    cpu = robust_pooled_baselines(
        cpu_windows, CPU_METRIC, "server_id", "samples", "mean_cpu", "std_cpu", lo, hi,
        excluded="excluded",
    )  # fmt: skip
    weather_long = weather.select(
        "city",
        F.explode(
            F.array(
                *[
                    F.struct(F.lit(name).alias("metric"), F.col(name).alias("value"))
                    for name in WEATHER_METRICS
                ]
            )
        ).alias("m"),
    ).select("city", "m.metric", "m.value")
    weather_baselines = sample_baselines(weather_long, F.col("metric"), "city", "value", lo, hi)
    ip = sample_baselines(
        ip_history.withColumn("metric", F.concat(F.lit("ip."), "feature")),
        F.col("metric"),
        "ip",
        "value",
        lo,
        hi,
    )
    return cpu.unionByName(weather_baselines).unionByName(ip).select(*BASELINE_COLUMNS)


def run(spark: SparkSession, settings: Settings, secrets: Secrets, end: datetime) -> dict[str, int]:
    start = end - timedelta(hours=settings.models.baselines.trailing_hours)
    cpu = read_query(
        spark,
        settings,
        secrets,
        "SELECT server_id, window_start, window_end, samples, mean_cpu, std_cpu "
        f"FROM rt_cpu_windows WHERE {time_between('window_start', start, end)}",
    )
    exclusions = read_exclusions(spark, settings, secrets).cache()
    cpu = flag_excluded(cpu, exclusions, "server_id", "window_start", "window_end")
    weather = read_query(
        spark,
        settings,
        secrets,
        "SELECT city, temperature, feels_like, temperature_minus_feels_like FROM rt_weather "
        f"WHERE {time_between('ts', start, end)}",
    )
    history = read_query(
        spark,
        settings,
        secrets,
        f"SELECT ip, feature, ts, value FROM ip_history WHERE {time_between('ts', start, end)}",
    )
    history = without_excluded(history, exclusions, "ip", "ts")
    rows = [tuple(row) for row in compute_baselines(cpu, weather, history, start, end).collect()]
    with db.connect(settings, secrets) as conn:
        written = db.upsert_rows(conn, "baselines", BASELINE_COLUMNS, rows, TABLES["baselines"].key)
    by_metric: dict[str, int] = {}
    for row in rows:
        family = str(row[0]).split(".")[0]
        by_metric[family] = by_metric.get(family, 0) + 1
    return {"baselines": written, **{f"entities_{k}": v for k, v in sorted(by_metric.items())}}


def main(argv: list[str] | None = None) -> None:
    args = parse_interval_end(argv, __doc__ or "")
    settings = load_settings()
    spark = build_session("lambdawatch-baseline_stats", settings, with_kafka=False, with_jdbc=True)
    try:
        print_summary(run(spark, settings, secrets_for(settings), args.interval_end))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
