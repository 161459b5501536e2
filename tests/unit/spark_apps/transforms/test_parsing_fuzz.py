"""Seeded fuzzing of ``parse_events`` on batch DataFrames: whatever bytes arrive (random bytes,
deep nesting, huge numbers, wrong types, control characters, cut-off JSON, mutated valid
events), every record is either one valid event or one bounded dead letter with a reason, its
original size and hash (the kinds: ``tests.fuzz_records``). bench/faults sends 100,000 of them
through the live speed layer."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random

import pytest
from pyspark.sql import SparkSession

from lambdawatch.core.events import SERVER_SCHEMA
from lambdawatch.core.settings import DEAD_LETTER_ENVELOPE_BYTES
from spark_apps.transforms.parsing import dead_letters_to_kafka, parse_events
from tests.fuzz_records import LIMIT, fuzzed_record
from tests.unit.spark_apps.frames import kafka_rows, server_event

RECORDS = 600


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_fuzzed_record_is_one_event_or_one_bounded_dead_letter(
    spark: SparkSession, seed: int
) -> None:
    rng = random.Random(seed)
    records = [fuzzed_record(rng, server_event) for _ in range(RECORDS)]
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
