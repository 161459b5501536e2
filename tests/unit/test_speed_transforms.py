"""Speed-layer transformations on tiny literal DataFrames (Spark's "Testing PySpark" style)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from generators.registry import SOURCES, make_generator
from lambdawatch.events import SCHEMAS, SERVER_SCHEMA, WEATHER_SCHEMA
from lambdawatch.settings import DEAD_LETTER_ENVELOPE_BYTES, load_settings
from spark_apps.catalog import CPU_WINDOW_COLUMNS
from spark_apps.transforms.anomaly import ANOMALY_COLUMNS
from spark_apps.transforms.clock import wall_clock
from spark_apps.transforms.cpu import (
    ANOMALY_PREFIX,
    classify_cpu,
    cpu_records_to_kafka,
    cpu_store_rows,
    cpu_window_stats,
    latest_cpu_store_writes,
    parse_cpu_status,
)
from spark_apps.transforms.parsing import (
    bound_kafka_records,
    dead_letters_to_kafka,
    parse_events,
)
from spark_apps.transforms.rollups import (
    ip_running_averages,
    ip_window_aggregates,
    server_status_counts,
    weather_derived,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATS_SCHEMA = (
    "server_id string, window_start timestamp, window_end timestamp, "
    "mean_cpu double, std_cpu double, samples long, latest_event_at timestamp"
)
BASELINE_SCHEMA = "metric string, entity string, mean double, stddev double"


def _kafka_rows(spark: SparkSession, values: list[str | bytes]):
    rows = [
        Row(
            key=None,
            value=value if isinstance(value, bytes) else value.encode(),
            topic="t",
            partition=0,
            offset=i,
        )
        for i, value in enumerate(values)
    ]
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long"
    )


def _server_event(**overrides: object) -> dict[str, object]:
    event = {
        "event_id": "e1",
        "server_id": "srv-1",
        "server_type": "Web",
        "datacenter": "fr-paris-dc1",
        "country_code": "FR",
        "country_name": "France",
        "city": "Paris",
        "status_color": "Green",
        "severity_level": 1,
        "estimated_resolution_time": 0,
        "cpu_usage": 40.5,
        "mem_usage": 50.0,
        "timestamp": "2026-01-01T00:00:00.250Z",
    }
    event.update(overrides)
    return event


@pytest.mark.parametrize("source", SOURCES)
def test_generated_events_parse_without_dead_letters(spark: SparkSession, source: str) -> None:
    """The shared schema module: what the producers send is exactly what Spark parses."""
    batch = make_generator(source, load_settings()).generate(
        1_767_225_600_000, 1_767_225_600_000 + 300_000
    )
    raw = _kafka_rows(spark, [orjson.dumps(event) for event in batch.events[:200]])
    events, dead = parse_events(raw, SCHEMAS[source], "test")
    assert dead.count() == 0
    parsed = events.orderBy("event_id").collect()
    assert len(parsed) == min(200, len(batch.events))
    first = next(e for e in batch.events[:200] if e["event_id"] == parsed[0]["event_id"])
    for name, value in first.items():
        if name != "timestamp":
            assert parsed[0][name] == value


future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{not json", "malformed: not a JSON object"),
        ("[1, 2]", "malformed: not a JSON object"),
        ("", "malformed: not a JSON object"),
        (
            json.dumps({k: v for k, v in _server_event().items() if k != "server_id"}),
            "missing field: server_id",
        ),
        (json.dumps(_server_event(cpu_usage="high")), "invalid value for field: cpu_usage"),
        (json.dumps(_server_event(timestamp="yesterday")), "invalid value for field: timestamp"),
        (json.dumps(_server_event(timestamp=future)), "timestamp more than 300s in the future"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(
    spark: SparkSession, value: str, reason: str
) -> None:
    raw = _kafka_rows(spark, [json.dumps(_server_event()), value])
    events, dead = parse_events(raw, SERVER_SCHEMA, "server_status")
    assert events.count() == 1
    letters = dead.collect()
    assert [(row["reason"], row["query"], row["offset"]) for row in letters] == [
        (reason, "server_status", 1)
    ]
    assert letters[0]["raw"] == value.encode()


def test_dead_letters_keep_the_raw_bytes(spark: SparkSession) -> None:
    raw_bytes = b"\xff\xfe not utf-8"
    _events, dead = parse_events(_kafka_rows(spark, [raw_bytes]), SERVER_SCHEMA, "q")
    record = dead_letters_to_kafka(dead).collect()[0]
    body = json.loads(record["value"])
    assert base64.b64decode(body["raw_base64"], validate=True) == raw_bytes
    assert body["raw_bytes"] == len(raw_bytes)
    assert body["raw_sha256"] == hashlib.sha256(raw_bytes).hexdigest()
    assert body["raw_truncated"] is False
    assert (body["source_topic"], body["partition"], body["offset"]) == ("t", 0, 0)
    assert "raw_text" not in body  # the bytes travel once
    assert record["key"] == b"q"
    assert body["reason"] == "malformed: not a JSON object"


@pytest.mark.parametrize(
    ("size", "limit", "reason"),
    [
        (1000, 1024, "malformed: not a JSON object"),  # under the limit: parsed, kept whole
        (1024, 1024, "malformed: not a JSON object"),  # at the limit: still parsed
        (1025, 1024, "oversized: 1025 bytes"),
        (600_000, 65_536, "oversized: 600000 bytes"),
        (5_000_000, 65_536, "oversized: 5000000 bytes"),
    ],
)
def test_dead_letters_are_bounded_whatever_arrives(
    spark: SparkSession, size: int, limit: int, reason: str
) -> None:
    """One record the size of the issue's (600 KB, 5 MB): its dead letter keeps the first
    ``limit`` bytes once, with the whole record's size and hash."""
    raw_bytes = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    raw = _kafka_rows(spark, [json.dumps(_server_event()), raw_bytes])
    events, dead = parse_events(raw, SERVER_SCHEMA, "server_status", max_event_bytes=limit)
    assert events.count() == 1
    records = dead_letters_to_kafka(dead, max_raw_bytes=limit).collect()
    assert len(records) == 1
    body = json.loads(records[0]["value"])
    assert body["reason"] == reason
    kept = base64.b64decode(body["raw_base64"], validate=True)
    assert kept == raw_bytes[:limit]
    assert body["raw_truncated"] is (size > limit)
    assert body["raw_bytes"] == size
    assert body["raw_sha256"] == hashlib.sha256(raw_bytes).hexdigest()
    assert (body["source_topic"], body["partition"], body["offset"]) == ("t", 0, 1)
    assert len(records[0]["value"]) <= 4 * (limit + 2) // 3 + DEAD_LETTER_ENVELOPE_BYTES


