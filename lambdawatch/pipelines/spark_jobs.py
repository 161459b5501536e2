"""Submitting the Spark batch jobs: one ``SparkSubmission`` per job, built by a pure function
(tested), launched by the CLI as PySpark's own ``spark-submit`` to SPARK_MASTER, and by Airflow
through the Spark provider's hook on its ``spark_default`` connection (rendered from these
settings by ``spark_connection``). The driver and executors run ``SPARK_PYTHON``, so local mode
and a ``spark://`` master with the same image behave alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdawatch.core.catalog import (
    IVY_SETTINGS,
    JDBC_DRIVER_PACKAGE,
    SUMMARY_FILE,
    ivy_cache,
    kafka_connector,
)
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


@dataclass(frozen=True)
class SparkSubmission:
    """One batch job's spark-submit, whoever launches it: the CLI renders it as a command line
    for SPARK_MASTER; Airflow hands it to the Spark provider's hook, whose ``spark_default``
    connection says which master (retargeted in Airflow's Connections)."""

    job: str
    application: str
    name: str
    conf: dict[str, str]
    packages: str
    application_args: tuple[str, ...]
    env: dict[str, str]

    def command(self, spark_submit: str, master: str) -> list[str]:
        conf = [part for key, value in self.conf.items() for part in ("--conf", f"{key}={value}")]
        return [
            spark_submit, "--master", master, "--name", self.name, *conf,
            "--packages", self.packages, self.application, *self.application_args,
        ]  # fmt: skip


def spark_submission(
    settings: Settings,
    job: str,
    pyspark_version: str,
    args: Sequence[str] = (),
    summary_file: Path | None = None,
) -> SparkSubmission:
    if job not in BATCH_JOBS:
        raise ValueError(f"unknown batch job {job!r}; expected one of {BATCH_JOBS}")
    python = str(settings.spark_python_path)
    env = {
        "PYSPARK_PYTHON": python,
        "LAMBDAWATCH_ROOT": str(settings.root),
        "LAMBDAWATCH_VAR_DIR": str(settings.var_path),
    }
    if settings.spark_is_local:  # a cluster's executors must reach the driver from outside
        env["SPARK_LOCAL_IP"] = settings.bind_host
    if summary_file is not None:
        env[SUMMARY_FILE] = str(summary_file)
    packages = [JDBC_DRIVER_PACKAGE] + [kafka_connector(pyspark_version)] * (job in NEEDS_KAFKA)
    return SparkSubmission(
        job=job,
        application=str(
            settings.root / JOB_SCRIPTS.get(job, Path("spark_apps") / "jobs" / f"{job}.py")
        ),
        name=f"lambdawatch-{job}",
        conf={
            "spark.pyspark.python": python,
            "spark.pyspark.driver.python": python,
            "spark.ui.enabled": "false",
            "spark.driver.host": settings.driver_host,
            "spark.jars.ivy": str(ivy_cache()),
            "spark.jars.ivySettings": str(IVY_SETTINGS),
        },
        packages=",".join(packages),
        application_args=tuple(args),
        env=env,
    )


def local_command(settings: Settings, submission: SparkSubmission) -> list[str]:
    """``submission`` as the CLI runs it: PySpark's own spark-submit, to SPARK_MASTER."""
    spark_submit = str(settings.spark_python_path.parent / "spark-submit")
    return submission.command(spark_submit, settings.spark_master_url)


def spark_submit_command(
    settings: Settings, job: str, pyspark_version: str, args: Sequence[str] = ()
) -> list[str]:
    return local_command(settings, spark_submission(settings, job, pyspark_version, args))


def spark_connection(settings: Settings) -> dict[str, Any]:
    """Airflow's ``spark_default`` connection as the settings describe the master (the
    provider's fields: host, port, extra with deploy mode and which spark-submit to run)."""
    master = settings.spark_master_url
    host, _, port = master.rpartition(":") if master.startswith("spark://") else (master, "", "")
    return {
        "connection_id": "spark_default",
        "conn_type": "spark",
        "host": host,
        "port": int(port) if port else None,
        "extra": json.dumps({"deploy-mode": "client", "spark-binary": "spark-submit"}),
    }


CONNECTION_FIELDS = ("conn_type", "host", "port", "extra")


def connection_action(
    current: dict[str, Any] | None, wanted: dict[str, Any], rendered_before: dict[str, Any] | None
) -> str:
    """What ``up`` does to ``spark_default``: ``create`` it when absent, ``update`` it when it
    still holds what settings rendered before (the master moved with them), ``keep`` it when an
    operator edited it in Airflow's Connections, or ``none`` when it is already right."""

    def same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
        return (
            a is not None and b is not None and all(a.get(k) == b.get(k) for k in CONNECTION_FIELDS)
        )

    if current is None:
        return "create"
    if same(current, wanted):
        return "none"
    return "update" if same(current, rendered_before) else "keep"


Launcher = Callable[[SparkSubmission], None]


def launch_locally(settings: Settings) -> Launcher:
    """Run a submission with PySpark's own spark-submit to SPARK_MASTER (the CLI's way)."""

    def launch(submission: SparkSubmission) -> None:
        result = subprocess.run(
            local_command(settings, submission),
            env={**os.environ, **submission.env},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-30:])
            raise RuntimeError(
                f"spark job {submission.job} failed (exit {result.returncode}):\n{tail}"
            )

    return launch


def backtest_arguments(params: dict[str, Any], run_id: str) -> list[str]:
    """The ``backtest`` DAG's form → the job's command line (empty fields left out)."""
    arguments = ["--detector", str(params["detector"]), "--from", str(params["from"]),
                 "--to", str(params["to"]), "--run-id", run_id]  # fmt: skip
    for name in ("source", "normal_mean", "normal_stddev"):
        if params.get(name) is not None:
            arguments += [f"--{name.replace('_', '-')}", str(params[name])]
    return arguments


def run_spark_job(
    settings: Settings, job: str, args: Sequence[str] = (), launch: Launcher | None = None
) -> dict[str, Any]:
    """Run a batch job to completion (``launch``: how; default ``launch_locally``); raise if it
    fails. Returns the JSON summary every job writes, which the DAG task returns as XCom."""
    summaries = settings.var_path / "run" / "spark-summaries"
    summaries.mkdir(parents=True, exist_ok=True)
    summary_file = summaries / f"{job}-{uuid.uuid4().hex}.json"
    submission = spark_submission(settings, job, installed_pyspark(settings), args, summary_file)
    (launch or launch_locally(settings))(submission)
    try:
        return json.loads(summary_file.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise RuntimeError(f"spark job {job} wrote no summary") from None
    finally:
        summary_file.unlink(missing_ok=True)


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
