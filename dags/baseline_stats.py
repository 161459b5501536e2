"""baseline_stats: a Spark batch job submitted to the configured master (local or spark://)."""

from __future__ import annotations

from airflow.sdk import dag

from common.assets import BASELINES
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.spark import BatchJobOperator, interval_end_arguments
from common.tasks import record_run


@dag(
    dag_id="baseline_stats",
    schedule=schedule_of("baseline_stats"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "batch"],
    doc_md="""
Spark batch: mean, variance and σ per metric × entity over the trailing window
(`models.baselines.trailing_hours`) into `baselines`: CPU per server (the live CPU detector re-
reads them every micro-batch, no restart), temperature and feels-like per city, every IP
feature per IP.
""",
)
def baseline_stats() -> None:
    job = BatchJobOperator(
        task_id="baselines",
        job="baseline_stats",
        job_arguments=interval_end_arguments,
        outlets=[BASELINES],
    )
    record_run(job.output)


baseline_stats()
