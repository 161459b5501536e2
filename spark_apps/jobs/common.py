"""What every batch job shares: arguments, JDBC reads of PostgreSQL, the JSON summary line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from lambdawatch.secrets import Secrets
from lambdawatch.settings import Settings


def parse_interval_end(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    """Every job is keyed by its data interval's end (never ``now()``): re-runs are identical."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--interval-end",
        type=lambda text: datetime.fromisoformat(text).astimezone(UTC),
        default=datetime.now(UTC),
        help="ISO-8601 end of the data interval this run is for (default: now)",
    )
    return parser.parse_args(argv)


def jdbc_url(settings: Settings) -> str:
    return f"jdbc:postgresql://{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"


def time_between(column: str, start: datetime, end: datetime) -> str:
    """SQL for ``start <= column < end`` (aware datetimes, rendered as ISO literals)."""
    return (
        f"{column} >= '{start.isoformat()}'::timestamptz "
        f"AND {column} < '{end.isoformat()}'::timestamptz"
    )


def read_query(
    spark: SparkSession,
    settings: Settings,
    secrets: Secrets,
    query: str,
    partition_column: str | None = None,
    partitions: int = 1,
) -> DataFrame:
    """A PostgreSQL query as a DataFrame through the JDBC driver.

    With ``partition_column`` (an integer in [0, partitions)), executors read slices in parallel.
    """
    reader = (
        spark.read.format("jdbc")
        .option("url", jdbc_url(settings))
        .option("driver", "org.postgresql.Driver")
        .option("user", settings.postgres_user)
        .option("password", secrets.postgres_password.get_secret_value())
        .option("fetchsize", "10000")
    )
    if partition_column and partitions > 1:
        return (
            reader.option("dbtable", f"({query}) AS source")
            .option("partitionColumn", partition_column)
            .option("lowerBound", "0")
            .option("upperBound", str(partitions))
            .option("numPartitions", str(partitions))
            .load()
        )
    return reader.option("query", query).load()


def print_summary(summary: dict[str, Any]) -> None:
    """The last stdout line: a JSON summary the submitting task returns (XCom)."""
    sys.stdout.write(json.dumps(summary, default=str) + "\n")
    sys.stdout.flush()
