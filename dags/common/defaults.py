"""Default task arguments and schedules, shared by every DAG file.

Importing this reads no file: schedules come from ``common.schedules``, which ``lambdawatch
prepare`` renders from config.json; settings are loaded only when a task runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from airflow.sdk import CronDataIntervalTimetable

from common.schedules import SCHEDULES
from lambdawatch.core.settings import Settings, load_settings

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
    value = SCHEDULES[dag_id]
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
    ``"logical_date": null``, asset-triggered runs). Such a run covers one schedule period up
    to the moment it was triggered: "archive / retrain / compute baselines now" includes what
    arrived a minute ago. Feeding an unaligned interval is safe too: generated events are keyed
    by their own timestamps, so overlapping intervals send identical events.
    """
    if start is not None and end is not None:
        return start, end
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable as CronIntervals

    run_after = dag_run.run_after
    expression = SCHEDULES[dag_id]
    if expression is None or expression == "asset":
        return run_after, run_after
    # one schedule period, from the scheduler's own timetable (the SDK's class only declares)
    inferred = CronIntervals(expression, timezone="UTC").infer_manual_data_interval(
        run_after=pendulum.instance(run_after)
    )
    return run_after - (inferred.end - inferred.start), run_after
