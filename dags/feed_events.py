"""feed_events: every data interval's generated events, once per source, idempotently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run

SOURCES = ["ip", "server", "cdn", "weather"]


@dag(
    dag_id="feed_events",
    schedule=schedule_of("feed_events"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "ingest"],
    doc_md="""
Generates the data interval's IP, server, CDN and weather events and sends them to Kafka, the
hot store (IP features) and the ground-truth table. Generators are pure functions of the
interval, so a retry or a cleared task re-sends identical events with identical ids and nothing
downstream is duplicated. No catch-up storm: only the latest interval runs.
""",
)
def feed_events() -> None:
    @task
    def feed(
        source: str,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, int]:
        from common.defaults import data_interval, settings
        from lambdawatch.pipelines.event_feed import feed_interval

        start, end = data_interval("feed_events", data_interval_start, data_interval_end, dag_run)
        return feed_interval(settings(), source, start, end)

    record_run(feed.expand(source=SOURCES), sample_hot_store=True)


feed_events()
