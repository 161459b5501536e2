"""forecast_ip_traffic: per-IP Prophet forecasts, run whenever new history is archived."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

from common.assets import IP_FORECASTS, IP_HISTORY
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.tasks import record_run

# "asset" in config.json: run when archive_hot_store updates ip_history; else a cron/preset.
SCHEDULE = schedule_of("forecast_ip_traffic") or [IP_HISTORY]


@dag(
    dag_id="forecast_ip_traffic",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "ml", "forecast"],
    doc_md="""
Spark batch job: one Prophet model per IP × feature, fitted in parallel with
`groupBy(...).applyInPandas(...)` on the full PostgreSQL history, 95 % intervals, the
seasonality the data shows. Writes the next horizon's forecasts and per-series fit quality
(MAPE, coverage, MASE against a seasonal-naive baseline on a hold-out tail); a series where the
seasonal-naive model does better is forecast with it, and says so. Series too short are skipped
and reported.
""",
)
def forecast_ip_traffic() -> None:
    @task(outlets=[IP_FORECASTS])
    def forecast(
        data_interval_end: datetime | None = None, logical_date: datetime | None = None
    ) -> dict[str, Any]:
        from common.defaults import settings
        from common.spark import submit_with_provider
        from lambdawatch.pipelines.spark_jobs import run_spark_job

        # Asset-triggered runs have no data interval; they forecast from their trigger time.
        end = data_interval_end or logical_date or datetime.now(UTC)
        return run_spark_job(
            settings(),
            "forecast_ip_traffic",
            ["--interval-end", end.isoformat()],
            launch=submit_with_provider,
        )

    record_run(forecast())


forecast_ip_traffic()
