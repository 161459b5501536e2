"""Seeded fuzzing of ``parse_events`` on batch DataFrames: whatever bytes arrive (random bytes,
deep nesting, huge numbers, wrong types, control characters, cut-off JSON, mutated valid
events), every record is either one valid event or one bounded dead letter with a reason, its
original size and hash. The 100,000-record run through the live layer belongs in bench/."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
from collections.abc import Callable

import pytest
from pyspark.sql import SparkSession

from lambdawatch.core.events import SERVER_SCHEMA
from lambdawatch.core.settings import DEAD_LETTER_ENVELOPE_BYTES
from spark_apps.transforms.parsing import dead_letters_to_kafka, parse_events
from tests.unit.spark_apps.frames import kafka_rows, server_event

RECORDS = 600
LIMIT = 4096  # dead letters keep at most this much of a record
FIELDS = list(server_event())


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 20_000]))


def deep_nesting(rng: random.Random) -> bytes:
    depth = rng.choice([64, 1000, 10_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return (opener * depth + "1" + closer * depth).encode()


def huge_number(rng: random.Random) -> bytes:
    number = rng.choice(["1e400", "-1e400", "9" * 400, "1" + "0" * 40, "NaN", "Infinity", "0x10"])
    return (
        json.dumps(server_event(cpu_usage=0))
        .replace('"cpu_usage": 0', f'"cpu_usage": {number}')
        .encode()
    )


def wrong_type(rng: random.Random) -> bytes:
    field = rng.choice(FIELDS)
    value = rng.choice([[1, 2], {"x": 1}, True, None, "text", 3.5, -1, ""])
    return json.dumps(server_event(**{field: value})).encode()


def control_characters(rng: random.Random) -> bytes:
    text = "".join(chr(rng.randrange(0, 32)) for _ in range(rng.randrange(1, 20)))
    event = json.dumps(server_event(city=text, datacenter=text))
    return event.encode() if rng.random() < 0.5 else event.replace("\\u00", "\x00").encode()


def cut_off(rng: random.Random) -> bytes:
    whole = json.dumps(server_event()).encode()
    return whole[: rng.randrange(0, len(whole))]


def mutated(rng: random.Random) -> bytes:
    event = server_event(event_id=f"fuzz-{rng.randrange(10**9)}")
    for _ in range(rng.randrange(1, 4)):
        field = rng.choice(FIELDS)
        if rng.random() < 0.5:
            event.pop(field, None)
        else:
            event[f"extra_{rng.randrange(100)}"] = rng.random()
    return json.dumps(event).encode()


def oversized(rng: random.Random) -> bytes:
    return json.dumps(server_event(city="x" * rng.choice([LIMIT, 50_000]))).encode()


KINDS: list[Callable[[random.Random], bytes]] = [
    random_bytes, deep_nesting, huge_number, wrong_type, control_characters, cut_off, mutated,
    oversized,
]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_fuzzed_record_is_one_event_or_one_bounded_dead_letter(
    spark: SparkSession, seed: int
) -> None:
    rng = random.Random(seed)
    records = [rng.choice(KINDS)(rng) for _ in range(RECORDS)]
    events, dead = parse_events(
        kafka_rows(spark, records), SERVER_SCHEMA, "fuzz", max_event_bytes=LIMIT * 4
    )
    kept = events.collect()
    letters = [json.loads(r["value"]) for r in dead_letters_to_kafka(dead, LIMIT).collect()]
    assert len(kept) + len(letters) == RECORDS  # nothing lost, nothing doubled
    offsets = sorted(letter["offset"] for letter in letters)
    assert len(set(offsets)) == len(offsets)
    for letter in letters:
        raw = records[letter["offset"]]
        assert letter["reason"]
        assert letter["raw_bytes"] == len(raw)
        assert letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()
        assert base64.b64decode(letter["raw_base64"]) == raw[:LIMIT]
        assert len(json.dumps(letter)) <= 4 * (LIMIT + 2) // 3 + DEAD_LETTER_ENVELOPE_BYTES
    doubles = [name for name, kind in SERVER_SCHEMA.fields if kind == "double"]
    for event in kept:  # what passes is a whole event of the schema, every number finite
        for field in SERVER_SCHEMA.required:
            assert event[field] is not None, field
        for field in doubles:
            assert event[field] is None or math.isfinite(event[field]), (field, event[field])
