"""IP traffic: one firewall-log record per source IP per interval.

Every IP has a behaviour profile drawn from its address: office-hours clients (weekday
working-hours peak), always-on servers (mild diurnal cycle), bursty hosts (random bursts).
On top: weekly seasonality, a slow per-IP trend and multiplicative noise. Injected, labelled
anomalies: port/host scans, exfiltration, DDoS participation and quiet outages (no records).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from generators.anomalies import AnomalyKind, active_mask, schedule_episodes
from generators.common import DAY_MS, Batch, day_of_week, hour_of_day
from generators.streams import (
    entity_uniform,
    iso_strings,
    normal,
    sample_grid,
    stream_key,
    ticks,
    uniform,
)

SOURCE = "ip"
EPOCH_2026_MS = 1_767_225_600_000
KINDS = [
    AnomalyKind("port_scan", 0.35, 3 * 60_000, 15 * 60_000),
    AnomalyKind("exfiltration", 0.25, 3 * 60_000, 12 * 60_000),
    AnomalyKind("ddos", 0.25, 3 * 60_000, 10 * 60_000),
    AnomalyKind("outage", 0.15, 5 * 60_000, 20 * 60_000),
]
SLOT_MS = 30 * 60_000
PROFILES = ("office", "server", "bursty")


@dataclass(frozen=True)
class IpGenerator:
    ips: tuple[str, ...]
    interval_ms: int = 60_000
    seed: int = 1
    anomaly_rate: float = 0.02

    def profiles(self) -> list[str]:
        draw = entity_uniform(self.seed, stream_key(SOURCE, "profile"), list(self.ips))
        return [PROFILES[0] if u < 0.45 else PROFILES[1] if u < 0.8 else PROFILES[2] for u in draw]

    def generate(self, start_ms: int, end_ms: int) -> Batch:
        """Records for grid times in [start, end), identical however the interval is cut."""
        ips = list(self.ips)
        times = ticks(start_ms, end_ms, self.interval_ms)
        episodes = schedule_episodes(
            SOURCE, ips, KINDS, start_ms, end_ms, SLOT_MS, self.anomaly_rate, self.seed
        )
        batch = Batch(SOURCE, episodes=episodes)
        if not len(times) or not ips:
            return batch
        rows, ts, keys, tick = sample_grid(ips, times, self.interval_ms)
        values = self._values(rows, ts, keys, tick)
        index = {ip: row for row, ip in enumerate(ips)}
        self._inject(values, episodes, index, times, keys, tick)
        keep = ~active_mask(episodes, "outage", index, times)
        self._emit(batch, ips, rows[keep], ts[keep], {k: v[keep] for k, v in values.items()})
        return batch

    def _values(
        self,
        rows: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        keys: npt.NDArray[np.uint64],
        tick: npt.NDArray[np.int64],
    ) -> dict[str, npt.NDArray[np.float64]]:
        ips, seed = list(self.ips), self.seed

        def per_ip(name: str) -> npt.NDArray[np.float64]:
            return entity_uniform(seed, stream_key(SOURCE, name), ips)[rows]

        def noise(name: str, sigma: float) -> npt.NDArray[np.float64]:
            return np.exp(sigma * normal(seed, stream_key(SOURCE, name), keys, tick))

        profile = per_ip("profile")
        hour, weekday = hour_of_day(ts), day_of_week(ts)
        working = (weekday < 5) & (hour >= 8) & (hour < 18)
        ramp = np.clip(1 - np.abs(hour - 13) / 7, 0, 1)
        office = np.where(working, 0.55 + 0.45 * ramp, np.where(weekday < 5, 0.08, 0.05))
        server = (0.75 + 0.25 * np.sin(2 * np.pi * (hour - 8) / 24)) * np.where(
            weekday < 5, 1, 0.85
        )
        burst_on = uniform(seed, stream_key(SOURCE, "burst"), keys, tick // 15) < 0.12
        bursty = np.where(burst_on, 4.0, 0.35) * (0.8 + 0.2 * np.sin(2 * np.pi * hour / 24))
        season = np.where(profile < 0.45, office, np.where(profile < 0.8, server, bursty))
        days = (ts - EPOCH_2026_MS) / DAY_MS
        trend = np.clip(1 + (per_ip("trend") - 0.35) * 0.01 * days, 0.2, 5)
        base = 20 * np.exp(3 * per_ip("base"))
        frequency = np.maximum(np.round(base * season * trend * noise("frequency", 0.15)), 1)
        drop_ratio = 0.02 + 0.08 * per_ip("drop_ratio")
        drop = np.round(frequency * drop_ratio * noise("drop", 0.3))
        drop = np.minimum(drop, frequency)
        pkts_per_conn = 8 + 20 * per_ip("pkts")
        pkts_sent = np.round(frequency * pkts_per_conn * noise("pkts_sent", 0.1))
        pkts_received = np.round(
            pkts_sent * (1.1 + 1.9 * per_ip("ratio")) * noise("pkts_recv", 0.1)
        )
        return {
            "frequency": frequency,
            "drop": drop,
            "unq_dst_ip": np.maximum(
                np.round(2 + 1.8 * np.sqrt(frequency) * noise("dst_ip", 0.12)), 1
            ),
            "unq_dst_port": np.maximum(
                np.round(1 + 0.6 * np.sqrt(frequency) * noise("dst_port", 0.15)), 1
            ),
            "pkts_sent": pkts_sent,
            "pkts_received": pkts_received,
            "bytesout": np.round(pkts_sent * (400 + 500 * per_ip("out_size")) * noise("bout", 0.1)),
            "bytesin": np.round(
                pkts_received * (600 + 600 * per_ip("in_size")) * noise("bin", 0.1)
            ),
        }

    def _inject(
        self,
        values: dict[str, npt.NDArray[np.float64]],
        episodes: list,
        index: dict[str, int],
        times: npt.NDArray[np.int64],
        keys: npt.NDArray[np.uint64],
        tick: npt.NDArray[np.int64],
    ) -> None:
        strength = 1 + uniform(self.seed, stream_key(SOURCE, "strength"), keys, tick)
        scan = active_mask(episodes, "port_scan", index, times)
        values["unq_dst_ip"][scan] *= 15 * strength[scan]
        values["unq_dst_port"][scan] *= 25 * strength[scan]
        values["drop"][scan] *= 4
        values["frequency"][scan] *= 2
        exfil = active_mask(episodes, "exfiltration", index, times)
        values["bytesout"][exfil] *= 15 * strength[exfil]
        values["pkts_sent"][exfil] *= 3
        ddos = active_mask(episodes, "ddos", index, times)
        values["frequency"][ddos] *= 10 * strength[ddos]
        values["pkts_sent"][ddos] *= 8 * strength[ddos]
        values["drop"][ddos] *= 3
        for name, column in values.items():
            values[name] = np.round(column)
        values["drop"] = np.minimum(values["drop"], values["frequency"])

    def _emit(
        self,
        batch: Batch,
        ips: list[str],
        rows: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        values: dict[str, npt.NDArray[np.float64]],
    ) -> None:
        order = np.lexsort((rows, ts))  # time-major, like a firewall log
        rows, ts = rows[order], ts[order]
        names = (
            "unq_dst_ip",
            "drop",
            "frequency",
            "pkts_sent",
            "pkts_received",
            "bytesin",
            "bytesout",
            "unq_dst_port",
        )
        cols = [values[name][order].astype(np.int64).tolist() for name in names]
        allow = (values["frequency"][order] - values["drop"][order]).astype(np.int64).tolist()
        ip_of = [ips[row] for row in rows.tolist()]
        batch.keys.extend(ip_of)
        batch.events.extend(
            {
                "event_id": f"ip:{ip}:{t}",
                "src_ip": ip,
                "unq_dst_ip": dst_ip,
                "allow": allowed,
                "drop": dropped,
                "frequency": frequency,
                "pkts_sent": sent,
                "pkts_received": received,
                "bytesin": bytes_in,
                "bytesout": bytes_out,
                "unq_dst_port": dst_port,
                "timestamp": stamp,
            }
            for (
                ip,
                t,
                stamp,
                allowed,
                dst_ip,
                dropped,
                frequency,
                sent,
                received,
                bytes_in,
                bytes_out,
                dst_port,
            ) in zip(ip_of, ts.tolist(), iso_strings(ts), allow, *cols, strict=True)
        )
