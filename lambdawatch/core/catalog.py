"""Names and coordinates shared without importing PySpark (health checks, spark-submit)."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from lambdawatch.core.events import Source
from lambdawatch.core.tables import TABLES

# Where a batch job writes its JSON summary too: its submitter names the file (a launcher that
# cannot read the job's stdout, such as Airflow's Spark provider, reads it there).
SUMMARY_FILE = "LAMBDAWATCH_SUMMARY_FILE"

SPEED_LAYER_QUERIES = (
    "dead_letters",
    "server_status",
    "cpu_anomalies",
    "cpu_windows_store",
    "ip_averages",
    "ip_windows",
    "weather_derived",
    "cdn_clusters",
    "forecast_deviations",
    "silence",
    "metric_scores",
    "incidents",
)

# detector → the sources whose events it reads (the first is the default ``--source``); here,
# not beside the backtest, so replay's hint names it without importing the detectors
DETECTOR_SOURCES: dict[str, tuple[Source, ...]] = {
    "metric_scores": ("metric",),
    "cpu_anomalies": ("server",),
    "forecast_deviations": ("ip",),
    "cdn_clusters": ("cdn",),
    "silence": ("server", "ip", "cdn"),
}

# Queries that read another query's output topic: with an available-now trigger they start
# once the others have finished, so they see everything.
DOWNSTREAM_QUERIES = frozenset({"cpu_windows_store", "incidents"})

# Bump a query's version whenever its stateful operators change (aggregation keys, windows,
# de-duplication): Spark refuses to restore state into a different plan, so a new version
# gets a new checkpoint directory and reprocesses from the earliest retained offsets, which
# the idempotent sinks absorb.
QUERY_VERSIONS = {
    "dead_letters": 1,
    "server_status": 2,
    "cpu_anomalies": 5,
    "cpu_windows_store": 2,
    "ip_averages": 1,
    "ip_windows": 2,
    "weather_derived": 1,
    "cdn_clusters": 1,
    "forecast_deviations": 1,
    "silence": 1,
    "metric_scores": 2,
    "incidents": 1,
}

# JVM packages resolved from Maven Central (jvm/spark/ivysettings.xml) into the ivy cache.
JDBC_DRIVER_PACKAGE = "org.postgresql:postgresql:42.7.8"
IVY_SETTINGS = Path(__file__).resolve().parents[2] / "jvm" / "spark" / "ivysettings.xml"


def ivy_cache() -> Path:
    base = os.environ.get("LAMBDAWATCH_CACHE_DIR") or Path.home() / ".cache" / "lambdawatch"
    return Path(base) / "ivy"


def kafka_connector(pyspark_version: str | None = None) -> str:
    """The official connector at the PySpark version that will run it (they must match).

    Defaults to the PySpark installed here; the Airflow environment, which submits jobs but has
    no PySpark, passes the version of the interpreter that runs them.
    """
    version = pyspark_version or importlib.metadata.version("pyspark")
    return f"org.apache.spark:spark-sql-kafka-0-10_2.13:{version}"


# One row per server and window: the cpu-status topic's records and rt_cpu_windows' columns.
CPU_WINDOW_COLUMNS = TABLES["rt_cpu_windows"].names
