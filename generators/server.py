"""Data-center servers: status and resource events at sub-second cadence per server.

Each server has a type, a datacenter in a real capital city (bundled table, no web API), a
normal CPU level and spread. Status colour and severity follow the server's health (CPU and
memory pressure), not a uniform draw. Injected, labelled anomalies: strong CPU spikes, a
moderate one-sample spike that a 500 ms window dilutes, stuck-at-100 %, outages (status flips
to Red, then silence) and slow drifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from generators.anomalies import (
    AnomalyKind,
    Episode,
    active_mask,
    episode_slices,
    schedule_episodes,
)
from generators.common import Batch, capitals_for, hour_of_day
from generators.streams import (
    entity_uniform,
    iso_strings,
    normal,
    sample_grid,
    stream_key,
    ticks,
    uniform,
)

SOURCE = "server"
SERVER_TYPES = ("Application", "Mail", "Web", "Proxy", "FTP", "Database", "DNS", "Cache")
KINDS = [
    AnomalyKind("cpu_spike", 0.30, 2_000, 10_000),
    AnomalyKind("cpu_spike_moderate", 0.15, 250, 250),
    AnomalyKind("stuck_at_100", 0.15, 30_000, 120_000),
    AnomalyKind("outage", 0.20, 30_000, 120_000),
    AnomalyKind("drift", 0.20, 600_000, 1_200_000),
]
SLOT_MS = 20 * 60_000
RED_LEAD_MS = 2_000  # an outage shows Red this long before the server falls silent
COLORS = ("Green", "Orange", "Red")


@dataclass(frozen=True)
class ServerInventory:
    server_id: str
    server_type: str
    datacenter: str
    country_code: str
    country_name: str
    city: str
    lon: float


@lru_cache(maxsize=8)
def inventory(count: int, seed: int) -> tuple[ServerInventory, ...]:
    """The simulated fleet: stable for a given count and seed (so computed once, not at every
    feed tick)."""
    ids = [f"srv-{i:04d}" for i in range(count)]
    places = capitals_for(SOURCE, ids, seed)
    kind = entity_uniform(seed, stream_key(SOURCE, "type"), ids)
    site = entity_uniform(seed, stream_key(SOURCE, "site"), ids)
    fleet = []
    for i, server_id in enumerate(ids):
        capital = places[i]
        slug = capital["city"].lower().replace(" ", "-")
        fleet.append(
            ServerInventory(
                server_id=server_id,
                server_type=SERVER_TYPES[int(kind[i] * len(SERVER_TYPES))],
                datacenter=f"{capital['country_code'].lower()}-{slug}-dc{1 + int(site[i] * 2)}",
                country_code=capital["country_code"],
                country_name=capital["country_name"],
                city=capital["city"],
                lon=float(capital["lon"]),
            )
        )
    return tuple(fleet)


@dataclass(frozen=True)
class ServerGenerator:
    servers: int = 50
    interval_ms: int = 250
    seed: int = 1
    anomaly_rate: float = 0.02

    def normal_levels(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each server's normal CPU mean and per-sample spread (what a baseline should find)."""
        ids = [s.server_id for s in inventory(self.servers, self.seed)]
        mean = 25 + 35 * entity_uniform(self.seed, stream_key(SOURCE, "cpu_mean"), ids)
        sigma = 3 + 3 * entity_uniform(self.seed, stream_key(SOURCE, "cpu_sigma"), ids)
        return mean, sigma

    def generate(self, start_ms: int, end_ms: int) -> Batch:
        fleet = inventory(self.servers, self.seed)
        ids = [s.server_id for s in fleet]
        episodes = schedule_episodes(
            SOURCE, ids, KINDS, start_ms, end_ms, SLOT_MS, self.anomaly_rate, self.seed
        )
        episodes = [self._aligned(e) for e in episodes]
        batch = Batch(SOURCE, episodes=episodes)
        times = ticks(start_ms, end_ms, self.interval_ms)
        if not len(times):
            return batch
        rows, ts, keys, tick = sample_grid(ids, times, self.interval_ms)
        index = {server_id: row for row, server_id in enumerate(ids)}
        cpu, mem = self._resources(fleet, rows, ts, times, keys, tick, episodes, index)
        red_override = np.zeros(len(ts), dtype=bool)
        silent = np.zeros(len(ts), dtype=bool)
        for episode, where in episode_slices(episodes, "outage", index, times):
            in_red = ts[where] < episode.start_ms + RED_LEAD_MS
            red_override[where] = in_red
            silent[where] = ~in_red
        severity = self._severity(cpu, mem, keys, tick)
        severity = np.where(red_override, 3, severity)
        keep = ~silent
        self._emit(
            batch,
            fleet,
            rows[keep],
            ts[keep],
            cpu[keep],
            mem[keep],
            severity[keep],
            keys[keep],
            tick[keep],
        )
        return batch

    def _aligned(self, episode: Episode) -> Episode:
        """Snap episode edges to the sample grid so labels cover whole samples."""
        step = self.interval_ms
        start = -(-episode.start_ms // step) * step
        end = max(-(-episode.end_ms // step) * step, start + step)
        return Episode(episode.source, episode.entity, episode.kind, start, end, episode.slot)

    def _resources(
        self,
        fleet: list[ServerInventory],
        rows: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        times: npt.NDArray[np.int64],
        keys: npt.NDArray[np.uint64],
        tick: npt.NDArray[np.int64],
        episodes: list[Episode],
        index: dict[str, int],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        seed = self.seed
        mean, sigma = self.normal_levels()
        lon = np.array([s.lon for s in fleet])[rows]
        daily = 2.0 * np.sin(2 * np.pi * (hour_of_day(ts, lon) - 9) / 24)
        cpu = mean[rows] + daily + sigma[rows] * normal(seed, stream_key(SOURCE, "cpu"), keys, tick)
        mem_base = 35 + 35 * entity_uniform(
            seed, stream_key(SOURCE, "mem"), [s.server_id for s in fleet]
        )
        mem = mem_base[rows] + 2.0 * normal(seed, stream_key(SOURCE, "mem_noise"), keys, tick // 40)
        spike = active_mask(episodes, "cpu_spike", index, times)
        cpu[spike] += np.maximum(40.0, 6 * sigma[rows][spike])
        moderate = active_mask(episodes, "cpu_spike_moderate", index, times)
        cpu[moderate] += 2.0 * sigma[rows][moderate]
        for episode, where in episode_slices(episodes, "drift", index, times):
            progress = (ts[where] - episode.start_ms) / (episode.end_ms - episode.start_ms)
            cpu[where] += 45.0 * progress
        cpu = np.clip(cpu, 0.0, 100.0)
        cpu[active_mask(episodes, "stuck_at_100", index, times)] = 100.0
        return np.round(cpu, 2), np.round(np.clip(mem, 0.0, 100.0), 2)

    def _severity(
        self,
        cpu: npt.NDArray[np.float64],
        mem: npt.NDArray[np.float64],
        keys: npt.NDArray[np.uint64],
        tick: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        pressure = np.maximum(cpu, mem) / 100 + 0.05 * normal(
            self.seed, stream_key(SOURCE, "health"), keys, tick
        )
        minor = uniform(self.seed, stream_key(SOURCE, "minor"), keys, tick // 20) < 0.01
        severity = np.where(pressure > 0.92, 3, np.where((pressure > 0.8) | minor, 2, 1))
        return severity.astype(np.int64)

    def _emit(
        self,
        batch: Batch,
        fleet: list[ServerInventory],
        rows: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        cpu: npt.NDArray[np.float64],
        mem: npt.NDArray[np.float64],
        severity: npt.NDArray[np.int64],
        keys: npt.NDArray[np.uint64],
        tick: npt.NDArray[np.int64],
    ) -> None:
        order = np.lexsort((rows, ts))
        rows, ts, cpu, mem, severity = (
            rows[order],
            ts[order],
            cpu[order],
            mem[order],
            severity[order],
        )
        draw = uniform(self.seed, stream_key(SOURCE, "resolution"), keys[order], tick[order])
        minutes = np.where(
            severity == 3, 60 + 180 * draw, np.where(severity == 2, 15 + 45 * draw, 0)
        )
        stamps, ts_list = iso_strings(ts), ts.tolist()
        cpu_l, mem_l, sev_l, minutes_l = (
            cpu.tolist(),
            mem.tolist(),
            severity.tolist(),
            minutes.astype(np.int64).tolist(),
        )
        for i, row in enumerate(rows.tolist()):
            server = fleet[row]
            batch.keys.append(server.server_id)
            batch.events.append(
                {
                    "event_id": f"server:{server.server_id}:{ts_list[i]}",
                    "server_id": server.server_id,
                    "server_type": server.server_type,
                    "datacenter": server.datacenter,
                    "country_code": server.country_code,
                    "country_name": server.country_name,
                    "city": server.city,
                    "status_color": COLORS[sev_l[i] - 1],
                    "severity_level": sev_l[i],
                    "estimated_resolution_time": minutes_l[i],
                    "cpu_usage": cpu_l[i],
                    "mem_usage": mem_l[i],
                    "timestamp": stamps[i],
                }
            )
