"""CDN edges: request volume, cache efficiency, latency and errors per edge every interval.

Load follows the local day of each point of presence. Injected, labelled anomalies: error
storms (5xx and origin errors surge), cache collapse (hit ratio falls, latency and origin load
rise) and latency spikes: distinct states a KMeans model separates into clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from generators.anomalies import AnomalyKind, active_mask, schedule_episodes
from generators.common import Batch, capitals_for, hour_of_day
from generators.streams import (
    entity_uniform,
    iso_strings,
    normal,
    sample_grid,
    stream_key,
    ticks,
)

SOURCE = "cdn"
KINDS = [
    AnomalyKind("error_storm", 0.4, 60_000, 300_000),
    AnomalyKind("cache_collapse", 0.3, 60_000, 300_000),
    AnomalyKind("latency_spike", 0.3, 30_000, 180_000),
]
SLOT_MS = 30 * 60_000


@dataclass(frozen=True)
class Edge:
    edge_id: str
    pop: str
    region: str
    lon: float


@lru_cache(maxsize=8)
def edges(count: int, seed: int) -> tuple[Edge, ...]:
    """The simulated CDN edges: stable for a given count and seed (so computed once)."""
    ids = [f"edge-{i:03d}" for i in range(count)]
    fleet = []
    for edge_id, capital in zip(ids, capitals_for(SOURCE, ids, seed), strict=True):
        pop = capital["city"].upper().replace(" ", "")[:3] + "-" + capital["country_code"]
        fleet.append(Edge(edge_id, pop, capital["region"], float(capital["lon"])))
    return tuple(fleet)


@dataclass(frozen=True)
class CdnGenerator:
    edges: int = 40
    interval_ms: int = 10_000
    seed: int = 1
    anomaly_rate: float = 0.02

    def generate(self, start_ms: int, end_ms: int) -> Batch:
        fleet = edges(self.edges, self.seed)
        ids = [e.edge_id for e in fleet]
        episodes = schedule_episodes(
            SOURCE, ids, KINDS, start_ms, end_ms, SLOT_MS, self.anomaly_rate, self.seed
        )
        batch = Batch(SOURCE, episodes=episodes)
        times = ticks(start_ms, end_ms, self.interval_ms)
        if not len(times):
            return batch
        rows, ts, keys, tick = sample_grid(ids, times, self.interval_ms)
        index = {edge_id: row for row, edge_id in enumerate(ids)}
        seed = self.seed

        def per_edge(name: str) -> npt.NDArray[np.float64]:
            return entity_uniform(seed, stream_key(SOURCE, name), ids)[rows]

        def noise(name: str, sigma: float) -> npt.NDArray[np.float64]:
            return np.exp(sigma * normal(seed, stream_key(SOURCE, name), keys, tick))

        lon = np.array([e.lon for e in fleet])[rows]
        load = 0.55 + 0.45 * np.sin(2 * np.pi * (hour_of_day(ts, lon) - 14) / 24 + np.pi / 2) ** 2
        requests = np.round((2_000 + 18_000 * per_edge("size")) * load * noise("requests", 0.08))
        hit = np.clip(
            0.88
            + 0.09 * per_edge("hit")
            - np.abs(0.01 * normal(seed, stream_key(SOURCE, "hit_noise"), keys, tick)),
            0,
            1,
        )
        p50 = (15 + 25 * per_edge("latency")) * noise("p50", 0.08)
        p95 = p50 * (2.5 + 1.5 * per_edge("tail")) * noise("p95", 0.1)
        s4 = requests * (0.01 + 0.02 * per_edge("4xx")) * noise("4xx", 0.2)
        s5 = requests * (0.0005 + 0.0015 * per_edge("5xx")) * noise("5xx", 0.3)
        origin = requests * (1 - hit) * 0.002 * noise("origin", 0.3)

        storm = active_mask(episodes, "error_storm", index, times)
        s5[storm] *= 60
        origin[storm] *= 30
        p95[storm] *= 1.5
        collapse = active_mask(episodes, "cache_collapse", index, times)
        hit[collapse] = 0.15 + 0.2 * per_edge("collapse")[collapse]
        p50[collapse] *= 3
        p95[collapse] *= 4
        origin[collapse] *= 8
        spike = active_mask(episodes, "latency_spike", index, times)
        p50[spike] *= 6
        p95[spike] *= 9
        bytes_sent = requests * (30_000 + 90_000 * per_edge("object")) * noise("bytes", 0.05)

        order = np.lexsort((rows, ts))
        stamps, ts_list = iso_strings(ts[order]), ts[order].tolist()
        cols = {
            "requests": requests[order].astype(np.int64).tolist(),
            "bytes_sent": np.round(bytes_sent[order]).astype(np.int64).tolist(),
            "cache_hit_ratio": np.round(hit[order], 4).tolist(),
            "latency_p50_ms": np.round(p50[order], 2).tolist(),
            "latency_p95_ms": np.round(p95[order], 2).tolist(),
            "status_4xx": np.round(s4[order]).astype(np.int64).tolist(),
            "status_5xx": np.round(s5[order]).astype(np.int64).tolist(),
            "origin_errors": np.round(origin[order]).astype(np.int64).tolist(),
        }
        for i, row in enumerate(rows[order].tolist()):
            edge = fleet[row]
            batch.keys.append(edge.edge_id)
            event = {
                "event_id": f"cdn:{edge.edge_id}:{ts_list[i]}",
                "edge_id": edge.edge_id,
                "pop": edge.pop,
                "region": edge.region,
            }
            event.update({name: column[i] for name, column in cols.items()})
            event["timestamp"] = stamps[i]
            batch.events.append(event)
        return batch
