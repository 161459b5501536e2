"""A sink that fails on a record sets that record aside and writes the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pyspark.sql import DataFrame, SparkSession

from lambdawatch.core.pipeline_health import SinkError
from spark_apps.sink_guard import (
    SetAside,
    SinkGuard,
    error_summary,
    is_record_error,
    isolate_failures,
    retry_delays,
)


class JvmError(Exception):
    """Stands for a Py4J error, whose text is the JVM's stack trace."""


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.errors.NumericValueOutOfRange("value out of range"), True),
        (psycopg.errors.UniqueViolation("duplicate key"), True),
        (
            JvmError(
                "An error occurred while calling o1.save.\n"
                "org.apache.spark.SparkException: Job aborted.\n"
                "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message "
                "is 1442403 bytes when serialized which is larger than 1048576"
            ),
            True,
        ),
        (psycopg.OperationalError("connection refused"), False),  # down, not the data
        (JvmError("org.apache.kafka.common.errors.TimeoutException: expired"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_errors_about_the_data_are_record_errors(error: Exception, expected: bool) -> None:
    assert is_record_error(error) is expected


def test_an_error_summary_names_the_kafka_cause_not_the_jvm_preamble() -> None:
    error = JvmError(
        "An error occurred while calling o1.save.\n"
        "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: too large\n"
        "\tat org.apache.kafka..."
    )
    assert error_summary(error) == (
        "JvmError: Caused by: org.apache.kafka.common.errors.RecordTooLargeException: too large"
    )


@pytest.mark.parametrize(
    ("count", "bad"),
    [
        (0, set()),
        (1, set()),
        (1, {0}),
        (8, {3}),
        (100, {0, 99}),
        (37, {5, 6, 7, 30}),
        (5, set(range(5))),
    ],
)
def test_bisection_finds_exactly_the_failing_rows(count: int, bad: set[int]) -> None:
    written: list[int] = []
    calls = 0

    def attempt(start: int, stop: int) -> None:
        nonlocal calls
        calls += 1
        rows = range(start, stop)
        if bad & set(rows):
            raise psycopg.errors.NumericValueOutOfRange("no")
        written.extend(rows)

    failed = isolate_failures(count, attempt, is_record_error)
    assert [index for index, _error in failed] == sorted(bad)
    assert sorted(written) == [i for i in range(count) if i not in bad]
    if len(bad) == 1:  # one bad row among n: about 2 log2(n) + 1 runs, not n
        assert calls <= 2 * count.bit_length() + 1


def test_bisection_lets_other_errors_through() -> None:
    def attempt(start: int, stop: int) -> None:
        raise psycopg.OperationalError("server closed the connection")

    with pytest.raises(psycopg.OperationalError):
        isolate_failures(4, attempt, is_record_error)


def _guarded_sink(
    spark: SparkSession, tmp_path: Path, dead_letter: Any
) -> tuple[Any, list[int], list[SinkError]]:
    """A sink that writes ``id`` values and refuses negative ones, as PostgreSQL would refuse a
    value out of its column's range."""
    written: list[int] = []
    errors: list[SinkError] = []

    def sink(frame: DataFrame, _batch_id: int) -> None:
        ids = [row["id"] for row in frame.collect()]
        if any(i < 0 for i in ids):
            raise psycopg.errors.NumericValueOutOfRange(f"value out of range: {min(ids)}")
        written.extend(ids)

    guard = SinkGuard(spark, tmp_path / "quarantine", dead_letter, errors.append)
    return guard.wrap("q", sink), written, errors


def test_a_bad_row_is_dead_lettered_and_the_rest_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    letters: list[tuple[str, int, SetAside]] = []
    sink, written, errors = _guarded_sink(
        spark, tmp_path, lambda q, b, rows: letters.append((q, b, rows))
    )
    frame = spark.createDataFrame([(i, f"r{i}") for i in [1, 2, -3, 4, 5]], "id int, name string")
    sink(frame, 7)
    assert sorted(set(written)) == [1, 2, 4, 5]
    assert len(letters) == 1
    query, batch_id, rows = letters[0]
    assert (query, batch_id) == ("q", 7)
    assert [row for row, _reason in rows] == [{"id": -3, "name": "r-3"}]
    assert rows[0][1] == "unwritable: NumericValueOutOfRange: value out of range: -3"
    assert [(e.query, e.batch_id, e.records, e.disposition) for e in errors] == [
        ("q", 7, 1, "dead_letters")
    ]
    assert not (tmp_path / "quarantine").exists()


def test_rows_the_dead_letters_refuse_are_quarantined(spark: SparkSession, tmp_path: Path) -> None:
    def refuse(_query: str, _batch: int, _rows: SetAside) -> None:
        raise RuntimeError("dead-letter topic unavailable")

    sink, written, errors = _guarded_sink(spark, tmp_path, refuse)
    sink(spark.createDataFrame([(-1, "a"), (2, "b"), (-5, "c")], "id int, name string"), 3)
    assert set(written) == {2}
    lines = (tmp_path / "quarantine" / "q.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["query"], e["batch_id"], e["row"]["id"]) for e in entries] == [
        ("q", 3, -1),
        ("q", 3, -5),
    ]
    assert all(e["reason"].startswith("unwritable: NumericValueOutOfRange") for e in entries)
    assert [(e.records, e.disposition) for e in errors] == [(2, "quarantine")]


def test_an_outage_is_waited_out_then_fails_the_batch(spark: SparkSession, tmp_path: Path) -> None:
    """A database that is down is not the data's fault: the sink is re-run with a doubling
    delay for ``retry_for_s``, then the batch fails whole (its query is restarted alone)."""

    def sink(_frame: DataFrame, _batch_id: int) -> None:
        raise psycopg.OperationalError("connection refused")

    slept: list[float] = []
    guard = SinkGuard(spark, tmp_path, lambda *_args: None, sleep=slept.append)
    with pytest.raises(psycopg.OperationalError):
        guard.wrap("q", sink)(spark.createDataFrame([(1,)], "id int"), 0)
    assert slept == [1, 2, 4, 8, *[15] * 7]  # the 120 s allowed
    assert list(retry_delays(1, 15, 120)) == slept


def test_a_database_back_within_the_retries_loses_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    outcomes = [psycopg.OperationalError("the database system is starting up")] * 2
    written: list[int] = []
    letters: list[Any] = []

    def sink(frame: DataFrame, _batch_id: int) -> None:
        if outcomes:
            raise outcomes.pop()
        written.extend(row["id"] for row in frame.collect())

    slept: list[float] = []
    guard = SinkGuard(spark, tmp_path, lambda *args: letters.append(args), sleep=slept.append)
    guard.wrap("q", sink)(spark.createDataFrame([(1,), (2,)], "id int"), 4)
    assert written == [1, 2]
    assert slept == [1, 2]
    assert letters == []


def test_a_bug_fails_the_batch_at_once(spark: SparkSession, tmp_path: Path) -> None:
    def sink(_frame: DataFrame, _batch_id: int) -> None:
        raise KeyError("column")

    slept: list[float] = []
    guard = SinkGuard(spark, tmp_path, lambda *_args: None, sleep=slept.append)
    with pytest.raises(KeyError):
        guard.wrap("q", sink)(spark.createDataFrame([(1,)], "id int"), 0)
    assert slept == []
