"""The ``cdn_clusters`` query.

CDN events → cluster and distance to its centroid under the promoted KMeans model.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core import db
from lambdawatch.core.events import (
    CDN_SCHEMA,
)
from lambdawatch.core.model_registry import ModelCache, promoted_model
from spark_apps.detectors.cdn_kmeans import (
    CDN_CLUSTER_COLUMNS,
    MODEL_NAME,
    cdn_anomalies,
    cdn_cluster_rows,
    cdn_clusters_to_kafka,
)
from spark_apps.io import StreamIO

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """Each CDN event → cluster and distance under the promoted KMeans model.

    The registry is checked every micro-batch; a newly promoted version is loaded once and
    used from that batch on, so retraining takes effect without a restart. Until a first
    model is promoted, batches are logged and left unassigned (the events stay in Kafka,
    where the retraining job reads them).
    """
    config = io.settings.models.kmeans
    events, _dead = io.parse(io.kafka_source("cdn_events"), CDN_SCHEMA, "cdn_clusters")
    models: ModelCache[PipelineModel] = ModelCache(PipelineModel.load)

    def sink(frame: DataFrame, batch_id: int) -> None:
        with io.pool.connection() as conn:
            resolved = models.resolve(promoted_model(conn, MODEL_NAME))
        if resolved is None:
            log.warning("cdn_clusters: no promoted %s model yet (batch %d)", MODEL_NAME, batch_id)
            return
        registered, model = resolved
        threshold = registered.threshold if registered.threshold is not None else float("inf")
        rows = cdn_cluster_rows(model, frame, registered.version, threshold).persist()
        try:
            io.write_kafka(cdn_clusters_to_kafka(rows), "cdn_clusters", "cdn_clusters")
            io.upsert(rows.select(*CDN_CLUSTER_COLUMNS), "rt_cdn_clusters")
            refresh_minutes(io, rows)
            io.record_anomalies(cdn_anomalies(rows, config.error_threshold_factor), "cdn_clusters")
        finally:
            rows.unpersist()

    return io.start_query("cdn_clusters", events, batch_sink=sink)


def refresh_minutes(io: StreamIO, rows: DataFrame) -> None:
    """The per-minute cluster sizes (``rt_cdn_cluster_minutes``) of the minutes this
    micro-batch wrote, recomputed from ``rt_cdn_clusters`` after the batch is in it."""
    first_us, last_us = rows.agg(F.min(F.unix_micros("ts")), F.max(F.unix_micros("ts"))).first()
    if first_us is None:
        return
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with io.pool.connection() as conn:
        db.refresh_cdn_cluster_minutes(
            conn, epoch + timedelta(microseconds=first_us), epoch + timedelta(microseconds=last_us)
        )
