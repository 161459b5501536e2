"""backtest: a detector over archived history, on demand (a form in the Airflow UI)."""

from __future__ import annotations

from airflow.sdk import Param, dag

from common.defaults import DEFAULT_ARGS, START_DATE
from common.spark import BatchJobOperator, backtest_form_arguments
from common.tasks import record_run

DETECTORS = ["cpu_anomalies", "metric_scores", "forecast_deviations", "cdn_clusters", "silence"]


@dag(
    dag_id="backtest",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "batch", "backtest"],
    params={
        "detector": Param("cpu_anomalies", type="string", enum=DETECTORS),
        "from": Param("2026-01-01T00:00:00Z", type="string", description="ISO-8601, inclusive"),
        "to": Param("2026-01-01T01:00:00Z", type="string", description="ISO-8601, exclusive"),
        "source": Param(
            None,
            type=["null", "string"],
            enum=[None, "server", "ip", "cdn"],
            description="silence only: which source's reports",
        ),
        "normal_mean": Param(None, type=["null", "number"], description="cpu_anomalies only"),
        "normal_stddev": Param(None, type=["null", "number"], description="cpu_anomalies only"),
    },
    doc_md="""
Trigger with the form: a Spark job runs the detector over the archived events of `[from, to)`
(`archive_raw_events`), parsed and judged by the speed layer's own functions, and records the
run in `backtest_runs` and its WARN and ERROR findings in `backtest_anomalies` under this DAG
run's id (a retried task replaces them). `lambdawatch backtest --from … --to …` does the same
from a shell.
""",
)
def backtest() -> None:
    job = BatchJobOperator(
        task_id="run",
        job="backtest",
        job_arguments=backtest_form_arguments,
    )
    record_run(job.output)


backtest()
