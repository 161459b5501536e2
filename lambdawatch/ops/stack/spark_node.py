"""A Spark standalone master and its workers (the cluster profile), from the PySpark
distribution's own classes (``bin/spark-class``): what ``spark://`` means in compose, on one
machine.

Each worker offers two cores and 2 GiB, oversubscribing a small machine on purpose: the always-on
speed layer takes at most ``speed_layer_cores`` (settings) of them, so batch jobs still find
cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pyspark

from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.supervisor import ProgramSpec

MASTER = "spark-master"
WORKERS = ("spark-worker-1", "spark-worker-2")
WORKER_CORES = 2
WORKER_MEMORY = "2g"
DAEMON_MEMORY = "256m"  # the master's and workers' own JVMs; executors get the worker memory


def spark_home() -> Path:
    return Path(pyspark.__file__).resolve().parent


def _environment(settings: Settings) -> dict[str, str]:
    """What executors inherit: the core interpreter, and the project importable (the queries'
    Python functions run in them)."""
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": settings.bind_host,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(settings.root),
        "LAMBDAWATCH_VAR_DIR": str(settings.var_path),
    }


def master_program(settings: Settings) -> ProgramSpec:
    return ProgramSpec(
        name=MASTER,
        command=[
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            settings.bind_host,
            "--port",
            str(settings.spark_master_port),
            "--webui-port",
            str(settings.spark_master_ui_port),
        ],
        directory=settings.var_path,
        environment=_environment(settings),
        stop_signal="TERM",
        stop_wait_seconds=30,
        start_seconds=3,
    )


def worker_ui_port(settings: Settings, name: str) -> int:
    return (settings.spark_worker_ui_port_1, settings.spark_worker_ui_port_2)[WORKERS.index(name)]


def worker_program(settings: Settings, name: str) -> ProgramSpec:
    work = settings.var_path / "spark" / name
    work.mkdir(parents=True, exist_ok=True)
    return ProgramSpec(
        name=name,
        command=[
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            settings.spark_master_url,
            "--host",
            settings.bind_host,
            "--cores",
            str(WORKER_CORES),
            "--memory",
            WORKER_MEMORY,
            "--webui-port",
            str(worker_ui_port(settings, name)),
            "--work-dir",
            str(work),
        ],
        directory=work,
        environment=_environment(settings),
        stop_signal="TERM",
        stop_wait_seconds=30,
        start_seconds=3,
    )


def master_state(settings: Settings) -> dict:
    """The master's own JSON view: status, workers and applications."""
    url = f"http://{settings.bind_host}:{settings.spark_master_ui_port}/json/"
    response = httpx.get(url, timeout=3)
    response.raise_for_status()
    try:
        return dict(response.json())
    except ValueError:  # while it starts, the UI can serve its page before its JSON view
        raise httpx.DecodingError(
            f"{url} answered with a page, not the master's JSON state", request=response.request
        ) from None


def check_master(settings: Settings) -> str | None:
    try:
        state = master_state(settings)
    except httpx.HTTPError as error:
        return f"spark master: {error}"
    return None if state.get("status") == "ALIVE" else f"spark master: {state.get('status')}"


def check_worker(settings: Settings, name: str) -> str | None:
    """The worker has registered with the master and is alive there."""
    try:
        state = master_state(settings)
    except httpx.HTTPError as error:
        return f"{name}: master unreachable: {error}"
    port = f":{worker_ui_port(settings, name)}"
    states = [
        worker.get("state")
        for worker in state.get("workers", [])
        if str(worker.get("webuiaddress", "")).endswith(port)
    ]  # a restarted worker registers anew; the master keeps its dead predecessor listed
    if "ALIVE" in states:
        return None
    return f"{name}: {states[-1]} at the master" if states else f"{name}: not registered yet"
