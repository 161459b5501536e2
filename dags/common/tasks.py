"""Tasks every DAG ends with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import task


@task
def record_run(
    details: Any = None,
    sample_hot_store: bool = False,
    dag_run: Any = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
) -> None:
    """Mark this run successful in ``batch_runs`` (the Pipeline health dashboard's source).

    Runs only when every upstream task succeeded, and upserts, so a cleared run rewrites its row.
    """
    from common.defaults import settings
    from lambdawatch.core.pipeline_health import finish_batch_run

    # a mapped upstream (feed_events) hands over a lazy sequence of its tasks' results
    summary = details if isinstance(details, dict) else {"results": list(details or [])}
    finish_batch_run(
        settings(),
        dag_run.dag_id,
        dag_run.run_id,
        data_interval_start,
        data_interval_end,
        summary,
        sample_hot_store=sample_hot_store,
    )
