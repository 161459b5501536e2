"""Generators: pure functions of (seed, interval), realistic, with labelled anomalies."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from generators.cdn import CdnGenerator
from generators.ip import IpGenerator
from generators.registry import SOURCES, make_generator
from generators.server import ServerGenerator
from generators.weather import WeatherGenerator
from lambdawatch.core.events import SCHEMAS, parse_timestamp_ms
from lambdawatch.core.settings import load_settings

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)  # a Monday
HOUR = 3_600_000
IPS = tuple(f"198.18.1.{i}" for i in range(1, 61))
TYPES = {"string": str, "long": int, "int": int, "double": float, "timestamp": str}


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.mark.parametrize("source", SOURCES)
def test_same_seed_and_interval_give_identical_events(source: str, settings) -> None:
    generator = make_generator(source, settings)
    first = generator.generate(T0, T0 + HOUR // 4)
    second = generator.generate(T0, T0 + HOUR // 4)
    assert first.events == second.events
    assert first.labels == second.labels
    assert len(first.events) > 0


@pytest.mark.parametrize("source", SOURCES)
def test_events_do_not_depend_on_how_time_is_cut(source: str, settings) -> None:
    generator = make_generator(source, settings)
    whole = generator.generate(T0, T0 + HOUR // 2)
    halves = (
        generator.generate(T0, T0 + HOUR // 4).events
        + generator.generate(T0 + HOUR // 4, T0 + HOUR // 2).events
    )
    assert whole.events == halves


@pytest.mark.parametrize("source", SOURCES)
def test_events_follow_the_shared_schema(source: str, settings) -> None:
    schema = SCHEMAS[source]
    batch = make_generator(source, settings).generate(T0, T0 + HOUR // 6)
    ids = [event["event_id"] for event in batch.events]
    assert len(set(ids)) == len(ids)
    for event in batch.events[:500]:
        assert tuple(event) == schema.names
        for name, kind in schema.fields:
            assert isinstance(event[name], TYPES[kind]), (name, event[name])
        assert event["timestamp"].endswith("Z")
        assert T0 <= parse_timestamp_ms(event["timestamp"]) < T0 + HOUR // 6
    assert batch.keys == [event[schema.key_field] for event in batch.events]


def test_different_seeds_differ() -> None:
    a = IpGenerator(IPS, seed=1).generate(T0, T0 + HOUR)
    b = IpGenerator(IPS, seed=2).generate(T0, T0 + HOUR)
    assert a.events != b.events


def test_ip_records_are_consistent() -> None:
    for event in IpGenerator(IPS, anomaly_rate=0.2).generate(T0, T0 + 6 * HOUR).events:
        assert event["frequency"] == event["allow"] + event["drop"]
        assert event["allow"] >= 0
        assert event["drop"] >= 0
        assert event["unq_dst_ip"] >= 1


def test_ip_office_clients_show_working_hours_and_weekends() -> None:
    generator = IpGenerator(IPS, anomaly_rate=0.0)
    office = [
        ip for ip, profile in zip(IPS, generator.profiles(), strict=True) if profile == "office"
    ]
    assert office, "no office-hours profile drawn"

    def mean_frequency(start: int) -> float:
        events = generator.generate(start, start + HOUR).events
        return float(np.mean([e["frequency"] for e in events if e["src_ip"] in office]))

    monday_noon, monday_3am = T0 + 12 * HOUR, T0 + 3 * HOUR
    saturday_noon = T0 + 5 * 24 * HOUR + 12 * HOUR
    assert mean_frequency(monday_noon) > 4 * mean_frequency(monday_3am)
    assert mean_frequency(monday_noon) > 4 * mean_frequency(saturday_noon)


def test_ip_profiles_are_mixed() -> None:
    counts = Counter(IpGenerator(tuple(f"198.18.2.{i}" for i in range(200))).profiles())
    assert set(counts) == {"office", "server", "bursty"}


@pytest.mark.parametrize(
    ("generator", "expected_kinds", "hours"),
    [
        (IpGenerator(IPS, anomaly_rate=0.3), {"port_scan", "exfiltration", "ddos", "outage"}, 12),
        (
            ServerGenerator(servers=20, interval_ms=500, anomaly_rate=0.5),
            {"cpu_spike", "cpu_spike_moderate", "stuck_at_100", "outage", "drift"},
            3,
        ),
        (
            CdnGenerator(edges=30, anomaly_rate=0.3),
            {"error_storm", "cache_collapse", "latency_spike"},
            12,
        ),
    ],
)
def test_every_anomaly_kind_is_injected_and_labelled(
    generator, expected_kinds: set[str], hours: int
) -> None:
    batch = generator.generate(T0, T0 + hours * HOUR)
    kinds = {label["kind"] for label in batch.labels}
    assert kinds == expected_kinds
    label_ids = [label["label_id"] for label in batch.labels]
    assert len(set(label_ids)) == len(label_ids)
    for event in batch.events[:200]:
        assert "kind" not in event
        assert "label" not in event  # labels never travel with the events detectors read


def _window(by_entity: dict, label: dict) -> list[dict]:
    start, end = label["start_ts"], label["end_ts"]  # same ISO format: compares as text
    return [e for e in by_entity.get(label["entity"], []) if start <= e["timestamp"] < end]


def _by_entity(events: list[dict], field: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for event in events:
        grouped.setdefault(event[field], []).append(event)
    return grouped


def test_injected_anomalies_are_visible_in_the_data() -> None:
    ip_batch = IpGenerator(IPS, anomaly_rate=0.3).generate(T0, T0 + 12 * HOUR)
    normal_dst = np.median([e["unq_dst_ip"] for e in ip_batch.events])
    ip_by_entity = _by_entity(ip_batch.events, "src_ip")
    for label in ip_batch.labels:
        inside = _window(ip_by_entity, label)
        if label["kind"] == "outage":
            assert inside == []
        elif label["kind"] == "port_scan" and inside:
            assert max(e["unq_dst_ip"] for e in inside) > 5 * normal_dst

    servers = ServerGenerator(servers=20, interval_ms=500, anomaly_rate=0.3)
    server_batch = servers.generate(T0, T0 + 3 * HOUR)
    server_by_entity = _by_entity(server_batch.events, "server_id")
    for label in server_batch.labels:
        inside = _window(server_by_entity, label)
        if label["kind"] == "stuck_at_100":
            assert inside
            assert all(e["cpu_usage"] == 100.0 for e in inside)
        if label["kind"] == "outage":
            assert inside[0]["status_color"] == "Red"  # flips to Red, then silence
            silent_after = parse_timestamp_ms(inside[-1]["timestamp"])
            assert silent_after < parse_timestamp_ms(label["end_ts"]) - 10_000


def test_server_severity_follows_health() -> None:
    events = ServerGenerator(servers=40, anomaly_rate=0.0).generate(T0, T0 + HOUR // 4).events
    by_color = {
        color: np.mean(
            [max(e["cpu_usage"], e["mem_usage"]) for e in events if e["status_color"] == color]
        )
        for color in ("Green", "Orange")
    }
    assert by_color["Orange"] > by_color["Green"]
    for event in events:
        assert (event["severity_level"], event["status_color"]) in {
            (1, "Green"),
            (2, "Orange"),
            (3, "Red"),
        }
        assert (event["estimated_resolution_time"] == 0) == (event["severity_level"] == 1)


def test_weather_has_daily_cycle_and_derived_gap() -> None:
    summer = int(datetime(2026, 7, 15, tzinfo=UTC).timestamp() * 1000)
    events = WeatherGenerator().generate(summer, summer + 24 * HOUR).events
    paris = [e for e in events if e["city"] == "Paris"]
    afternoon = np.mean(
        [e["temperature"] for e in paris if e["timestamp"][11:13] in {"14", "15", "16"}]
    )
    night = np.mean(
        [e["temperature"] for e in paris if e["timestamp"][11:13] in {"03", "04", "05"}]
    )
    assert afternoon > night + 4
    assert len({e["city"] for e in events}) == 12
    assert len({round(e["temperature"] - e["feels_like"], 1) for e in paris}) > 10
