"""Seeded hostile records for the parser: random bytes, deep nesting, huge numbers, wrong types,
control characters, cut-off JSON, mutated and oversized events. Shared by the unit fuzz test (on
batch DataFrames) and bench/faults (100,000 of them through the live speed layer); ``event``
makes the valid event each kind starts from, so a live run can date it now."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

Event = Callable[..., dict[str, object]]
LIMIT = 4096  # the unit test's dead-letter raw limit; ``oversized`` straddles it


def random_bytes(rng: random.Random, _event: Event) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 20_000]))


def deep_nesting(rng: random.Random, _event: Event) -> bytes:
    depth = rng.choice([64, 1000, 10_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return (opener * depth + "1" + closer * depth).encode()


def huge_number(rng: random.Random, event: Event) -> bytes:
    number = rng.choice(["1e400", "-1e400", "9" * 400, "1" + "0" * 40, "NaN", "Infinity", "0x10"])
    return (
        json.dumps(event(cpu_usage=0)).replace('"cpu_usage": 0', f'"cpu_usage": {number}').encode()
    )


def wrong_type(rng: random.Random, event: Event) -> bytes:
    field = rng.choice(list(event()))
    value = rng.choice([[1, 2], {"x": 1}, True, None, "text", 3.5, -1, ""])
    return json.dumps(event(**{field: value})).encode()


def control_characters(rng: random.Random, event: Event) -> bytes:
    text = "".join(chr(rng.randrange(0, 32)) for _ in range(rng.randrange(1, 20)))
    whole = json.dumps(event(city=text, datacenter=text))
    return whole.encode() if rng.random() < 0.5 else whole.replace("\\u00", "\x00").encode()


def cut_off(rng: random.Random, event: Event) -> bytes:
    whole = json.dumps(event()).encode()
    return whole[: rng.randrange(0, len(whole))]


def mutated(rng: random.Random, event: Event) -> bytes:
    fields = event(event_id=f"fuzz-{rng.randrange(10**9)}")
    for _ in range(rng.randrange(1, 4)):
        field = rng.choice(list(fields))
        if rng.random() < 0.5:
            fields.pop(field, None)
        else:
            fields[f"extra_{rng.randrange(100)}"] = rng.random()
    return json.dumps(fields).encode()


def oversized(rng: random.Random, event: Event) -> bytes:
    """Past the unit test's raw limit, and (70 KB) past the shipped 64 KB one."""
    return json.dumps(event(city="x" * rng.choice([LIMIT, 50_000, 70_000]))).encode()


KINDS: list[Callable[[random.Random, Event], bytes]] = [
    random_bytes, deep_nesting, huge_number, wrong_type, control_characters, cut_off, mutated,
    oversized,
]  # fmt: skip


def fuzzed_record(rng: random.Random, event: Event) -> bytes:
    """One hostile record of a kind drawn from ``rng``."""
    return rng.choice(KINDS)(rng, event)
