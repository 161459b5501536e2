"""Live city weather from OpenWeatherMap's current-weather endpoint (optional).

Used when ``OPENWEATHER_API_KEY`` is set. Calls stay under the free tier's 60/minute with a
client-side limiter, and no API failure stops the stream: a bad key (401) pauses polling for a
while, 429 honours ``Retry-After``, timeouts and 5xx back off exponentially, a malformed
answer is skipped. Each city's reading carries the observation time the API reports, so
polling faster than the API updates re-sends the same ``event_id`` and sinks drop the copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from generators.weather import cities
from lambdawatch.core.events import iso_utc

log = logging.getLogger(__name__)
DEFAULT_URL = "https://api.openweathermap.org/data/2.5/weather"
FREE_TIER_CALLS_PER_MINUTE = 60


@dataclass
class PollStats:
    readings: int = 0
    duplicates: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


def parse_current_weather(city: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A weather event from the API's JSON; raises ValueError if a field is missing or wrong."""
    try:
        observed_ms = int(payload["dt"]) * 1000
        main = payload["main"]
        temperature, feels_like = float(main["temp"]), float(main["feels_like"])
        lat, lon = float(payload["coord"]["lat"]), float(payload["coord"]["lon"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unexpected current-weather payload for {city}: {exc!r}") from None
    return {
        "event_id": f"weather:{city}:{observed_ms}",
        "city": city,
        "lat": lat,
        "lon": lon,
        "temperature": round(temperature, 2),
        "feels_like": round(feels_like, 2),
        "timestamp": iso_utc(observed_ms),
    }


class OpenWeatherPoller:
    """Polls the 12 cities; never raises for API trouble, reports it in ``stats``."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_URL,
        calls_per_minute: int = 50,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_minute > FREE_TIER_CALLS_PER_MINUTE:
            raise ValueError(
                f"calls_per_minute must be <= {FREE_TIER_CALLS_PER_MINUTE} (free tier)"
            )
        self.api_key, self.base_url = api_key, base_url
        self.min_gap_s = 60.0 / calls_per_minute
        self.client = client or httpx.Client(timeout=timeout_s)
        self.clock, self.sleep = clock, sleep
        self.stats = PollStats()
        self._last_call = -1e18
        self._paused_until = -1e18
        self._backoff_s = 1.0
        self._seen: set[str] = set()

    def _wait_turn(self) -> None:
        wait = self._last_call + self.min_gap_s - self.clock()
        if wait > 0:
            self.sleep(wait)
        self._last_call = self.clock()

    def _fetch(self, city: dict[str, str]) -> dict[str, Any] | None:
        self._wait_turn()
        params = {"lat": city["lat"], "lon": city["lon"], "appid": self.api_key, "units": "metric"}
        try:
            response = self.client.get(self.base_url, params=params)
        except httpx.TimeoutException:
            self._back_off("timeout")
            return None
        except httpx.HTTPError as exc:
            self._back_off(f"network: {type(exc).__name__}")
            return None
        if response.status_code == 401:
            self.stats.failed("unauthorized")
            self._paused_until = self.clock() + 600  # a bad key will not fix itself quickly
            log.error("OpenWeatherMap rejected the API key (401); pausing live polling for 10 min")
            return None
        if response.status_code == 429:
            self.stats.failed("rate_limited")
            retry_after = float(response.headers.get("Retry-After", 60))
            self._paused_until = self.clock() + retry_after
            return None
        if response.status_code >= 500:
            self._back_off(f"http_{response.status_code}")
            return None
        if response.status_code != 200:
            self.stats.failed(f"http_{response.status_code}")
            return None
        try:
            reading = parse_current_weather(city["city"], response.json())
        except ValueError as exc:
            self.stats.failed("malformed")
            log.warning("%s", exc)
            return None
        self._backoff_s = 1.0
        return reading

    def _back_off(self, reason: str) -> None:
        self.stats.failed(reason)
        self._paused_until = self.clock() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, 300.0)

    def poll(self) -> list[dict[str, Any]]:
        """One pass over the cities: new readings only (already-sent observations skipped)."""
        readings = []
        for city in cities():
            if self.clock() < self._paused_until:
                self.stats.failed("paused")
                continue
            reading = self._fetch(city)
            if reading is None:
                continue
            if reading["event_id"] in self._seen:
                self.stats.duplicates += 1
                continue
            self._seen.add(reading["event_id"])
            self.stats.readings += 1
            readings.append(reading)
        return readings
