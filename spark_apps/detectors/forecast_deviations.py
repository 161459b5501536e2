"""Forecast deviations: live IP features against the batch layer's Prophet forecast.

The lambda join: each sample is compared with the forecast for its IP, feature and hour, by
the hour's *sample band* (where one sample falls: the forecast interval of the hourly mean
widened by the series' within-hour scatter, ``spark_apps.transforms.forecast.sample_band``).
The score is the distance from the point forecast in units of the band's half-width on the
sample's side (1: the band's edge). Outside the band and beyond ``warn_factor`` is WARN;
beyond ``error_factor``, on the side(s) ``error_direction`` names, is ERROR (as an anomaly
monitor's "above / below / above or below the bounds"). Samples of hours with no forecast are
not judged.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_apps.detectors.anomaly import anomaly_columns

# ``lower``, ``upper``: the sample band (``lambdawatch.core.model_registry.forecasts_between``)
FORECAST_LOOKUP_SCHEMA = (
    "ip string, feature string, ds timestamp, yhat double, lower double, upper double, "
    "run_id string"
)


def judge_against_forecast(samples: DataFrame, forecasts: DataFrame) -> DataFrame:
    """``timestamp, src_ip, feature, value`` samples with their hour's forecast and a score:
    the distance from ``yhat`` in half-widths of the band on that side (1 = on its edge)."""
    lookup = forecasts.select(
        F.col("ip").alias("src_ip"), "feature", F.col("ds").alias("hour"),
        "yhat", "lower", "upper", "run_id",
    )  # fmt: skip
    above = F.col("value") >= F.col("yhat")
    half_width = F.greatest(
        F.when(above, F.col("upper") - F.col("yhat")).otherwise(F.col("yhat") - F.col("lower")),
        F.lit(1e-9),
    )
    return (
        samples.withColumn("hour", F.date_trunc("hour", "timestamp"))
        .join(F.broadcast(lookup), ["src_ip", "feature", "hour"])
        .withColumn("score", F.abs(F.col("value") - F.col("yhat")) / half_width)
        .withColumn(
            "outside", (F.col("value") < F.col("lower")) | (F.col("value") > F.col("upper"))
        )
    )


def deviation_columns(
    error_factor: float, error_direction: str, warn_factor: float = 1.0
) -> list[Column]:
    """A judged sample as the anomaly record: SAFE inside the band or within
    ``warn_factor`` half-widths, else WARN, and ERROR beyond ``error_factor`` half-widths on
    the ``error_direction`` side."""
    side = {
        "above": F.col("value") > F.col("yhat"),
        "below": F.col("value") < F.col("yhat"),
        "both": F.lit(True),
    }[error_direction]
    severity = (
        F.when(~F.col("outside") | (F.col("score") <= warn_factor), "SAFE")
        .when((F.col("score") > error_factor) & side, "ERROR")
        .otherwise("WARN")
    )
    return anomaly_columns(
        "forecast_deviations",
        entity=F.col("src_ip"),
        metric=F.col("feature"),
        window_start=F.col("timestamp"),
        window_end=F.col("timestamp"),
        value=F.col("value"),
        expected=F.col("yhat"),
        score=F.col("score"),
        severity=severity,
        model_version=F.col("run_id"),
    )


def forecast_deviations(
    judged: DataFrame, error_factor: float, error_direction: str, warn_factor: float = 1.0
) -> DataFrame:
    """The samples judged WARN or ERROR, as anomalies."""
    records = judged.select(*deviation_columns(error_factor, error_direction, warn_factor))
    return records.where(F.col("severity") != "SAFE")
