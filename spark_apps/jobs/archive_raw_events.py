"""archive_raw_events: one hour of every event topic, as Kafka holds it, into Parquet.

Each source's records that arrived in the hour (by Kafka's record time) are written as they
are: the raw bytes with their topic, partition, offset and arrival time, and the event time
read from them for filtering. They go to ``<history>/raw/source=<source>/arrived=<hour>/``,
and the hour's directory is replaced whole, so a retried run rewrites it (nothing twice,
nothing lost). Run hourly, well within the topics' retention. A backtest over history reads
them back (``read_archive``) and parses them as the stream does (``parse_events``): malformed
and late records included, so history goes through the same code as live data.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lambdawatch.core.events import SCHEMAS
from lambdawatch.core.settings import Settings, load_settings
from spark_apps.jobs.common import print_summary
from spark_apps.session import build_session

ARCHIVED_SOURCES = ("ip", "server", "cdn", "weather", "metric")
HOUR = timedelta(hours=1)


class NothingArchivedError(LookupError):
    """No archive for a source yet: said in one line."""


def hour_directory(settings: Settings, source: str, hour: datetime) -> Path:
    stamp = hour.astimezone(UTC).strftime("%Y-%m-%dT%H")
    return settings.history_path / "raw" / f"source={source}" / f"arrived={stamp}"


def archived_records(records: DataFrame) -> DataFrame:
    """Kafka records → the archive's rows: the record as it came, and its event time (null
    when the record does not say one)."""
    event_time = F.from_json(F.col("value").cast("string"), "timestamp timestamp")["timestamp"]
    return records.select(
        "value",
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("arrived_at"),
        event_time.alias("event_time"),
    )


def archive_hour(spark: SparkSession, settings: Settings, hour: datetime) -> dict[str, int]:
    """Every source's records that arrived in ``[hour, hour + 1 h)``; rows per source."""
    start_ms = int(hour.timestamp() * 1000)
    end_ms = int((hour + HOUR).timestamp() * 1000)
    written = {}
    for source in ARCHIVED_SOURCES:
        records = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
            .option("subscribe", settings.topic(SCHEMAS[source].topic_role).name)
            .option("startingTimestamp", str(start_ms))
            .option("endingTimestamp", str(end_ms))
            .option("startingOffsetsByTimestampStrategy", "latest")
            .load()
        )
        path = hour_directory(settings, source, hour)
        archived_records(records).write.mode("overwrite").parquet(str(path))
        written[source] = spark.read.parquet(str(path)).count()
    return written


def read_archive(
    spark: SparkSession, settings: Settings, source: str, start: datetime, end: datetime
) -> DataFrame:
    """Archived records of ``source`` whose event time is in ``[start, end)``, as Kafka
    records (``value, topic, partition, offset``) for ``parse_events``."""
    root = settings.history_path / "raw" / f"source={source}"
    if not any(root.glob("arrived=*")):
        raise NothingArchivedError(f"no {source} events archived under {root}: archive_raw_events "
                              "has not run yet")  # fmt: skip
    stored = spark.read.parquet(str(root))
    lo, hi = F.lit(start).cast("timestamp"), F.lit(end).cast("timestamp")
    return stored.where((F.col("event_time") >= lo) & (F.col("event_time") < hi)).select(
        "value", "topic", "partition", "offset"
    )


def archived_hours(start: datetime, end: datetime) -> list[datetime]:
    """The hours of arrival that ``[start, end)`` touches, each archived whole.

    A scheduled run covers one hour; a manual one ("archive now") covers the hour before and
    the current hour up to now, which the next scheduled run replaces whole: a directory only
    ever holds its own hour's records, so nothing is archived twice.
    """
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="start", type=_instant, required=True,
                        help="ISO-8601: archive the hours of arrival from this one")  # fmt: skip
    parser.add_argument("--to", dest="end", type=_instant, required=True,
                        help="ISO-8601, exclusive")  # fmt: skip
    args = parser.parse_args(argv)
    hours = archived_hours(args.start, args.end)
    settings = load_settings()
    spark = build_session("lambdawatch-archive_raw_events", settings, with_kafka=True)
    try:
        rows = {hour.isoformat(): archive_hour(spark, settings, hour) for hour in hours}
        print_summary({"hours": rows})
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
