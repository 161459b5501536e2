"""Tuning thresholds and incident rules on a recorded run (``pipelines.tuning``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lambdawatch.pipelines.quality import Label
from lambdawatch.pipelines.tuning import (
    CpuWindow,
    Grid,
    Recorded,
    Thresholds,
    cpu_findings,
    forecast_findings,
    scorecard,
    tune,
)
from spark_apps.transforms.incidents import Signal

T0 = datetime(2026, 2, 2, 12, tzinfo=UTC)
HALF_SECOND = timedelta(milliseconds=500)
SHIPPED = Thresholds(1.0, 2.0, 1.0, 2.0, 3, timedelta(minutes=1), timedelta(minutes=5))


def window(entity: str, second: float, z: float) -> CpuWindow:
    start = T0 + timedelta(seconds=second)
    return CpuWindow(entity, start, start + HALF_SECOND, 40 + 10 * z, 40.0, z)


def ip_finding(
    second: float, score: float, severity: str = "WARN", ip: str = "198.18.0.7", value: float = 9.0
) -> Signal:
    at = T0 + timedelta(seconds=second)
    return Signal("forecast_deviations", ip, "unq_dst_ip", at, at, value, 5.0, score,
                  severity, "run-1", at)  # fmt: skip


def recorded_run() -> Recorded:
    """srv-1 spikes for a minute (z 7); every server's noise reaches z 1.5 to 2.4 now and then."""
    windows = [window("srv-1", 600 + s / 2, 7.0) for s in range(120)]
    for n, entity in enumerate(("srv-1", "srv-2", "srv-3")):
        windows += [window(entity, s * 5 + n, 1.5 + (s % 10) / 10) for s in range(700)]
    spike = Label("srv-1", "cpu_spike", T0 + timedelta(seconds=600), T0 + timedelta(seconds=660))
    return Recorded(
        start=T0,
        horizon=T0 + timedelta(hours=1),
        labels=(spike,),
        cpu_windows=tuple(windows),
        findings=(),
        groups={},
        entity_hours=3.0,
    )


def test_cpu_findings_follow_the_cpu_rule() -> None:
    windows = [window("srv-1", 0, 0.9), window("srv-1", 1, 1.5), window("srv-1", 2, 3.0)]
    found = cpu_findings(windows, warn_sigma=1.0, error_sigma=2.0)
    assert [(s.severity, s.score) for s in found] == [("WARN", 1.5), ("ERROR", 3.0)]


def test_a_warn_factor_keeps_only_ip_findings_beyond_it_and_every_error() -> None:
    found = [ip_finding(0, 1.1), ip_finding(1, 1.6), ip_finding(2, 2.5, "ERROR")]
    assert [s.score for s in forecast_findings(found, 1.5, 2.0)] == [1.6, 2.5]


def test_an_error_factor_reclassifies_ip_findings_on_the_error_side_only() -> None:
    found = [
        ip_finding(0, 2.5, "ERROR"),
        ip_finding(1, 3.5, "ERROR"),
        ip_finding(2, 3.5, "WARN", value=1.0),  # below the forecast: never ERROR "above"
        ip_finding(3, 1.2),
    ]
    judged = forecast_findings(found, 1.5, 3.0, "above")
    assert [(s.score, s.severity) for s in judged] == [
        (2.5, "WARN"), (3.5, "ERROR"), (3.5, "WARN"),
    ]  # fmt: skip
    both = forecast_findings(found, 1.5, 3.0, "both")
    assert [s.severity for s in both] == ["WARN", "ERROR", "ERROR"]


