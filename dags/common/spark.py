"""Batch jobs submitted the Airflow way: through the Spark provider's hook on the
``spark_default`` connection, so retargeting the cluster is an edit in Airflow's Connections
(``lambdawatch up`` creates the connection from settings once, and leaves an edited one alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdawatch.pipelines.spark_jobs import SparkSubmission

CONNECTION = "spark_default"


def submit_with_provider(submission: SparkSubmission) -> None:
    """Launch ``submission`` with ``SparkSubmitHook``; it raises when the job fails."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    hook = SparkSubmitHook(
        conn_id=CONNECTION,
        conf=submission.conf,
        packages=submission.packages,
        name=submission.name,
        application_args=list(submission.application_args),
        env_vars=submission.env,
    )
    hook.submit(submission.application)
