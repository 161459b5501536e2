"""Counter-based randomness: every number is a hash of (seed, stream, entity, tick).

A generator built on this is a pure function of (seed, time interval) *and* independent of
how the time is cut into intervals: the events of 10:00-10:05 are the same whether generated
alone, inside 09:00-11:00, or again by a retried Airflow task. Vectorised with numpy, so
generation is never the ingestion bottleneck.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

U64 = np.uint64
MASK = (1 << 64) - 1


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        return z ^ (z >> U64(31))


def stream_key(*parts: object) -> int:
    """A 64-bit key for a named stream (e.g. ``("ip", "noise", "bytesin")``)."""
    text = "|".join(map(str, parts)).encode()
    return (zlib.crc32(text) << 32 | zlib.adler32(text)) & MASK


def entity_keys(entities: list[str]) -> npt.NDArray[np.uint64]:
    """Each entity's key (read-only: shared between calls, since a live feed asks for the same
    fleet's keys many times a second)."""
    return _entity_keys(tuple(entities))


@lru_cache(maxsize=64)
def _entity_keys(entities: tuple[str, ...]) -> npt.NDArray[np.uint64]:
    keys = np.array([stream_key(entity) for entity in entities], dtype=np.uint64)
    keys.setflags(write=False)
    return keys


def hash_u64(
    seed: int, stream: int, entity: npt.ArrayLike, tick: npt.ArrayLike
) -> npt.NDArray[np.uint64]:
    """Well-mixed 64-bit values for broadcast (entity, tick) arrays."""
    base = _splitmix64(np.asarray([(seed ^ stream) & MASK], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.asarray(entity, dtype=np.uint64) ^ base)
        return _splitmix64(mixed + np.asarray(tick, dtype=np.int64).astype(np.uint64))


def uniform(
    seed: int, stream: int, entity: npt.ArrayLike, tick: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Uniform [0, 1) per (entity, tick)."""
    return (hash_u64(seed, stream, entity, tick) >> U64(11)).astype(np.float64) / float(1 << 53)


def normal(
    seed: int, stream: int, entity: npt.ArrayLike, tick: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Standard normal per (entity, tick), by Box-Muller on two independent uniforms."""
    u1 = uniform(seed, stream, entity, tick)
    u2 = uniform(seed, stream ^ 0x5DEECE66D, entity, tick)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def entity_uniform(seed: int, stream: int, entities: list[str]) -> npt.NDArray[np.float64]:
    """One fixed uniform per entity (its profile: base level, type, location)."""
    return uniform(seed, stream, entity_keys(entities), np.zeros(len(entities), dtype=np.int64))


def ticks(start_ms: int, end_ms: int, step_ms: int) -> npt.NDArray[np.int64]:
    """Grid times in [start, end) aligned to multiples of ``step_ms`` since the epoch."""
    first = -(-start_ms // step_ms) * step_ms
    return np.arange(first, end_ms, step_ms, dtype=np.int64)


def iso_strings(timestamps_ms: npt.NDArray[np.int64]) -> list[str]:
    """Vectorised ISO-8601 UTC strings with milliseconds and ``Z``."""
    as_dt = timestamps_ms.astype("datetime64[ms]")
    return [text + "Z" for text in np.datetime_as_string(as_dt, unit="ms")]


class SampleGrid(NamedTuple):
    """Entity-major sample layout shared by every generator: one block of ``len(times)``
    sorted grid times per entity (``episode_slices`` relies on it to find episodes by
    binary search)."""

    rows: npt.NDArray[np.int64]  # entity index of each sample
    ts: npt.NDArray[np.int64]  # epoch milliseconds of each sample
    keys: npt.NDArray[np.uint64]  # each sample's entity key, for counter-based draws
    tick: npt.NDArray[np.int64]  # each sample's grid index since the epoch


def sample_grid(entities: list[str], times: npt.NDArray[np.int64], interval_ms: int) -> SampleGrid:
    rows = np.repeat(np.arange(len(entities)), len(times))
    ts = np.tile(times, len(entities))
    return SampleGrid(rows, ts, entity_keys(entities)[rows], ts // interval_ms)
