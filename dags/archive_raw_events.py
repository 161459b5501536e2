"""archive_raw_events: each hour's records of every event topic → Parquet, for backtests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from common.assets import RAW_EVENTS
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run


@dag(
    dag_id="archive_raw_events",
    schedule=schedule_of("archive_raw_events"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "archive"],
    doc_md="""
Spark batch: the records every event topic received in the hours the data interval touches
(by Kafka's record time; a manual run: the last hour and this one so far), written as they
came (raw bytes, topic, partition, offset, arrival and event time) to
`<history>/raw/source=<source>/arrived=<hour>/` as Parquet. Each hour's directory is replaced
whole, so a retried run, or the scheduled run after a manual one, neither duplicates nor
drops. Runs hourly, well within the
topics' retention; `lambdawatch backtest --from/--to` and the `backtest` DAG read it.
""",
)
def archive_raw_events() -> None:
    @task(outlets=[RAW_EVENTS])
    def archive(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from common.defaults import data_interval, settings
        from common.spark import submit_with_provider
        from lambdawatch.pipelines.spark_jobs import run_spark_job

        start, end = data_interval(
            "archive_raw_events", data_interval_start, data_interval_end, dag_run
        )
        interval = ["--from", start.isoformat(), "--to", end.isoformat()]
        return run_spark_job(
            settings(), "archive_raw_events", interval, launch=submit_with_provider
        )

    record_run(archive())


archive_raw_events()
