"""The Spark session for lambdawatch jobs: master from settings, the official Kafka connector.

The connector version follows the installed PySpark (connector and runtime must match), and is
resolved from Maven Central through ``jvm/spark/ivysettings.xml`` into a cache shared by every
job, so only the first session of a machine downloads anything.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from lambdawatch.core.catalog import IVY_SETTINGS, JDBC_DRIVER_PACKAGE, ivy_cache, kafka_connector
from lambdawatch.core.settings import Settings


def build_session(
    app_name: str,
    settings: Settings | None = None,
    master: str | None = None,
    with_kafka: bool = True,
    with_jdbc: bool = False,
    shuffle_partitions: int = 4,
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """A session with small-cluster defaults; ``extra`` overrides any of them."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    chosen_master = master or (settings.spark_master_url if settings else "local[*]")
    builder = (
        SparkSession.builder.master(chosen_master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    packages = [kafka_connector()] * with_kafka + [JDBC_DRIVER_PACKAGE] * with_jdbc
    if packages:
        builder = (
            builder.config("spark.jars.packages", ",".join(packages))
            .config("spark.jars.ivy", str(ivy_cache()))
            .config("spark.jars.ivySettings", str(IVY_SETTINGS))
        )
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
