"""forecast_ip_traffic: per-IP Prophet forecasts, run whenever new history is archived."""

from __future__ import annotations

from airflow.sdk import dag

from common.assets import IP_FORECASTS, IP_HISTORY
from common.defaults import DEFAULT_ARGS, START_DATE, schedule_of
from common.spark import BatchJobOperator, interval_end_arguments
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
    job = BatchJobOperator(
        task_id="forecast",
        job="forecast_ip_traffic",
        job_arguments=interval_end_arguments,
        outlets=[IP_FORECASTS],
    )
    record_run(job.output)


forecast_ip_traffic()
