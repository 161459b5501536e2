"""Live weather against a local HTTP server that answers like OpenWeatherMap.

The real API cannot be reached from here; this server speaks its current-weather format and
misbehaves on demand (bad key, 429, timeouts, 5xx, malformed JSON).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from generators.openweather import OpenWeatherPoller, parse_current_weather

pytestmark = pytest.mark.integration
OBSERVED = 1_767_225_600  # the API reports observation time in epoch seconds


class FakeOpenWeather(BaseHTTPRequestHandler):
    mode = "ok"
    calls: list[dict[str, list[str]]] = []  # noqa: RUF012 - shared across handler instances

    def log_message(self, *_args: object) -> None:
        return

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        type(self).calls.append(query)
        mode = type(self).mode
        if mode == "slow":
            time.sleep(1.0)
        if mode == "bad_key" or query.get("appid") != ["good-key"]:
            return self._answer(401, {"cod": 401, "message": "Invalid API key."})
        if mode == "rate_limited":
            return self._answer(
                429, {"cod": 429, "message": "Too many requests"}, {"Retry-After": "30"}
            )
        if mode == "server_error":
            return self._answer(502, {"cod": 502})
        if mode == "malformed":
            return self._answer(200, {"coord": {}, "weather": []})
        lat, lon = float(query["lat"][0]), float(query["lon"][0])
        return self._answer(
            200,
            {
                "coord": {"lon": lon, "lat": lat},
                "main": {"temp": 11.5, "feels_like": 9.25, "humidity": 80},
                "dt": OBSERVED,
                "name": "somewhere",
                "cod": 200,
            },
        )

    def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[str]:
    FakeOpenWeather.mode, FakeOpenWeather.calls = "ok", []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenWeather)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data/2.5/weather"
    httpd.shutdown()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _poller(
    url: str, clock: FakeClock, key: str = "good-key", timeout_s: float = 5.0
) -> OpenWeatherPoller:
    return OpenWeatherPoller(
        key,
        url,
        calls_per_minute=60,
        client=httpx.Client(timeout=timeout_s),
        clock=clock,
        sleep=clock.sleep,
    )


def test_readings_are_parsed_and_rate_limited(server: str) -> None:
    clock = FakeClock()
    poller = _poller(server, clock)
    readings = poller.poll()
    assert len(readings) == 12
    assert readings[0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert readings[0]["temperature"] - readings[0]["feels_like"] == pytest.approx(2.25)
    assert FakeOpenWeather.calls[0]["units"] == ["metric"]
    assert sum(clock.slept) == pytest.approx(11.0)  # 12 calls at most one per second
    assert poller.poll() == []  # same observation time: already sent
    assert poller.stats.duplicates == 12


def test_bad_key_pauses_polling_without_raising(server: str) -> None:
    clock = FakeClock()
    poller = _poller(server, clock, key="wrong")
    assert poller.poll() == []
    assert poller.stats.failures["unauthorized"] == 1
    assert poller.stats.failures["paused"] == 11
    assert len(FakeOpenWeather.calls) == 1


def test_rate_limit_honours_retry_after(server: str) -> None:
    clock = FakeClock()
    poller = _poller(server, clock)
    FakeOpenWeather.mode = "rate_limited"
    assert poller.poll() == []
    FakeOpenWeather.mode = "ok"
    clock.now += 10
    assert poller.poll() == []  # still inside Retry-After: 30
    clock.now += 30
    assert len(poller.poll()) == 12


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("server_error", "http_502"), ("malformed", "malformed"), ("slow", "timeout")],
)
def test_transient_failures_are_counted_and_survived(server: str, mode: str, reason: str) -> None:
    clock = FakeClock()
    poller = _poller(server, clock, timeout_s=0.2)
    FakeOpenWeather.mode = mode
    assert poller.poll() == []
    assert poller.stats.failures[reason] >= 1
    FakeOpenWeather.mode = "ok"
    clock.now += 600
    assert len(poller.poll()) == 12


def test_payload_without_main_is_rejected() -> None:
    with pytest.raises(ValueError, match="unexpected current-weather payload"):
        parse_current_weather("Paris", {"coord": {"lat": 1, "lon": 2}, "dt": 1})
