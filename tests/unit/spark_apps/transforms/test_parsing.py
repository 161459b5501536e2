"""Kafka records → events and bounded dead letters (``transforms.parsing``)."""

from __future__ import annotations

import base64
import hashlib
import json

import orjson
import pytest
from pyspark.sql import SparkSession

from generators.registry import SOURCES, make_generator
from lambdawatch.core.events import SCHEMAS, SERVER_SCHEMA, event_id
from lambdawatch.core.settings import DEAD_LETTER_ENVELOPE_BYTES, load_settings
from spark_apps.detectors.cpu import (
    cpu_window_stats,
)
from spark_apps.transforms.parsing import (
    bound_kafka_records,
    dead_letters_to_kafka,
    parse_events,
)
from spark_apps.transforms.rollups import (
    server_status_counts,
)
from tests.unit.spark_apps.frames import FUTURE, kafka_records, kafka_rows, server_event


@pytest.mark.parametrize("source", SOURCES)
def test_generated_events_parse_without_dead_letters(spark: SparkSession, source: str) -> None:
    """The shared schema module: what the producers send is exactly what Spark parses."""
    batch = make_generator(source, load_settings()).generate(
        1_767_225_600_000, 1_767_225_600_000 + 300_000
    )
    raw = kafka_rows(spark, [orjson.dumps(event) for event in batch.events[:200]])
    events, dead = parse_events(raw, SCHEMAS[source], "test")
    assert dead.count() == 0
    parsed = events.orderBy("event_id").collect()
    assert len(parsed) == min(200, len(batch.events))
    first = next(e for e in batch.events[:200] if e["event_id"] == parsed[0]["event_id"])
    for name, value in first.items():
        if name != "timestamp":
            assert parsed[0][name] == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{not json", "malformed: not a JSON object"),
        ("[1, 2]", "malformed: not a JSON object"),
        ("", "malformed: not a JSON object"),
        (
            json.dumps({k: v for k, v in server_event().items() if k != "server_id"}),
            "missing field: server_id",
        ),
        (json.dumps(server_event(cpu_usage="high")), "invalid value for field: cpu_usage"),
        (json.dumps(server_event(timestamp="yesterday")), "invalid value for field: timestamp"),
        (json.dumps(server_event(timestamp=FUTURE)), "timestamp more than 300s in the future"),
        (
            json.dumps(server_event(cpu_usage=7)).replace('"cpu_usage": 7', '"cpu_usage": 1e400'),
            "invalid value for field: cpu_usage (not a finite number)",
        ),
        (
            json.dumps(server_event(mem_usage=7)).replace('"mem_usage": 7', '"mem_usage": NaN'),
            "invalid value for field: mem_usage (not a finite number)",
        ),
        # an optional field may be absent or null, but not of the wrong type
        (
            json.dumps(server_event(severity_level="high")),
            "invalid value for field: severity_level",
        ),
        (
            json.dumps({"server_id": "s", "timestamp": "2026-01-01T00:00:00Z"}),
            "missing field: cpu_usage",
        ),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(
    spark: SparkSession, value: str, reason: str
) -> None:
    raw = kafka_rows(spark, [json.dumps(server_event()), value])
    events, dead = parse_events(raw, SERVER_SCHEMA, "server_status")
    assert events.count() == 1
    letters = dead.collect()
    assert [(row["reason"], row["query"], row["offset"]) for row in letters] == [
        (reason, "server_status", 1)
    ]
    assert letters[0]["raw"] == value.encode()


def test_an_event_with_only_its_required_fields_parses_with_a_derived_id(
    spark: SparkSession,
) -> None:
    minimal = {"server_id": "srv-9", "cpu_usage": 12.5, "timestamp": "2026-01-01T00:00:00.250Z"}
    with_nulls = {**minimal, "server_id": "srv-8", "datacenter": None, "event_id": None}
    raw = kafka_rows(spark, [json.dumps(minimal), json.dumps(with_nulls)])
    events, dead = parse_events(raw, SERVER_SCHEMA, "cpu_anomalies")
    assert dead.count() == 0
    rows = {row["server_id"]: row for row in events.collect()}
    millis = 1_767_225_600_250
    assert rows["srv-9"]["event_id"] == event_id("server", ("srv-9",), millis)
    assert rows["srv-8"]["event_id"] == event_id("server", ("srv-8",), millis)
    assert rows["srv-9"]["datacenter"] is None
    assert rows["srv-9"]["cpu_usage"] == 12.5


def test_a_metric_event_id_is_derived_from_entity_and_metric(spark: SparkSession) -> None:
    sample = {"entity": "web", "metric": "load", "value": 1.0, "timestamp": "2026-01-01T00:00:01Z"}
    events, _dead = parse_events(kafka_rows(spark, [json.dumps(sample)]), SCHEMAS["metric"], "q")
    assert events.collect()[0]["event_id"] == event_id("metric", ("web", "load"), 1_767_225_601_000)
    assert event_id("metric", ("web", "load"), 1_767_225_601_000) == "metric:web:load:1767225601000"


def test_dead_letters_keep_the_raw_bytes(spark: SparkSession) -> None:
    raw_bytes = b"\xff\xfe not utf-8"
    _events, dead = parse_events(kafka_rows(spark, [raw_bytes]), SERVER_SCHEMA, "q")
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
    raw = kafka_rows(spark, [json.dumps(server_event()), raw_bytes])
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
    event = server_event(city="x" * 5000)
    events, dead = parse_events(
        kafka_rows(spark, [json.dumps(event)]), SERVER_SCHEMA, "q", max_event_bytes=2048
    )
    assert events.count() == 0
    assert [row["reason"] for row in dead.collect()] == [
        f"oversized: {len(json.dumps(event))} bytes"
    ]


def test_records_over_their_topics_limit_become_dead_letters(spark: SparkSession) -> None:
    """Each record is held to its own topic's limit (key plus value); an oversized one goes
    to the dead-letter topic, bounded, instead of failing the write."""
    big = b"v" * 3000
    records = kafka_records(
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


def test_resent_events_are_counted_once(spark: SparkSession) -> None:
    rows = [server_event(event_id=f"e{i}", timestamp="2026-01-01T00:00:01Z") for i in range(3)]
    resent = [json.dumps(r) for r in rows] + [json.dumps(rows[0]), json.dumps(rows[1])]
    events, _ = parse_events(kafka_rows(spark, resent), SERVER_SCHEMA, "q")
    counts = server_status_counts(events, "1 minute", "1 minute").collect()
    assert [row["messages"] for row in counts] == [3]
    stats = cpu_window_stats(events, "500 milliseconds", "2 seconds").collect()
    assert [row["samples"] for row in stats] == [3]


def test_each_record_is_parsed_once(spark: SparkSession) -> None:
    """Structural guard: the optimized plan must not re-parse the JSON per checked field
    (the key list, computed only for bad records, may appear once per field)."""
    events, dead = parse_events(kafka_rows(spark, ["{}"]), SERVER_SCHEMA, "q")
    for frame in (events, dead):
        plan = frame._jdf.queryExecution().optimizedPlan().toString()
        assert plan.count("from_json(") == 1, plan
