"""The demo's pure parts: which IPs get history, and the anomaly-rate override."""

from __future__ import annotations

from datetime import UTC, datetime

from generators.registry import make_generator
from lambdawatch.demo import FORECAST_LEAD, ips_to_watch, with_anomaly_rate
from lambdawatch.quality import DETECTOR_TARGETS
from lambdawatch.settings import load_settings

START = datetime(2026, 4, 1, 12, tzinfo=UTC)


def test_the_ips_with_traffic_anomalies_during_the_feed_get_history_first() -> None:
    settings = with_anomaly_rate(load_settings(), 0.5)
    start_ms = int(START.timestamp() * 1000)
    labels = make_generator("ip", settings).generate(start_ms, start_ms + 10 * 60_000).labels
    judged_from = START + FORECAST_LEAD  # earlier samples arrive before any forecast exists
    expected = {
        label["entity"]
        for label in labels
        if label["kind"] in DETECTOR_TARGETS["forecast_deviations"]
        and datetime.fromisoformat(label["end_ts"].replace("Z", "+00:00")) > judged_from
    }
    assert expected, "at this rate the generator injects traffic anomalies in 10 minutes"
    watched = ips_to_watch(settings, START, 10, count=2)
    assert set(watched[: len(expected)]) == expected
    assert len(watched) == max(2, len(expected))
    assert len(set(watched)) == len(watched)


def test_without_anomalies_the_first_configured_ips_are_watched() -> None:
    settings = with_anomaly_rate(load_settings(), 0.0)
    assert ips_to_watch(settings, START, 5, count=3) == settings.ips.resolved_addresses[:3]


def test_anomaly_rate_override_leaves_the_rest_alone() -> None:
    settings = load_settings()
    changed = with_anomaly_rate(settings, 0.3)
    assert changed.generators.anomaly_rate == 0.3
    assert changed.generators.seed == settings.generators.seed
    assert settings.generators.anomaly_rate == load_settings().generators.anomaly_rate
