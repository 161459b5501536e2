"""retrain_cdn_kmeans: a Spark batch job submitted to the configured master (local or spark://)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from common.assets import CDN_MODEL
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run


@dag(
    dag_id="retrain_cdn_kmeans",
    schedule=schedule_of("retrain_cdn_kmeans"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "ml"],
    doc_md="""
Spark MLlib: standardises the CDN features (the scaler is saved with the model, so no column
dominates the distances), fits KMeans (`models.kmeans.k`), stores a versioned model with its
distance threshold and registers it in `model_registry`. A model worse than the promoted one on
a held-out set is registered but not promoted; the speed layer switches to a promoted one
without restart.
""",
)
def retrain_cdn_kmeans() -> None:
    @task(outlets=[CDN_MODEL])
    def train(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from common.defaults import data_interval, settings
        from common.spark import submit_with_provider
        from lambdawatch.pipelines.spark_jobs import run_spark_job

        _, end = data_interval(
            "retrain_cdn_kmeans", data_interval_start, data_interval_end, dag_run
        )
        return run_spark_job(
            settings(),
            "retrain_cdn_kmeans",
            ["--interval-end", end.isoformat()],
            launch=submit_with_provider,
        )

    record_run(train())


retrain_cdn_kmeans()
