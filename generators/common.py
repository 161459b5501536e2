"""What every generator returns, and calendar helpers over epoch-millisecond arrays."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from generators.anomalies import Episode
from generators.streams import entity_uniform, stream_key

DATA = Path(__file__).resolve().parent / "data"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass
class Batch:
    """Events of one source for one interval, plus the labels of the anomalies injected in it.

    ``keys`` holds each event's Kafka key (the entity), aligned with ``events``.
    """

    source: str
    events: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)

    @property
    def labels(self) -> list[dict[str, Any]]:
        return [episode.to_label() for episode in self.episodes]


def hour_of_day(
    timestamps_ms: npt.NDArray[np.int64], lon: npt.ArrayLike = 0.0
) -> npt.NDArray[np.float64]:
    """Local solar hour in [0, 24): UTC shifted by longitude, good enough for load curves."""
    utc_hours = (timestamps_ms % DAY_MS) / HOUR_MS
    return (utc_hours + np.asarray(lon, dtype=np.float64) / 15.0) % 24.0


def day_of_week(timestamps_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0 = Monday … 6 = Sunday (1970-01-01 was a Thursday)."""
    return ((timestamps_ms // DAY_MS) + 3) % 7


def day_of_year(timestamps_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    return ((timestamps_ms / DAY_MS) % 365.2425).astype(np.float64)


@cache
def read_table(name: str) -> tuple[dict[str, str], ...]:
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


def capitals_for(source: str, ids: list[str], seed: int) -> list[dict[str, str]]:
    """A real capital (bundled table) for each entity, drawn once from its id."""
    capitals = read_table("capitals.csv")
    draws = entity_uniform(seed, stream_key(source, "place"), ids)
    return [capitals[int(draw * len(capitals))] for draw in draws]
