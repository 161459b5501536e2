"""Normal behaviour per metric × entity: mean, variance and σ over a trailing window.

Two inputs, one output shape (the ``baselines`` table):
* raw samples (weather readings, archived IP history): plain sample statistics;
* pre-aggregated windows (the speed layer's CPU windows: count, mean, σ per 500 ms): pooled
  exactly with the law of total variance, so the baseline equals what the raw samples give
  without storing every sample.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.tables import TABLES

BASELINE_COLUMNS = TABLES["baselines"].names_except("computed_at")


def _finish(frame: DataFrame, start: Column, end: Column) -> DataFrame:
    return frame.select(
        "metric",
        "entity",
        "mean",
        "variance",
        F.sqrt("variance").alias("stddev"),
        "samples",
        start.alias("window_start"),
        end.alias("window_end"),
    )


def sample_baselines(
    samples: DataFrame, metric: str | Column, entity: str, value: str, start: Column, end: Column
) -> DataFrame:
    """Sample mean and (n − 1) variance of ``value`` per entity; single samples get variance 0."""
    metric_column = F.lit(metric) if isinstance(metric, str) else metric
    grouped = (
        samples.withColumn("metric", metric_column)
        .groupBy("metric", F.col(entity).cast("string").alias("entity"))
        .agg(
            F.avg(value).alias("mean"),
            F.coalesce(F.var_samp(value), F.lit(0.0)).alias("variance"),
            F.count(value).alias("samples"),
        )
    )
    return _finish(grouped, start, end)


def pooled_baselines(
    windows: DataFrame,
    metric: str,
    entity: str,
    count: str,
    mean: str,
    stddev: str,
    start: Column,
    end: Column,
) -> DataFrame:
    """Combine per-window (n, mean, σ) into per-entity statistics of the underlying samples.

    mean = Σ nᵢ·mᵢ / N;  variance = (Σ (nᵢ − 1)·sᵢ² + Σ nᵢ·(mᵢ − mean)²) / (N − 1)
    """
    within = (F.col(count) - 1) * F.coalesce(F.col(stddev), F.lit(0.0)) ** 2
    per_entity = windows.groupBy(F.col(entity).cast("string").alias("entity")).agg(
        F.sum(count).alias("samples"),
        F.sum(F.col(count) * F.col(mean)).alias("weighted_sum"),
        F.sum(within).alias("within_ss"),
        F.sum(F.col(count) * F.col(mean) ** 2).alias("weighted_square_sum"),
    )
    grand_mean = F.col("weighted_sum") / F.col("samples")
    # Σ nᵢ(mᵢ − m)² = Σ nᵢ mᵢ² − N m²
    between = F.col("weighted_square_sum") - F.col("samples") * grand_mean**2
    variance = F.when(
        F.col("samples") > 1,
        F.greatest(F.lit(0.0), (F.col("within_ss") + between) / (F.col("samples") - 1)),
    ).otherwise(F.lit(0.0))
    pooled = per_entity.select(
        F.lit(metric).alias("metric"),
        "entity",
        grand_mean.alias("mean"),
        variance.alias("variance"),
        F.col("samples").cast("long").alias("samples"),
    )
    return _finish(pooled, start, end)


# Iglewicz & Hoaglin's cutoff on the modified z-score: beyond it a value is an outlier.
OUTLIER_CUTOFF = 3.5
MAD_TO_SIGMA = 1.4826  # σ of a normal distribution is 1.4826 × its median absolute deviation
# An entity whose excluded windows (incident or fed-back periods) exceed this share keeps
# them all: a baseline from what little is left would describe no normal at all.
MAX_EXCLUDED_SHARE = 0.5
# Fewer windows than this say too little about an entity's spread to call any an outlier.
MIN_WINDOWS_FOR_OUTLIERS = 20


def robust_pooled_baselines(
    windows: DataFrame,
    metric: str,
    entity: str,
    count: str,
    mean: str,
    stddev: str,
    start: Column,
    end: Column,
    excluded: str | None = None,
) -> DataFrame:
    """``pooled_baselines`` of the windows that describe normal behaviour.

    Windows in an incident or a period fed back as not normal (``excluded`` true) are left
    out, unless that would leave out more than ``MAX_EXCLUDED_SHARE`` of an entity's windows.
    Of the rest, windows whose mean is an outlier by the modified z-score (Iglewicz & Hoaglin:
    |m − median| / (1.4826 · MAD) > 3.5, median and MAD of the window means per entity, once
    it has ``MIN_WINDOWS_FOR_OUTLIERS``) are left out too, so an anomaly no one reported (a
    stuck sensor, a spike) cannot widen σ; the remaining windows are pooled exactly, so σ
    keeps its meaning for the thresholds.
    """
    key = F.col(entity).cast("string")
    flagged = windows.withColumn(
        "_excluded", F.coalesce(F.col(excluded), F.lit(False)) if excluded else F.lit(False)
    )
    share = flagged.groupBy(key.alias("_entity")).agg(
        F.avg(F.col("_excluded").cast("double")).alias("_excluded_share")
    )
    kept = (
        flagged.join(share, key == F.col("_entity"))
        .where(~F.col("_excluded") | (F.col("_excluded_share") > MAX_EXCLUDED_SHARE))
        .drop("_excluded", "_excluded_share")
    )
    centre = kept.groupBy("_entity").agg(F.percentile_approx(mean, 0.5, 10_000).alias("_median"))
    with_centre = kept.join(centre, "_entity")
    spread = with_centre.groupBy("_entity").agg(
        F.percentile_approx(F.abs(F.col(mean) - F.col("_median")), 0.5, 10_000).alias("_mad"),
        F.count(F.lit(1)).alias("_windows"),
    )
    deviation = F.abs(F.col(mean) - F.col("_median"))
    # no spread at all (MAD 0): only the windows at the median are normal
    modified_z = F.when(F.col("_mad") > 0, deviation / (MAD_TO_SIGMA * F.col("_mad"))).otherwise(
        F.when(deviation == 0, F.lit(0.0)).otherwise(F.lit(float("inf")))
    )
    inliers = (
        with_centre.join(spread, "_entity")
        .where((F.col("_windows") < MIN_WINDOWS_FOR_OUTLIERS) | (modified_z <= OUTLIER_CUTOFF))
        .drop("_entity", "_median", "_mad", "_windows")
    )
    return pooled_baselines(inliers, metric, entity, count, mean, stddev, start, end)
