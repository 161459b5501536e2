"""The Spark session for lambdawatch jobs: master from settings, the official Kafka connector.

The connector version follows the installed PySpark (connector and runtime must match), and is
resolved from Maven Central through ``jvm/spark/ivysettings.xml`` into a cache shared by every
job, so only the first session of a machine downloads anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from lambdawatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def kafka_connector() -> str:
    return f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}"


def ivy_cache() -> Path:
    base = os.environ.get("LAMBDAWATCH_CACHE_DIR") or Path.home() / ".cache" / "lambdawatch"
    return Path(base) / "ivy"


def build_session(
    app_name: str,
    settings: Settings | None = None,
    master: str | None = None,
    with_kafka: bool = True,
    shuffle_partitions: int = 4,
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """A session with small-cluster defaults; ``extra`` overrides any of them."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    chosen_master = master or (settings.spark_master if settings else "local[*]")
    builder = (
        SparkSession.builder.master(chosen_master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if with_kafka:
        builder = (
            builder.config("spark.jars.packages", kafka_connector())
            .config("spark.jars.ivy", str(ivy_cache()))
            .config("spark.jars.ivySettings", str(ROOT / "jvm" / "spark" / "ivysettings.xml"))
        )
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
