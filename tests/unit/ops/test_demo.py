"""The demo's pure parts: which IPs get history, the seeded CPU windows, the rate override."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pyspark.sql import SparkSession

from generators.registry import make_generator
from lambdawatch.core.airflow_api import AirflowClient
from lambdawatch.core.catalog import CPU_WINDOW_COLUMNS
from lambdawatch.core.settings import load_settings
from lambdawatch.ops.demo import (
    DAGS_AFTER_FEED,
    FORECAST_LEAD,
    WATCH_PRIORITY,
    Readiness,
    cpu_window_rows,
    feed_end,
    incidents_line,
    ips_to_watch,
    judgeable,
    judged_detections,
    judgement,
    readiness_line,
    run_dag_stages,
    with_anomaly_rate,
)
from lambdawatch.pipelines.quality import DETECTOR_TARGETS, Interval, Label, Quality
from tests.unit.pipelines.test_backtest import reference_settings

START = datetime(2026, 4, 1, 12, tzinfo=UTC)
FEED = START
HALF_SECOND = timedelta(milliseconds=500)


def test_a_fixed_number_of_ips_with_traffic_anomalies_during_the_feed_get_history() -> None:
    settings = with_anomaly_rate(load_settings(), 0.5)
    start_ms = int(START.timestamp() * 1000)
    labels = make_generator("ip", settings).generate(start_ms, start_ms + 10 * 60_000).labels
    judged_from = START + FORECAST_LEAD  # earlier samples arrive before any forecast exists
    judged = [
        label
        for label in labels
        if label["kind"] in DETECTOR_TARGETS["forecast_deviations"]
        and datetime.fromisoformat(label["end_ts"].replace("Z", "+00:00")) > judged_from
    ]
    scanned = {label["entity"] for label in judged if label["kind"] == "port_scan"}
    assert len(scanned) > 3, "at this rate the generator injects scans in 10 minutes"
    watched = ips_to_watch(settings, START, 10, count=3)
    assert len(watched) == 3  # one Prophet fit per feature each: the count is a budget
    assert set(watched) <= scanned  # scans first: the network dashboard lists them
    fewer = ips_to_watch(with_anomaly_rate(settings, 0.01), START, 10, count=3)
    assert len(fewer) == len(set(fewer)) == 3  # topped up with the configured IPs
    assert set(WATCH_PRIORITY) == DETECTOR_TARGETS["forecast_deviations"]


def test_without_anomalies_the_first_configured_ips_are_watched() -> None:
    settings = with_anomaly_rate(load_settings(), 0.0)
    assert ips_to_watch(settings, START, 5, count=3) == settings.ips.resolved_addresses[:3]


def test_anomaly_rate_override_leaves_the_rest_alone() -> None:
    settings = load_settings()
    changed = with_anomaly_rate(settings, 0.3)
    assert changed.generators.anomaly_rate == 0.3
    assert changed.generators.seed == settings.generators.seed
    assert settings.generators.anomaly_rate == load_settings().generators.anomaly_rate


def test_only_episodes_a_detector_could_have_caught_are_judged() -> None:
    start = datetime(2026, 4, 1, 12, tzinfo=UTC)

    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    ready = Readiness(
        feed_started=start,
        forecast_ips=frozenset({"10.0.0.1"}),
        forecast_at=at(2),
        model_at=at(1),
        baselines_at=at(0.5),
    )
    labels = [
        Label("10.0.0.1", "port_scan", at(0), at(3)),  # forecast written while it ran: kept
        Label("10.0.0.1", "ddos", at(0), at(1.5)),  # over before the forecast existed
        Label("10.0.0.2", "port_scan", at(0), at(3)),  # no forecast for this IP
        Label("edge-1", "error_storm", at(0), at(2)),  # the model came mid-storm: kept
        Label("edge-2", "latency_spike", at(-1), at(0.5)),  # over before any model
        Label("srv-1", "outage", at(1), at(2)),  # began while the feed ran: kept
        Label("srv-2", "outage", at(-1), at(2)),  # silent since before the feed
        Label("srv-3", "cpu_spike", at(-1), at(0.1)),  # over before any baseline
        Label("srv-4", "cpu_spike", at(0), at(1)),  # baselines came mid-spike: kept
        Label("srv-5", "cpu_spike_moderate", at(-1), at(0)),  # no detector's: kept for precision
        Label("srv-6", "drift", at(-1), at(0.2)),  # the CPU detector's, over before baselines
    ]
    kept = judgeable(labels, ready)
    assert [(label.entity, label.kind) for label in kept] == [
        ("10.0.0.1", "port_scan"),
        ("edge-1", "error_storm"),
        ("srv-1", "outage"),
        ("srv-4", "cpu_spike"),
        ("srv-5", "cpu_spike_moderate"),
    ]
    assert judgeable(labels[3:5], Readiness(start)) == []  # no model promoted at all
    assert judgeable(labels[8:], Readiness(start)) == [labels[9]]  # no baselines at all


def test_findings_before_a_detector_could_judge_are_shown_but_not_scored() -> None:
    start = datetime(2026, 4, 1, 12, tzinfo=UTC)
    ready = Readiness(feed_started=start, baselines_at=start + timedelta(minutes=1))
    early = Interval("srv-1", start + timedelta(seconds=10), start + timedelta(seconds=11))
    late = Interval("srv-1", start + timedelta(minutes=2), start + timedelta(minutes=2, seconds=1))
    kept = judged_detections(
        {"cpu_anomalies": [early, late], "silence": [early], "cdn_clusters": [late]}, ready
    )
    # the CPU fallback's finding, before baselines, is dropped; silence judges from the start;
    # with no model promoted, no CDN finding is the detector's own
    assert kept == {"cpu_anomalies": [late], "silence": [early], "cdn_clusters": []}


def test_seeded_cpu_windows_are_what_the_cpu_detector_writes_before_any_baseline(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo seeds with the speed layer's own detector (``detectors.cpu``), run in batch."""
    settings = reference_settings(monkeypatch)  # fallback 45 ± 12; WARN > 1 σ, ERROR > 2 σ
    events = [
        {"event_id": "a", "server_id": "srv-1", "timestamp": "2026-04-01T12:00:00.000Z",
         "cpu_usage": 40.0},
        {"event_id": "b", "server_id": "srv-1", "timestamp": "2026-04-01T12:00:00.250Z",
         "cpu_usage": 50.0},
        {"event_id": "b", "server_id": "srv-1", "timestamp": "2026-04-01T12:00:00.250Z",
         "cpu_usage": 50.0},  # re-sent: counted once
        {"event_id": "c", "server_id": "srv-1", "timestamp": "2026-04-01T12:00:00.500Z",
         "cpu_usage": 99.0},
        {"event_id": "d", "server_id": "srv-2", "timestamp": "2026-04-01T12:00:00.499Z",
         "cpu_usage": 60.0},
    ]  # fmt: skip
    rows = sorted(
        cpu_window_rows(spark, events, settings).to_pylist(),
        key=lambda row: (row["server_id"], row["window_start"]),
    )
    assert [tuple(row) for row in rows] == [CPU_WINDOW_COLUMNS] * 3
    assert rows == [
        {"server_id": "srv-1", "window_start": START, "window_end": START + HALF_SECOND,
         "mean_cpu": 45.0, "std_cpu": pytest.approx(7.0710678), "samples": 2,
         "expected_mean": 45.0, "expected_std": 12.0, "z": 0.0, "status": "SAFE"},
        {"server_id": "srv-1", "window_start": START + HALF_SECOND,
         "window_end": START + 2 * HALF_SECOND, "mean_cpu": 99.0, "std_cpu": None,
         "samples": 1, "expected_mean": 45.0, "expected_std": 12.0, "z": 4.5,
         "status": "ERROR"},
        {"server_id": "srv-2", "window_start": START, "window_end": START + HALF_SECOND,
         "mean_cpu": 60.0, "std_cpu": None, "samples": 1, "expected_mean": 45.0,
         "expected_std": 12.0, "z": 1.25, "status": "WARN"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("detector", "quality", "ready", "line"),
    [
        (
            "cpu_anomalies", Quality(0, 0, 0, 0), Readiness(FEED),
            "not judged: the demo ended before baselines existed",
        ),
        (
            "cpu_anomalies", Quality(0, 0, 0, 0), Readiness(FEED, baselines_at=FEED),
            "nothing to judge: no labelled episode has ended and no ERROR since baselines exist",
        ),
        (
            "cpu_anomalies", Quality(0, 0, 10, 9), Readiness(FEED, baselines_at=FEED),
            "ERROR precision 0.90, recall not judged: no labelled episode has ended since "
            "baselines exist",
        ),
        (
            "silence", Quality(4, 4, 5, 4), Readiness(FEED),
            "ERROR precision 0.80, recall 1.00 (4 labelled episodes judged)",
        ),
        (
            "cdn_clusters", Quality(2, 1, 0, 0), Readiness(FEED, model_at=FEED),
            "no ERROR finding since a model is promoted, recall 0.50 (2 labelled episodes "
            "judged)",
        ),
    ],
)  # fmt: skip
def test_the_report_says_why_nothing_was_judged_instead_of_a_zero(
    detector: str, quality: Quality, ready: Readiness, line: str
) -> None:
    assert judgement(detector, quality, ready) == line


def test_the_report_judges_incidents() -> None:
    assert incidents_line({"open": 2, "resolved": 1}, Quality(3, 3, 3, 2)) == (
        "3 opened (2 open, 1 resolved); precision 0.67, recall 1.00 (3 labelled episodes judged)"
    )
    assert incidents_line({}, Quality(0, 0, 0, 0)) == "0 opened; nothing to judge yet"
    assert incidents_line({"open": 3}, Quality(1, 1, 3, 3), continued=2) == (
        "1 opened, 2 continued from before (3 open); precision 1.00, recall 1.00 "
        "(1 labelled episodes judged)"
    )


def test_the_report_says_when_each_model_backed_detector_began_judging() -> None:
    ready = Readiness(
        FEED,
        baselines_at=FEED - timedelta(hours=1),
        forecast_at=FEED + timedelta(seconds=150),
    )
    assert readiness_line(ready) == (
        "cpu_anomalies from the start, forecast_deviations 150 s in, cdn_clusters never"
    )


@pytest.mark.parametrize(
    ("clustering_after", "forecast_after", "ends_after"),
    [
        (timedelta(0), timedelta(seconds=30), timedelta(minutes=3)),  # both judged long enough
        (timedelta(minutes=2), timedelta(minutes=3), timedelta(minutes=4)),  # forecast late
        (None, timedelta(seconds=30), timedelta(minutes=6)),  # no model yet: at most the cap
        (timedelta(minutes=9), None, timedelta(minutes=6)),
    ],
)
def test_the_demo_feeds_on_until_the_models_have_judged_live_events(
    clustering_after: timedelta | None, forecast_after: timedelta | None, ends_after: timedelta
) -> None:
    planned = FEED + timedelta(minutes=3)
    clustering, forecast = (
        None if after is None else FEED + after for after in (clustering_after, forecast_after)
    )
    assert feed_end(planned, clustering, forecast) == FEED + ends_after


class StageClient:
    """Airflow's trigger and wait, recorded: a run of ``SIDE_BY_SIDE`` ends only once all of
    them have been triggered, so running them one after another breaks the barrier."""

    def __init__(self, side_by_side: int) -> None:
        self.barrier = threading.Barrier(side_by_side, timeout=5)
        self.events: list[str] = []
        self.lock = threading.Lock()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        assert not paused

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        with self.lock:
            self.events.append(f"trigger {dag_id}")
        return f"run-{dag_id}"

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        if dag_id != "backtest":
            self.barrier.wait()
        with self.lock:
            self.events.append(f"finished {dag_id}")
        return "success"


def test_the_dags_after_the_feed_run_side_by_side_and_the_backtest_after_them() -> None:
    first, second = DAGS_AFTER_FEED
    client = StageClient(len(first))
    stages: list[list[str]] = []
    runs = run_dag_stages(
        cast(AirflowClient, client), DAGS_AFTER_FEED, timeout=10,
        on_stage=lambda done: stages.append(sorted(done)),
    )  # fmt: skip
    assert second == ("backtest",)
    assert stages == [sorted(first), ["backtest"]]
    assert runs == {dag: {"run_id": f"run-{dag}", "state": "success"} for dag in first + second}
    finished_first = max(client.events.index(f"finished {dag}") for dag in first)
    assert client.events.index("trigger backtest") > finished_first
