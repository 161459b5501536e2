"""Submitting the Spark batch jobs: ``spark-submit`` to the configured master.

The command is built by a pure function (tested), so a DAG task, the CLI and a test submit the
same thing. PySpark's own ``spark-submit`` (beside ``SPARK_PYTHON``) is used, and the driver
and executors run that interpreter, so local mode and a ``spark://`` master with the same image
behave alike.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdawatch.core.catalog import IVY_SETTINGS, JDBC_DRIVER_PACKAGE, ivy_cache, kafka_connector
from lambdawatch.core.settings import Settings

BATCH_JOBS = (
    "baseline_stats", "forecast_ip_traffic", "retrain_cdn_kmeans", "archive_raw_events",
    "backtest",
)  # fmt: skip
# Kafka: KMeans trains on the CDN topic's retained events, the archive copies every topic;
# JDBC: the jobs that read PostgreSQL through Spark.
NEEDS_KAFKA = {"retrain_cdn_kmeans", "archive_raw_events"}
# The application each job submits: spark_apps/jobs/<job>.py, except the backtest, which is
# the pipeline's own (it records its runs, as the CLI's do).
JOB_SCRIPTS = {"backtest": Path("lambdawatch") / "pipelines" / "backtest_job.py"}


def spark_submit_command(
    settings: Settings, job: str, pyspark_version: str, args: Sequence[str] = ()
) -> list[str]:
    if job not in BATCH_JOBS:
        raise ValueError(f"unknown batch job {job!r}; expected one of {BATCH_JOBS}")
    spark_submit = settings.spark_python_path.parent / "spark-submit"
    return [
        str(spark_submit),
        "--master",
        settings.spark_master_url,
        "--name",
        f"lambdawatch-{job}",
        "--conf",
        f"spark.pyspark.python={settings.spark_python_path}",
        "--conf",
        f"spark.pyspark.driver.python={settings.spark_python_path}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.driver.host={settings.driver_host}",
        "--packages",
        ",".join([JDBC_DRIVER_PACKAGE] + [kafka_connector(pyspark_version)] * (job in NEEDS_KAFKA)),
        "--conf",
        f"spark.jars.ivy={ivy_cache()}",
        "--conf",
        f"spark.jars.ivySettings={IVY_SETTINGS}",
        str(settings.root / JOB_SCRIPTS.get(job, Path("spark_apps") / "jobs" / f"{job}.py")),
        *args,
    ]


def backtest_arguments(params: dict[str, Any], run_id: str) -> list[str]:
    """The ``backtest`` DAG's form → the job's command line (empty fields left out)."""
    arguments = ["--detector", str(params["detector"]), "--from", str(params["from"]),
                 "--to", str(params["to"]), "--run-id", run_id]  # fmt: skip
    for name in ("source", "normal_mean", "normal_stddev"):
        if params.get(name) is not None:
            arguments += [f"--{name.replace('_', '-')}", str(params[name])]
    return arguments


def run_spark_job(settings: Settings, job: str, args: Sequence[str] = ()) -> dict[str, Any]:
    """Run a batch job to completion; raise with the log tail if it fails. Returns its output.

    The last stdout line of every job is a JSON summary, which the DAG task returns as XCom.
    """
    command = spark_submit_command(settings, job, installed_pyspark(settings), args)
    environment = {
        **os.environ,
        "PYSPARK_PYTHON": str(settings.spark_python_path),
        "LAMBDAWATCH_ROOT": str(settings.root),
        "LAMBDAWATCH_VAR_DIR": str(settings.var_path),
    }
    if settings.spark_is_local:  # a cluster's executors must reach the driver from outside
        environment["SPARK_LOCAL_IP"] = settings.bind_host
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-30:])
        raise RuntimeError(f"spark job {job} failed (exit {result.returncode}):\n{tail}")
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"spark job {job} printed no summary")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def installed_pyspark(settings: Settings) -> str:
    """The PySpark version of ``SPARK_PYTHON`` (may be another environment than this one)."""
    result = subprocess.run(
        [
            str(settings.spark_python_path),
            "-c",
            "import importlib.metadata as m; print(m.version('pyspark'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"no PySpark in SPARK_PYTHON={settings.spark_python_path}: {result.stderr.strip()}"
        )
    return result.stdout.strip()
