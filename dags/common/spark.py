"""Batch jobs submitted the Airflow way: ``SparkSubmitOperator`` on the ``spark_default``
connection, so retargeting the cluster is an edit in Airflow's Connections (``lambdawatch up``
creates the connection from settings once, and leaves an edited one alone)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from lambdawatch.pipelines.spark_jobs import SparkSubmission

CONNECTION = "spark_default"

JobArguments = Callable[["Context"], Sequence[str]]


class BatchJobOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` for one of ``lambdawatch.pipelines.spark_jobs``' jobs.

    The application, conf, packages and environment are the one ``SparkSubmission`` the shared
    builder makes on the worker at run time (settings live there, not in the DAG file); the
    master and deploy mode come from the connection. Returns the job's JSON summary as XCom.
    """

    def __init__(
        self, *, job: str, job_arguments: JobArguments | None = None, **kwargs: Any
    ) -> None:
        super().__init__(conn_id=CONNECTION, name=job, **kwargs)
        self.job = job
        self.job_arguments = job_arguments

    def execute(self, context: Context) -> dict[str, Any]:
        from common.defaults import settings
        from lambdawatch.pipelines.spark_jobs import run_spark_job

        arguments = list(self.job_arguments(context)) if self.job_arguments else []
        return run_spark_job(
            settings(), self.job, arguments, launch=lambda s: self._submit(s, context)
        )

    def _submit(self, submission: SparkSubmission, context: Context) -> None:
        """Hand ``submission`` to the provider's own ``execute`` (it raises if the job fails)."""
        self.application = submission.application
        self.conf = dict(submission.conf)
        self.packages = submission.packages
        self.name = submission.name
        self.application_args = list(submission.application_args)
        self.env_vars = dict(submission.env)
        self._hook = None  # a retry in the same process builds its hook from these again
        super().execute(context)


def interval_end_arguments(context: Context) -> list[str]:
    """``--interval-end`` of the run's data interval (inferred for runs that have none)."""
    _, end = _interval(context)
    return ["--interval-end", end.isoformat()]


def interval_arguments(context: Context) -> list[str]:
    """``--from`` and ``--to`` of the run's data interval (inferred for runs that have none)."""
    start, end = _interval(context)
    return ["--from", start.isoformat(), "--to", end.isoformat()]


def backtest_form_arguments(context: Context) -> list[str]:
    """The backtest job's arguments from the DAG's form, under the run's id."""
    from lambdawatch.pipelines.spark_jobs import backtest_arguments

    return backtest_arguments(dict(context["params"] or {}), context["dag_run"].run_id)


def _interval(context: Context) -> tuple[Any, Any]:
    from common.defaults import data_interval

    return data_interval(
        context["dag_run"].dag_id,
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context["dag_run"],
    )
