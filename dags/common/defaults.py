"""Default task arguments and the schedules from config.json, shared by every DAG file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

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


def schedule_of(dag_id: str) -> str | None:
    """The DAG's cron expression or preset from ``config.json`` (``schedules``)."""
    value = getattr(settings().schedules, dag_id)
    return None if value == "asset" else value
