"""CDN clustering: one pipeline (assemble → standardise → KMeans) used for training and scoring.

The scaler is fitted and saved with the model: unscaled, ``bytes_sent`` (millions) would
dominate every distance and the latency or error columns would not count at all. The speed
layer loads the saved ``PipelineModel``, so its feature assembly is the training one by
construction. Distances to the assigned centroid are computed with built-in array functions
(no Python UDF in the hot path).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lambdawatch.core.tables import TABLES
from spark_apps.detectors.anomaly import TIMESTAMP_FORMAT, anomaly_columns

MODEL_NAME = "cdn_kmeans"
METRIC = "distance_to_centroid"
# One row per CDN event: the cdn-clusters topic's records and rt_cdn_clusters' columns.
CDN_CLUSTER_COLUMNS = TABLES["rt_cdn_clusters"].names


def kmeans_pipeline(features: Sequence[str], k: int, max_iter: int, seed: int) -> Pipeline:
    return Pipeline(
        stages=[
            VectorAssembler(
                inputCols=list(features), outputCol="raw_features", handleInvalid="skip"
            ),
            StandardScaler(
                inputCol="raw_features", outputCol="features", withMean=True, withStd=True
            ),
            KMeans(
                featuresCol="features",
                predictionCol="cluster",
                k=k,
                maxIter=max_iter,
                seed=seed,
                initMode="k-means||",
            ),
        ]
    )


def centers_of(model: PipelineModel) -> list[list[float]]:
    kmeans = model.stages[-1]
    assert isinstance(kmeans, KMeansModel)
    return [[float(x) for x in center] for center in kmeans.clusterCenters()]


def assign_clusters(model: PipelineModel, frame: DataFrame) -> DataFrame:
    """Rows of ``frame`` with ``cluster`` and the Euclidean ``distance`` (in standardised
    units) to that cluster's centroid."""
    centers = F.array(*[F.array(*[F.lit(x) for x in center]) for center in centers_of(model)])
    assigned = model.transform(frame)
    centroid = F.element_at(centers, F.col("cluster") + 1)
    squared = F.zip_with(vector_to_array("features"), centroid, lambda a, b: (a - b) * (a - b))
    distance = F.sqrt(F.aggregate(squared, F.lit(0.0), lambda acc, x: acc + x))
    return assigned.withColumn("distance", distance)


def distance_threshold(scored: DataFrame, quantile: float) -> float:
    """The ``quantile`` of distances: beyond it, an event is unlike anything seen in training."""
    value = scored.select(F.percentile_approx("distance", quantile, 10_000)).first()
    return float(value[0]) if value and value[0] is not None else float("inf")


def evaluate(model: PipelineModel, holdout: DataFrame, threshold: float) -> dict[str, float]:
    """Held-out quality: silhouette (higher is better), mean distance and the share beyond
    ``threshold`` (≈ 1 − quantile when the model fits the held-out data)."""
    scored = assign_clusters(model, holdout).cache()
    try:
        silhouette = ClusteringEvaluator(
            featuresCol="features", predictionCol="cluster", metricName="silhouette"
        ).evaluate(scored)
        row = scored.agg(
            F.avg("distance").alias("mean_distance"),
            F.avg((F.col("distance") > threshold).cast("double")).alias("beyond_threshold"),
            F.count(F.lit(1)).alias("rows"),
        ).first()
    finally:
        scored.unpersist()
    assert row is not None
    return {
        "silhouette": float(silhouette),
        "mean_distance": float(row["mean_distance"] or 0.0),
        "beyond_threshold": float(row["beyond_threshold"] or 0.0),
        "holdout_rows": float(row["rows"]),
    }


def should_promote(
    candidate: dict[str, float], current: dict[str, float] | None, tolerance: float = 0.02
) -> bool:
    """Promote unless the current model is better on the same held-out set (by silhouette,
    with a small tolerance so retraining on fresh data is not blocked by noise)."""
    if current is None:
        return True
    return candidate["silhouette"] >= current["silhouette"] - tolerance


def cdn_cluster_rows(
    model: PipelineModel, events: DataFrame, version: str, threshold: float
) -> DataFrame:
    """Every CDN event with its cluster, distance, the model's threshold and version."""
    return assign_clusters(model, events).select(
        "edge_id",
        F.col("timestamp").alias("ts"),
        "pop",
        "region",
        "event_id",
        F.col("cluster").cast("int").alias("cluster"),
        "distance",
        F.lit(threshold).alias("threshold"),
        (F.col("distance") > F.lit(threshold)).alias("anomalous"),
        F.lit(version).alias("model_version"),
    )


def cdn_anomaly_columns(error_factor: float) -> list[Column]:
    """An assigned event as the anomaly record: SAFE within the threshold, WARN beyond it,
    ERROR beyond ``error_factor`` × the threshold."""
    ratio = F.col("distance") / F.greatest(F.col("threshold"), F.lit(1e-9))
    severity = (
        F.when(~F.col("anomalous"), "SAFE").when(ratio > error_factor, "ERROR").otherwise("WARN")
    )
    return anomaly_columns(
        "cdn_clusters",
        entity=F.col("edge_id"),
        metric=F.lit(METRIC),
        window_start=F.col("ts"),
        window_end=F.col("ts"),
        value=F.col("distance"),
        expected=F.col("threshold"),
        score=ratio,
        severity=severity,
        model_version=F.col("model_version"),
    )


def cdn_anomalies(rows: DataFrame, error_factor: float) -> DataFrame:
    """Events beyond the threshold, as anomalies."""
    return rows.where(F.col("anomalous")).select(*cdn_anomaly_columns(error_factor))


def cdn_clusters_to_kafka(rows: DataFrame) -> DataFrame:
    body = F.to_json(F.struct(*CDN_CLUSTER_COLUMNS), {"timestampFormat": TIMESTAMP_FORMAT})
    return rows.select(
        F.col("edge_id").cast("binary").alias("key"), body.cast("binary").alias("value")
    )
