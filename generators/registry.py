"""Build each source's generator from the one settings object."""

from __future__ import annotations

from typing import Protocol

from generators.cdn import CdnGenerator
from generators.common import Batch
from generators.ip import IpGenerator
from generators.server import ServerGenerator
from generators.weather import WeatherGenerator
from lambdawatch.core.settings import Settings

SOURCES = ("ip", "server", "cdn", "weather")


class Generator(Protocol):
    interval_ms: int

    def generate(self, start_ms: int, end_ms: int) -> Batch: ...


def make_generator(source: str, settings: Settings) -> Generator:
    g = settings.generators
    if source == "ip":
        return IpGenerator(
            tuple(settings.ips.resolved_addresses),
            g.ip_interval_seconds * 1000,
            g.seed,
            g.anomaly_rate,
        )
    if source == "server":
        return ServerGenerator(g.servers, g.server_interval_ms, g.seed, g.anomaly_rate)
    if source == "cdn":
        return CdnGenerator(g.cdn_edges, g.cdn_interval_seconds * 1000, g.seed, g.anomaly_rate)
    if source == "weather":
        return WeatherGenerator(g.weather_interval_seconds * 1000, g.seed)
    raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


def entities_per_interval(source: str, settings: Settings) -> int:
    """How many events one grid tick of ``source`` holds (for rate planning)."""
    g = settings.generators
    return {
        "ip": settings.ips.count,
        "server": g.servers,
        "cdn": g.cdn_edges,
        "weather": 12,
    }[source]
