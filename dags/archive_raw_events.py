"""archive_raw_events: each hour's records of every event topic → Parquet, for backtests."""

from __future__ import annotations

from airflow.sdk import dag

from common.assets import RAW_EVENTS
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.spark import BatchJobOperator, interval_arguments
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
    job = BatchJobOperator(
        task_id="archive",
        job="archive_raw_events",
        job_arguments=interval_arguments,
        outlets=[RAW_EVENTS],
    )
    record_run(job.output)


archive_raw_events()
