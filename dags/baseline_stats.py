"""baseline_stats: a Spark batch job submitted to the configured master (local or spark://)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from common.assets import BASELINES
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
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
    @task(outlets=[BASELINES])
    def baselines(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from common.defaults import data_interval, settings
        from common.spark import submit_with_provider
        from lambdawatch.pipelines.spark_jobs import run_spark_job

        _, end = data_interval("baseline_stats", data_interval_start, data_interval_end, dag_run)
        return run_spark_job(
            settings(),
            "baseline_stats",
            ["--interval-end", end.isoformat()],
            launch=submit_with_provider,
        )

    record_run(baselines())


baseline_stats()
