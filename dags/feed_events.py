"""feed_events: every data interval's generated events, once per source, idempotently."""

from __future__ import annotations

from datetime import datetime

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
    ) -> dict[str, int]:
        from common.defaults import settings
        from lambdawatch.pipelines.event_feed import feed_interval

        assert data_interval_start is not None
        assert data_interval_end is not None
        return feed_interval(settings(), source, data_interval_start, data_interval_end)

    record_run(feed.expand(source=SOURCES), sample_hot_store=True)


feed_events()
