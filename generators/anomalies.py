"""Labelled anomaly episodes, scheduled with the same counter-based randomness as the events.

Time is cut into fixed slots per entity; each (entity, slot) holds at most one episode, drawn
from a hash, so the schedule is identical however the generation intervals are cut. Labels get
stable ids (``source:entity:kind:slot``) so a re-sent label is dropped by idempotent sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from generators.streams import entity_keys, stream_key, uniform
from lambdawatch.core.events import iso_utc


@dataclass(frozen=True)
class AnomalyKind:
    name: str
    weight: float
    min_ms: int
    max_ms: int


@dataclass(frozen=True)
class Episode:
    source: str
    entity: str
    kind: str
    start_ms: int
    end_ms: int
    slot: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label_id(self) -> str:
        return f"{self.source}:{self.entity}:{self.kind}:{self.slot}"

    def to_label(self) -> dict[str, Any]:
        return {
            "label_id": self.label_id,
            "source": self.source,
            "entity": self.entity,
            "kind": self.kind,
            "start_ts": iso_utc(self.start_ms),
            "end_ts": iso_utc(self.end_ms),
            "details": self.details,
        }


def schedule_episodes(
    source: str,
    entities: list[str],
    kinds: list[AnomalyKind],
    start_ms: int,
    end_ms: int,
    slot_ms: int,
    rate: float,
    seed: int,
) -> list[Episode]:
    """Episodes overlapping [start, end); ``rate`` is the chance a slot holds one."""
    if not kinds or rate <= 0 or not entities:
        return []
    longest = max(kind.max_ms for kind in kinds)
    first_slot = (start_ms - longest) // slot_ms - 1
    last_slot = end_ms // slot_ms + 1
    slots = np.arange(first_slot, last_slot + 1, dtype=np.int64)
    keys = entity_keys(entities)
    grid_entity, grid_slot = np.meshgrid(keys, slots, indexing="ij")
    occurs = uniform(seed, stream_key(source, "occurs"), grid_entity, grid_slot) < rate
    weights = np.array([kind.weight for kind in kinds], dtype=np.float64)
    cumulative = np.cumsum(weights / weights.sum())
    pick = uniform(seed, stream_key(source, "kind"), grid_entity, grid_slot)
    offset = uniform(seed, stream_key(source, "offset"), grid_entity, grid_slot)
    length = uniform(seed, stream_key(source, "length"), grid_entity, grid_slot)
    # vectorised over every occurrence: a live feed schedules a whole fleet many times a second
    rows, columns = np.nonzero(occurs)
    chosen = np.searchsorted(cumulative, pick[rows, columns], side="right")
    min_ms = np.array([kind.min_ms for kind in kinds], dtype=np.int64)[chosen]
    max_ms = np.array([kind.max_ms for kind in kinds], dtype=np.int64)[chosen]
    duration = (min_ms + length[rows, columns] * (max_ms - min_ms)).astype(np.int64)
    slot = slots[columns]
    room = np.maximum(slot_ms - duration, 0)
    begin = slot * slot_ms + (offset[rows, columns] * room).astype(np.int64)
    overlaps = np.nonzero((begin + duration > start_ms) & (begin < end_ms))[0]
    return [
        Episode(
            source,
            entities[int(rows[i])],
            kinds[int(chosen[i])].name,
            int(begin[i]),
            int(begin[i] + duration[i]),
            int(slot[i]),
        )
        for i in overlaps
    ]


def episode_slices(
    episodes: list[Episode],
    kind: str,
    entity_index: dict[str, int],
    times: npt.NDArray[np.int64],
) -> list[tuple[Episode, slice]]:
    """Where each ``kind`` episode sits in an entity-major sample layout.

    Generators lay samples out with ``streams.sample_grid``: one block of ``len(times)``
    sorted grid times per entity, so an episode is a contiguous slice found by binary search
    instead of a scan over every sample.
    """
    found = []
    for episode in episodes:
        if episode.kind != kind:
            continue
        block = entity_index[episode.entity] * len(times)
        first = int(np.searchsorted(times, episode.start_ms, side="left"))
        last = int(np.searchsorted(times, episode.end_ms, side="left"))
        if last > first:
            found.append((episode, slice(block + first, block + last)))
    return found


def active_mask(
    episodes: list[Episode],
    kind: str,
    entity_index: dict[str, int],
    times: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Which samples (entity-major layout) fall inside an episode of ``kind``."""
    mask = np.zeros(len(entity_index) * len(times), dtype=bool)
    for _episode, where in episode_slices(episodes, kind, entity_index, times):
        mask[where] = True
    return mask
