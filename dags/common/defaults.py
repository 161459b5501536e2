"""Default task arguments and the schedules from config.json, shared by every DAG file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from airflow.sdk import CronDataIntervalTimetable

from lambdawatch.settings import Settings, load_settings

# A fixed past start: with catchup off, a scheduled DAG runs its latest interval only.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "lambdawatch",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


@cache
def settings() -> Settings:
    """The validated settings (config.json + .env + environment), read once per process."""
    return load_settings()


def schedule_of(dag_id: str) -> CronDataIntervalTimetable | None:
    """The DAG's cron expression or preset from ``config.json`` (``schedules``), as a timetable
    with real data intervals; ``None`` for ``"asset"`` (the DAG then schedules on an Asset).

    Airflow 3 turns a plain cron string into a trigger timetable whose interval is empty
    (start == end); our loads are keyed by the interval, so they need the interval timetable.
    """
    value = getattr(settings().schedules, dag_id)
    if value is None or value == "asset":
        return None
    return CronDataIntervalTimetable(value, timezone="UTC")


def data_interval(
    dag_id: str,
    start: datetime | None,
    end: datetime | None,
    dag_run: Any,
) -> tuple[datetime, datetime]:
    """The run's data interval, also for runs that have none.

    Airflow 3 gives no data interval to a run triggered without a logical date (the REST API's
    ``"logical_date": null``, asset-triggered runs); such a run covers the schedule's latest
    complete interval before it was triggered, as a manual run with a logical date would.
    """
    if start is not None and end is not None:
        return start, end
    run_after = dag_run.run_after
    timetable = schedule_of(dag_id)
    if timetable is None:
        return run_after, run_after
    inferred = timetable.infer_manual_data_interval(run_after=run_after)
    return inferred.start, inferred.end