def test_an_oversized_valid_event_is_dead_not_parsed(spark: SparkSession) -> None:
    event = _server_event(city="x" * 5000)
    events, dead = parse_events(
        _kafka_rows(spark, [json.dumps(event)]), SERVER_SCHEMA, "q", max_event_bytes=2048
    )
    assert events.count() == 0
    assert [row["reason"] for row in dead.collect()] == [
        f"oversized: {len(json.dumps(event))} bytes"
    ]


def _records(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int")


def test_records_over_their_topics_limit_become_dead_letters(spark: SparkSession) -> None:
    """Each record is held to its own topic's limit (key plus value); an oversized one goes
    to the dead-letter topic, bounded, instead of failing the write."""
    big = b"v" * 3000
    records = _records(
        spark,
        [
            (b"k1", b"small", "status", 3),
            (b"k2", big, "status", 1),  # over status' 2000
            (b"k3", big, "anomalies", 2),  # within anomalies' 4000
            (b"k4", None, "status", None),  # a tombstone is 2 bytes
        ],
    )
    bounded = bound_kafka_records(
        records, {"status": 2000, "anomalies": 4000}, "dead", "cpu_anomalies", max_raw_bytes=1024
    )
    rows = {row["key"]: row for row in bounded.collect()}
    assert rows[b"k1"].asDict() == {
        "key": b"k1",
        "value": b"small",
        "topic": "status",
        "partition": 3,
    }
    assert rows[b"k3"]["value"] == big
    assert rows[b"k3"]["topic"] == "anomalies"
    assert rows[b"k4"]["topic"] == "status"
    letter = rows[b"cpu_anomalies"]
    assert (letter["topic"], letter["partition"]) == ("dead", None)
    body = json.loads(letter["value"])
    assert body["reason"] == f"oversized: {len(big) + 2} bytes"
    assert body["source_topic"] == "status"
    assert (body["partition"], body["offset"]) == (None, None)  # present, null: one shape
    assert base64.b64decode(body["raw_base64"]) == big[:1024]
    assert body["raw_bytes"] == len(big)
    assert body["raw_sha256"] == hashlib.sha256(big).hexdigest()


def test_records_for_one_topic_gain_their_topic_column(spark: SparkSession) -> None:
    records = spark.createDataFrame([(b"k", b"v" * 50)], "key binary, value binary")
    bounded = bound_kafka_records(records, {"out": 40}, "dead", "q", topic="out").collect()
    assert [row["topic"] for row in bounded] == ["dead"]
    bounded = bound_kafka_records(records, {"out": 60}, "dead", "q", topic="out").collect()
    assert [(row["topic"], row["value"]) for row in bounded] == [("out", b"v" * 50)]


def _cpu_events(spark: SparkSession, samples: list[tuple[str, float, float]]):
    rows = [
        (f"{server}:{offset}", server, T0 + timedelta(seconds=offset), cpu)
        for server, offset, cpu in samples
    ]
    return spark.createDataFrame(
        rows, "event_id string, server_id string, timestamp timestamp, cpu_usage double"
    )


def test_cpu_windows_are_tumbling_and_half_open(spark: SparkSession) -> None:
    events = _cpu_events(
        spark,
        [("a", 0.0, 10.0), ("a", 0.25, 30.0), ("a", 0.5, 50.0), ("a", 0.75, 70.0), ("b", 0.1, 5.0)],
    )
    stats = cpu_window_stats(events, "500 milliseconds", "2 seconds").select(
        "server_id", "window_start", "mean_cpu", "samples", "latest_event_at"
    )
    at = {offset: T0 + timedelta(seconds=offset) for offset in (0.1, 0.25, 0.75)}
    expected = spark.createDataFrame(
        [
            ("a", T0, 20.0, 2, at[0.25]),
            ("a", T0 + timedelta(seconds=0.5), 60.0, 2, at[0.75]),
            ("b", T0, 5.0, 1, at[0.1]),
        ],
        "server_id string, window_start timestamp, mean_cpu double, samples long, "
        "latest_event_at timestamp",
    )
    assertDataFrameEqual(stats, expected)
    spread = {
        (row["server_id"], row["mean_cpu"]): row["std_cpu"]
        for row in cpu_window_stats(events, "500 milliseconds", "2 seconds").collect()
    }
    assert spread[("a", 20.0)] == pytest.approx(200**0.5)  # sample σ of 10 and 30
    assert spread[("b", 5.0)] is None  # one sample has no sample σ, as stddev_samp


@pytest.mark.parametrize(
    ("mean_cpu", "status"),
    [
        (50.0, "SAFE"),
        (60.0, "SAFE"),
        (60.5, "WARN"),
        (39.0, "WARN"),
        (70.5, "ERROR"),
        (29.0, "ERROR"),
    ],
)
def test_cpu_status_is_two_sided_against_the_baseline(
    spark: SparkSession, mean_cpu: float, status: str
) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0 + timedelta(seconds=0.5), mean_cpu, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    baselines = spark.createDataFrame(
        [("cpu_usage", "a", 50.0, 10.0), ("mem_usage", "a", 0.0, 1.0)],
        "metric string, entity string, mean double, stddev double",
    )
    row = classify_cpu(stats, baselines, 45.0, 12.0, 1.0, 2.0).collect()[0]
    assert (row["status"], row["expected_mean"], row["baseline_source"]) == (
        status,
        50.0,
        "baselines",
    )


def _anomalies(classified: DataFrame) -> DataFrame:
    """The anomaly records the store writes for these verdicts."""
    rows = cpu_store_rows(classified.withColumn("offset", F.lit(0)))
    return rows.where(F.col("status") != "SAFE").select(
        *[F.col(ANOMALY_PREFIX + c).alias(c) for c in ANOMALY_COLUMNS]
    )


def test_cpu_falls_back_to_env_normal_until_a_baseline_exists(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("new-server", T0, T0, 70.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    classified = classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0)
    row = classified.collect()[0]
    assert (row["expected_mean"], row["expected_std"], row["baseline_source"], row["status"]) == (
        45.0,
        12.0,
        "fallback",
        "ERROR",
    )
    anomalies = _anomalies(classified)
    assert tuple(anomalies.columns) == ANOMALY_COLUMNS
    found = anomalies.collect()[0]
    assert (found["detector"], found["entity"], found["severity"], found["value"]) == (
        "cpu_anomalies",
        "new-server",
        "ERROR",
        70.0,
    )
    assert found["score"] == pytest.approx(25 / 12)


def test_safe_windows_are_not_anomalies(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0, 45.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    assert _anomalies(classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0)).count() == 0


def test_server_status_counts_per_window_and_status(spark: SparkSession) -> None:
    rows = [
        _server_event(
            event_id="s1",
            timestamp="2026-01-01T00:00:01Z",
            status_color="Red",
            severity_level=3,
            estimated_resolution_time=90,
        ),
        _server_event(
            event_id="s2",
            timestamp="2026-01-01T00:00:02Z",
            status_color="Red",
            severity_level=3,
            estimated_resolution_time=30,
        ),
        _server_event(event_id="s3", timestamp="2026-01-01T00:00:03Z"),
        _server_event(event_id="s4", timestamp="2026-01-01T00:01:01Z"),
    ]
    events, _ = parse_events(_kafka_rows(spark, [json.dumps(r) for r in rows]), SERVER_SCHEMA, "q")
    counts = server_status_counts(events, "1 minute", "1 minute").select(
        "window_start", "status_color", "messages", "total_resolution_time"
    )
    expected = spark.createDataFrame(
        [(T0, "Red", 2, 120), (T0, "Green", 1, 0), (T0 + timedelta(minutes=1), "Green", 1, 0)],
        "window_start timestamp, status_color string, messages long, total_resolution_time long",
    )
    assertDataFrameEqual(counts, expected)


def test_ip_running_averages(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("1.1.1.1", T0, 10, 100), ("1.1.1.1", T0, 20, 300), ("2.2.2.2", T0, 5, 5)],
        "src_ip string, timestamp timestamp, unq_dst_ip long, bytesin long",
    )
    averages = ip_running_averages(events, ["unq_dst_ip", "bytesin"]).select(
        "src_ip", "samples", "avg_unq_dst_ip", "avg_bytesin"
    )
    expected = spark.createDataFrame(
        [("1.1.1.1", 2, 15.0, 200.0), ("2.2.2.2", 1, 5.0, 5.0)],
        "src_ip string, samples long, avg_unq_dst_ip double, avg_bytesin double",
    )
    assertDataFrameEqual(averages, expected)


def test_weather_derived_value(spark: SparkSession) -> None:
    event = {
        "event_id": "w",
        "city": "Lyon",
        "lat": 45.7,
        "lon": 4.8,
        "temperature": 3.5,
        "feels_like": -1.25,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    events, _ = parse_events(_kafka_rows(spark, [json.dumps(event)]), WEATHER_SCHEMA, "q")
    row = weather_derived(events).collect()[0]
    assert row["temperature_minus_feels_like"] == pytest.approx(4.75)
    assert row["timestamp"] == T0.replace(tzinfo=None)


def test_anomaly_shape_matches_the_table(spark: SparkSession) -> None:
    stats = spark.createDataFrame(
        [("a", T0, T0, 99.0, 1.0, 2, T0)],
        STATS_SCHEMA,
    )
    empty = spark.createDataFrame([], BASELINE_SCHEMA)
    anomalies = _anomalies(classify_cpu(stats, empty, 45.0, 12.0, 1.0, 2.0))
    assert [f.dataType.simpleString() for f in anomalies.schema.fields] == [
        "string",
        "string",
        "string",
        "timestamp",
        "timestamp",
        "double",
        "double",
        "double",
        "string",
        "string",
        "timestamp",
    ]
    assert anomalies.where(F.col("severity").isin("WARN", "ERROR")).count() == 1


def test_ip_window_aggregates_are_long_per_feature(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("a", "1.1.1.1", T0, 10, 100),
            ("b", "1.1.1.1", T0 + timedelta(minutes=1), 20, 300),
            ("c", "1.1.1.1", T0 + timedelta(minutes=6), 1, 1),
        ],
        "event_id string, src_ip string, timestamp timestamp, unq_dst_ip long, bytesin long",
    )
    windows = ip_window_aggregates(events, ["unq_dst_ip", "bytesin"], "5 minutes", "1 minute")
    expected = spark.createDataFrame(
        [
            (T0, "1.1.1.1", "unq_dst_ip", 2, 30.0, 15.0),
            (T0, "1.1.1.1", "bytesin", 2, 400.0, 200.0),
            (T0 + timedelta(minutes=5), "1.1.1.1", "unq_dst_ip", 1, 1.0, 1.0),
            (T0 + timedelta(minutes=5), "1.1.1.1", "bytesin", 1, 1.0, 1.0),
        ],
        "window_start timestamp, src_ip string, feature string, "
        "samples long, total double, mean double",
    )
    assertDataFrameEqual(windows.drop("window_end"), expected)


def test_resent_events_are_counted_once(spark: SparkSession) -> None:
    rows = [_server_event(event_id=f"e{i}", timestamp="2026-01-01T00:00:01Z") for i in range(3)]
    resent = [json.dumps(r) for r in rows] + [json.dumps(rows[0]), json.dumps(rows[1])]
    events, _ = parse_events(_kafka_rows(spark, resent), SERVER_SCHEMA, "q")
    counts = server_status_counts(events, "1 minute", "1 minute").collect()
    assert [row["messages"] for row in counts] == [3]
    stats = cpu_window_stats(events, "500 milliseconds", "2 seconds").collect()
    assert [row["samples"] for row in stats] == [3]


def test_each_record_is_parsed_once(spark: SparkSession) -> None:
    """Structural guard: the optimized plan must not re-parse the JSON per checked field
    (the key list, computed only for bad records, may appear once per field)."""
    events, dead = parse_events(_kafka_rows(spark, ["{}"]), SERVER_SCHEMA, "q")
    for frame in (events, dead):
        plan = frame._jdf.queryExecution().optimizedPlan().toString()
        assert plan.count("from_json(") == 1, plan


def test_cpu_records_carry_every_status_and_each_anomaly_to_its_topic(
    spark: SparkSession,
) -> None:
    stats = spark.createDataFrame(
        [
            ("quiet", T0, T0 + timedelta(seconds=0.5), 45.0, 1.0, 2, T0),
            ("busy", T0, T0 + timedelta(seconds=0.5), 80.0, 1.0, 2, T0),
        ],
        STATS_SCHEMA,
    )
    classified = classify_cpu(
        stats, spark.createDataFrame([], BASELINE_SCHEMA), 45.0, 12.0, 1.0, 2.0
    )
    records = cpu_records_to_kafka(classified, "status-topic", "anomaly-topic").collect()
    by_topic = sorted((r["topic"], r["key"].decode()) for r in records)
    assert by_topic == [
        ("anomaly-topic", "busy"),
        ("status-topic", "busy"),
        ("status-topic", "quiet"),
    ]
    anomaly = next(json.loads(r["value"]) for r in records if r["topic"] == "anomaly-topic")
    expected = _anomalies(classified).collect()[0].asDict()
    assert set(anomaly) == set(ANOMALY_COLUMNS)
    assert (anomaly["severity"], anomaly["value"], anomaly["model_version"]) == (
        expected["severity"],
        expected["value"],
        "fallback",
    )
    # read back, the status records are the classified windows they were written from, and
    # the busy window's verdict carries the very detected_at of its anomaly record
    statuses = spark.createDataFrame(
        [
            Row(value=r["value"], offset=i)
            for i, r in enumerate(records)
            if r["topic"] == "status-topic"
        ],
        "value binary, offset long",
    )
    read_back = parse_cpu_status(statuses).drop("offset")
    judged = [name for name in read_back.columns if name != "detected_at"]
    assertDataFrameEqual(read_back.select(*judged), classified.select(*judged))
    busy = read_back.where("server_id = 'busy'").collect()[0]
    assert _utc(busy["detected_at"]) == _when(anomaly["detected_at"])


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _utc(collected: datetime) -> datetime:
    """A collected timestamp (naive, in the session's UTC) as an aware datetime."""
    return collected.replace(tzinfo=UTC)


def _iso_ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_record(server: str, start: datetime, status: str, samples: int) -> str:
    return json.dumps(
        {
            "server_id": server,
            "window_start": _iso_ms(start),
            "window_end": _iso_ms(start + timedelta(seconds=0.5)),
            "mean_cpu": 50.0 + samples,
            "std_cpu": None if samples == 1 else float(samples),
            "samples": samples,
            "expected_mean": 45.0,
            "expected_std": 5.0,
            "z": 0.1 if status == "SAFE" else 3.0,
            "status": status,
            "baseline_source": "baselines",
            "latest_event_at": _iso_ms(start + timedelta(seconds=0.25 * (samples - 1))),
            "detected_at": _iso_ms(start + timedelta(seconds=samples)),
        }
    )


def test_a_windows_last_verdict_supersedes_and_withdraws_earlier_ones(
    spark: SparkSession,
) -> None:
    """Update mode re-emits a window as it fills: the store keeps the verdict with the highest
    offset, records the anomalies that still stand, and withdraws those now SAFE."""
    later = T0 + timedelta(seconds=0.5)
    by_offset = {
        3: _status_record("s1", T0, "WARN", 1),
        4: _status_record("s2", T0, "ERROR", 1),
        5: _status_record("s2", T0, "ERROR", 2),
        7: _status_record("s1", T0, "SAFE", 2),
        8: _status_record("s1", later, "SAFE", 1),
        9: _status_record("s2", later, "SAFE", 1),
        11: _status_record("s2", later, "WARN", 2),
    }
    statuses = parse_cpu_status(
        spark.createDataFrame(
            [Row(value=v.encode(), offset=o) for o, v in reversed(by_offset.items())],
            "value binary, offset long",
        )
    )
    writes = latest_cpu_store_writes(cpu_store_rows(statuses).toArrow())
    assert writes.windows.column_names == list(CPU_WINDOW_COLUMNS)
    assert writes.anomalies.column_names == list(ANOMALY_COLUMNS)
    verdicts = sorted(
        (w["server_id"], w["window_start"], w["status"], w["samples"])
        for w in writes.windows.to_pylist()
    )
    assert verdicts == [
        ("s1", T0, "SAFE", 2),
        ("s1", later, "SAFE", 1),
        ("s2", T0, "ERROR", 2),
        ("s2", later, "WARN", 2),
    ]
    # each row is one record's: a one-sample verdict's null σ is not filled from another
    assert sorted(
        (w["server_id"], w["window_start"], w["std_cpu"]) for w in writes.windows.to_pylist()
    ) == [("s1", T0, 2.0), ("s1", later, None), ("s2", T0, 2.0), ("s2", later, 2.0)]
    assert sorted(
        (a["entity"], a["window_start"], a["severity"], a["detected_at"])
        for a in writes.anomalies.to_pylist()
    ) == [
        ("s2", T0, "ERROR", T0 + timedelta(seconds=2)),
        ("s2", later, "WARN", later + timedelta(seconds=2)),
    ]
    assert sorted(tuple(k.values()) for k in writes.withdrawn.to_pylist()) == [
        ("cpu_anomalies", "s1", "cpu_usage", T0),
        ("cpu_anomalies", "s1", "cpu_usage", later),
    ]


def test_wall_clock_is_read_when_rows_are_computed(spark: SparkSession) -> None:
    frame = spark.range(3).select(wall_clock().alias("now"))
    before = datetime.now(UTC)
    first = [_utc(r["now"]) for r in frame.collect()]
    time.sleep(0.05)
    second = [_utc(r["now"]) for r in frame.collect()]
    after = datetime.now(UTC)
    assert all(before - timedelta(milliseconds=1) <= t <= after for t in first + second)
    assert min(second) > max(first)  # evaluated at each run, not fixed when planned
