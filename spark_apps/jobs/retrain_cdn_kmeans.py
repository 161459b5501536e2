"""retrain_cdn_kmeans: KMeans on standardised CDN features, versioned, registered, promoted
only if it is not worse than the current model on the same held-out events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lambdawatch.core import db
from lambdawatch.core.events import SCHEMAS
from lambdawatch.core.model_registry import promoted_model
from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings, load_settings
from spark_apps.detectors.cdn_kmeans import (
    MODEL_NAME,
    assign_clusters,
    distance_threshold,
    evaluate,
    kmeans_pipeline,
    should_promote,
)
from spark_apps.io import read_exclusions
from spark_apps.jobs.common import parse_interval_end, print_summary
from spark_apps.session import build_session
from spark_apps.transforms.exclusions import without_excluded
from spark_apps.transforms.parsing import parse_events

MIN_ROWS_PER_CLUSTER = 10


def model_version(end: datetime) -> str:
    """Named after the data interval, so a re-run rewrites the same version."""
    return end.strftime("%Y%m%dT%H%M%SZ")


def read_cdn_events(
    spark: SparkSession, settings: Settings, start: datetime, end: datetime
) -> DataFrame:
    """The CDN topic's retained events in [start, end), parsed and de-duplicated by id."""
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", settings.topic("cdn_events").name)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    events, _dead = parse_events(raw, SCHEMAS["cdn"], MODEL_NAME)
    window = (F.col("timestamp") >= F.lit(start)) & (F.col("timestamp") < F.lit(end))
    return events.where(window).dropDuplicates(["event_id"])


def current_model(settings: Settings, secrets: Secrets) -> tuple[str, str] | None:
    with db.connect(settings, secrets) as conn:
        promoted = promoted_model(conn, MODEL_NAME)
    return (promoted.version, promoted.path) if promoted else None


def register(
    settings: Settings,
    secrets: Secrets,
    version: str,
    path: str,
    threshold: float,
    metrics: dict[str, Any],
    promoted: bool,
) -> None:
    """One registry row per version; promoting demotes the others in the same transaction."""
    with db.connect(settings, secrets) as conn, conn.transaction():
        if promoted:
            conn.execute(
                "UPDATE model_registry SET promoted = false "
                "WHERE model_name = %s AND version <> %s",
                (MODEL_NAME, version),
            )
        conn.execute(
            "INSERT INTO model_registry (model_name, version, path, threshold, metrics, promoted) "
            "VALUES (%s, %s, %s, %s, %s::jsonb, %s) "
            "ON CONFLICT (model_name, version) DO UPDATE SET path = EXCLUDED.path, "
            "threshold = EXCLUDED.threshold, metrics = EXCLUDED.metrics, "
            "promoted = EXCLUDED.promoted, created_at = now()",
            (MODEL_NAME, version, path, threshold, json.dumps(metrics), promoted),
        )


def run(spark: SparkSession, settings: Settings, secrets: Secrets, end: datetime) -> dict[str, Any]:
    config = settings.models.kmeans
    start = end - timedelta(hours=config.training_hours)
    events = without_excluded(
        read_cdn_events(spark, settings, start, end),
        read_exclusions(spark, settings, secrets),
        "edge_id",
        "timestamp",
    ).cache()
    rows = events.count()
    if rows < config.k * MIN_ROWS_PER_CLUSTER:
        return {"status": "skipped", "reason": f"{rows} CDN events in the window", "rows": rows}
    train, holdout = events.randomSplit([0.8, 0.2], seed=config.seed)
    model = kmeans_pipeline(config.features, config.k, config.max_iter, config.seed).fit(train)
    threshold = distance_threshold(assign_clusters(model, train), config.threshold_quantile)
    metrics = evaluate(model, holdout, threshold)
    previous = current_model(settings, secrets)
    version = model_version(end)
    incumbent = None
    if previous and previous[0] != version:
        incumbent = evaluate(PipelineModel.load(previous[1]), holdout, threshold=float("inf"))
    promoted = should_promote(metrics, incumbent)
    path = str(settings.models_path / MODEL_NAME / version)
    model.write().overwrite().save(path)
    summary = {**metrics, "train_rows": rows, "incumbent": incumbent}
    register(settings, secrets, version, path, threshold, summary, promoted)
    events.unpersist()
    return {
        "status": "trained",
        "version": version,
        "promoted": promoted,
        "threshold": threshold,
        "previous": previous[0] if previous else None,
        **metrics,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_interval_end(argv, __doc__ or "")
    settings = load_settings()
    spark = build_session("lambdawatch-retrain_cdn_kmeans", settings, with_jdbc=False)
    try:
        secrets = secrets_for(settings)
        print_summary(run(spark, settings, secrets, args.interval_end))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