def test_tuning_raises_the_ip_error_factor_above_the_noise() -> None:
    """Other IPs' ordinary scatter reaches 2.5 half-widths; the scan on 198.18.0.7 is at 8."""
    run = recorded_run()
    scan = Label(
        "198.18.0.7", "port_scan", T0 + timedelta(seconds=600), T0 + timedelta(seconds=900)
    )
    noise = [ip_finding(60 * m, 2.5, "ERROR", ip=f"198.18.1.{m}") for m in range(20)]
    found = [ip_finding(630 + 60 * m, 8.0, "ERROR") for m in range(4)]
    run = Recorded(
        **{**run.__dict__, "labels": (*run.labels, scan), "findings": tuple(noise + found)}
    )
    chosen = tune(run, SHIPPED, Grid(warn_count=(3,), quiet=(timedelta(minutes=2),)))
    assert chosen.ip_error_factor == 3.0  # the lowest that leaves the noise out
    assert chosen.ip_warn_factor < chosen.ip_error_factor
    tuned = scorecard(run, chosen)["error"]["forecast_deviations"]
    assert (tuned["precision"], tuned["recall"]) == (1.0, 1.0)
    assert scorecard(run, SHIPPED)["error"]["forecast_deviations"]["precision"] == 0.167


def test_the_ip_error_factor_is_raised_when_lone_errors_open_false_incidents() -> None:
    """The scan's findings sit at 2.5 half-widths, as do three other IPs' lone samples: as
    findings, ERROR at 2 is best (3 would catch no scan ERROR at all); as incidents, each lone
    ERROR opens one of its own while the scan's WARNs alone make the WARN count."""
    run = recorded_run()
    scan = Label(
        "198.18.0.7", "port_scan", T0 + timedelta(seconds=600), T0 + timedelta(seconds=660)
    )
    noise = [ip_finding(1200 + 300 * m, 2.5, "ERROR", ip=f"198.18.1.{m}") for m in range(3)]
    found = [ip_finding(610 + 10 * m, 2.5, "ERROR") for m in range(4)]
    run = Recorded(
        **{**run.__dict__, "cpu_windows": (), "labels": (scan,), "findings": (*noise, *found)}
    )
    grid = Grid(ip_error_factor=(2.0, 3.0), warn_count=(3,), quiet=(timedelta(minutes=2),))
    chosen = tune(run, SHIPPED, grid)
    assert chosen.ip_error_factor == 3.0
    at_two = scorecard(run, replace(chosen, ip_error_factor=2.0))
    assert at_two["error"]["forecast_deviations"]["recall"] == 1.0
    assert at_two["incidents"]["precision"] == 0.25
    tuned = scorecard(run, chosen)
    assert tuned["error"]["forecast_deviations"]["recall"] == 0.0
    assert (tuned["incidents"]["precision"], tuned["incidents"]["recall"]) == (1.0, 1.0)


def test_tuning_raises_the_bars_above_the_noise_and_still_catches_the_spike() -> None:
    run = recorded_run()
    chosen = tune(run, SHIPPED, Grid(warn_count=(2, 3), quiet=(timedelta(minutes=2),)))
    assert chosen.cpu_warn_sigma >= 2.5  # the noise reaches 2.4
    assert chosen.cpu_error_sigma > chosen.cpu_warn_sigma
    shipped, tuned = scorecard(run, SHIPPED), scorecard(run, chosen)
    assert shipped["incidents"]["precision"] < 0.5  # the noise opens incidents of its own
    assert tuned["incidents"] == {
        "episodes": 1, "detected_episodes": 1, "detections": 1, "true_detections": 1,
        "precision": 1.0, "recall": 1.0, "f1": 1.0,
    }  # fmt: skip
    assert tuned["warn_or_error"]["cpu_anomalies"]["precision"] == 1.0
    assert tuned["false_incidents_per_100_entity_hours"] == 0.0
    assert shipped["false_incidents_per_100_entity_hours"] > 0


def test_a_record_cut_at_the_shipped_ip_factor_keeps_that_factor() -> None:
    """Findings were recorded only beyond 1.5 half-widths: every lower factor reads the same
    record, so tuning keeps 1.5 rather than calling 1.0 a choice."""
    run = recorded_run()
    run = Recorded(
        **{**run.__dict__, "findings": (ip_finding(0, 1.6), ip_finding(1, 2.5, "ERROR"))}
    )
    chosen = tune(
        run,
        SHIPPED,
        Grid(ip_warn_factor=(1.0, 1.25, 1.5), warn_count=(3,), quiet=(timedelta(minutes=2),)),
    )
    assert chosen.ip_warn_factor == 1.5
