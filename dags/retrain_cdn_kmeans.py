"""retrain_cdn_kmeans: a Spark batch job submitted to the configured master (local or spark://)."""

from __future__ import annotations

from airflow.sdk import dag

from common.assets import CDN_MODEL
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.spark import BatchJobOperator, interval_end_arguments
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
    job = BatchJobOperator(
        task_id="train",
        job="retrain_cdn_kmeans",
        job_arguments=interval_end_arguments,
        outlets=[CDN_MODEL],
    )
    record_run(job.output)


retrain_cdn_kmeans()
