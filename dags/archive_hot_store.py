"""archive_hot_store: hot-store samples past the hot window → PostgreSQL history, then trim."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from common.assets import IP_HISTORY
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run


@dag(
    dag_id="archive_hot_store",
    schedule=schedule_of("archive_hot_store"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "archive"],
    doc_md="""
Copies every IP sample older than the hot window (`hot_store.hot_window_hours`, counted back
from the data interval's end) into `ip_history`: COPY into staging, `ON CONFLICT DO NOTHING`,
counts verified, and only then is Redis trimmed. With PostgreSQL down the task fails and is
retried; Redis is untouched until the rows are committed. Updates the `ip_history` asset.
""",
)
def archive_hot_store() -> None:
    @task(outlets=[IP_HISTORY])
    def archive(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from dataclasses import asdict

        from common.defaults import data_interval, settings
        from lambdawatch.pipelines.archive import archive_hot_store

        _, end = data_interval("archive_hot_store", data_interval_start, data_interval_end, dag_run)
        return asdict(archive_hot_store(settings(), end))

    record_run(archive(), sample_hot_store=True)


archive_hot_store()
