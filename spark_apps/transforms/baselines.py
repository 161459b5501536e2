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
