"""apply_retention: each large table keeps config.json's ``retention.days``, a day at a time."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run


@dag(
    dag_id="apply_retention",
    schedule=schedule_of("apply_retention"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "retention"],
    doc_md="""
Bounded growth. The large serving tables (`rt_cpu_windows`, `rt_ip_windows`,
`rt_server_status`, `rt_cdn_clusters`) and `ip_history` are partitioned by day: this DAG makes
the partitions of the next `retention.days_ahead` days and drops every day older than the
table's `retention.days` (config.json) whole. `anomalies` and `speed_layer_progress` have their
old rows deleted. It runs through the database function `lambdawatch_apply_retention` (the only
DDL the batch role may cause); a second run the same day changes nothing.
""",
)
def apply_retention() -> None:
    @task
    def retain() -> dict[str, Any]:
        from dataclasses import asdict

        from common.defaults import settings
        from lambdawatch.pipelines.retention import apply_retention

        return {"tables": [asdict(done) for done in apply_retention(settings())]}

    record_run(retain())


apply_retention()
