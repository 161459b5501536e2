"""CDN clustering: standardised KMeans, distances, anomalies and the live model switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession

from lambdawatch.core.model_registry import ModelCache, RegisteredModel
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS
from spark_apps.detectors.cdn_kmeans import (
    CDN_CLUSTER_COLUMNS,
    assign_clusters,
    cdn_anomalies,
    cdn_cluster_rows,
    centers_of,
    kmeans_pipeline,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = ["latency_p95_ms", "cache_hit_ratio", "bytes_sent"]
Point = tuple[float, float, float]


def _events(spark: SparkSession, points: list[Point]) -> DataFrame:
    rows = [
        (f"edge-{i % 7}", T0 + timedelta(seconds=i), "pop", "eu", f"e{i}", *point)
        for i, point in enumerate(points)
    ]
    return spark.createDataFrame(
        rows,
        "edge_id string, timestamp timestamp, pop string, region string, event_id string, "
        "latency_p95_ms double, cache_hit_ratio double, bytes_sent double",
    )


REGIMES = ((10.0, 0.9), (50.0, 0.6), (90.0, 0.3))


def _blobs(seed: int = 1, regimes: tuple[tuple[float, float], ...] = REGIMES) -> list[Point]:
    """Three regimes in latency and hit ratio (tens and tenths); ``bytes_sent`` is noise whose
    scale is a thousand times larger than the regimes' separation."""
    rng = np.random.default_rng(seed)
    points = []
    for latency, ratio in regimes:
        for _ in range(40):
            points.append(
                (latency + rng.normal(0, 1), ratio + rng.normal(0, 0.01), 5e6 + rng.normal(0, 1e5))
            )
    return points


def test_standardised_features_let_small_columns_count(spark: SparkSession) -> None:
    events = _events(spark, _blobs(regimes=REGIMES[::2]))
    model = kmeans_pipeline(FEATURES, k=2, max_iter=20, seed=1).fit(events)
    clusters = assign_clusters(model, events).select("latency_p95_ms", "cluster").collect()
    by_regime: dict[bool, set[int]] = {}
    for row in clusters:
        by_regime.setdefault(row["latency_p95_ms"] > 50, set()).add(row["cluster"])
    # Unscaled, the bytes noise would decide; standardised, each regime is one cluster.
    assert [len(by_regime[False]), len(by_regime[True])] == [1, 1]
    assert by_regime[False] != by_regime[True]


def test_distance_is_euclidean_to_the_assigned_centroid(spark: SparkSession) -> None:
    events = _events(spark, _blobs())
    model = kmeans_pipeline(FEATURES, k=3, max_iter=20, seed=1).fit(events)
    centers = np.array(centers_of(model))
    for row in assign_clusters(model, events).select("features", "cluster", "distance").collect():
        expected = np.linalg.norm(row["features"].toArray() - centers[row["cluster"]])
        assert row["distance"] == pytest.approx(expected, rel=1e-9)


def test_rows_carry_version_and_flag_events_beyond_the_threshold(spark: SparkSession) -> None:
    train = _events(spark, _blobs())
    model = kmeans_pipeline(FEATURES, k=3, max_iter=20, seed=1).fit(train)
    live = _events(spark, [(10.0, 0.9, 5e6), (300.0, 0.9, 5e6), (1000.0, 0.9, 5e6)])
    rows = cdn_cluster_rows(model, live, "v7", threshold=2.0)
    assert tuple(rows.columns) == CDN_CLUSTER_COLUMNS
    collected = {r["event_id"]: r for r in rows.collect()}
    assert {r["model_version"] for r in collected.values()} == {"v7"}
    assert [collected[e]["anomalous"] for e in ("e0", "e1", "e2")] == [False, True, True]

    anomalies = cdn_anomalies(rows, error_factor=10.0)
    assert tuple(anomalies.columns) == ANOMALY_COLUMNS
    found = {r["entity"]: r for r in anomalies.collect()}
    ratio_mid, ratio_far = (collected[e]["distance"] / 2.0 for e in ("e1", "e2"))
    assert ratio_mid < 10 < ratio_far  # the live points sit either side of the ERROR factor
    assert found["edge-1"]["severity"] == "WARN"
    assert found["edge-2"]["severity"] == "ERROR"
    assert found["edge-2"]["model_version"] == "v7"
    assert found["edge-2"]["score"] == pytest.approx(ratio_far)


def test_a_promoted_version_replaces_the_model_without_a_restart(
    spark: SparkSession, tmp_path: object
) -> None:
    events = _events(spark, _blobs())
    paths = {}
    for version, k in (("v1", 2), ("v2", 3)):
        path = f"{tmp_path}/{version}"
        kmeans_pipeline(FEATURES, k=k, max_iter=20, seed=1).fit(events).write().save(path)
        paths[version] = path
    cache: ModelCache[PipelineModel] = ModelCache(PipelineModel.load)
    assert cache.resolve(None) is None  # no model promoted yet

    def clusters_under(version: str, threshold: float) -> tuple[set[str], int]:
        resolved = cache.resolve(RegisteredModel("cdn_kmeans", version, paths[version], threshold))
        assert resolved is not None
        registered, model = resolved
        rows = cdn_cluster_rows(model, events, registered.version, threshold).collect()
        return {r["model_version"] for r in rows}, len({r["cluster"] for r in rows})

    assert clusters_under("v1", 3.0) == ({"v1"}, 2)
    assert clusters_under("v1", 3.0) == ({"v1"}, 2)
    assert cache.loads == 1  # the same version is not reloaded every micro-batch
    assert clusters_under("v2", 3.0) == ({"v2"}, 3)
    assert cache.loads == 2
    clusters_under("v2", 4.0)  # re-registered with a new threshold: no reload, new threshold
    assert cache.loads == 2
    assert cache.current is not None
    assert cache.current.threshold == 4.0
