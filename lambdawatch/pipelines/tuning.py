"""Choosing detection thresholds and incident rules on one recorded run, and judging them on
another: pure functions, no I/O.

A run is recorded once through the real stack (``Recorded``: every CPU window with its z, the
other detectors' findings, each entity's datacenter or PoP, and the ground truth). Changing a
threshold then only re-reads that record: a window is WARN or ERROR by its z (the CPU rule of
``spark_apps.detectors.cpu``), an IP finding is WARN beyond the WARN factor and ERROR beyond the
ERROR factor on the ERROR side (the rule of ``spark_apps.detectors.forecast_deviations``), and
incidents are grouped by the streaming query's own rules
(``spark_apps.transforms.incidents.replay``). Tuning is coordinate search:
each detector's thresholds for the best F1 of its findings against the labels it targets,
then the grouping rules for the best incident F1. Labels are read only to score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from itertools import product
from typing import Any, NamedTuple

from lambdawatch.core.settings import Settings
from lambdawatch.pipelines.quality import (
    DETECTOR_TARGETS,
    IncidentSpan,
    Interval,
    Label,
    Quality,
    detector_for,
    incident_quality,
    score,
)
from spark_apps.transforms.incidents import IncidentRules, Signal, replay

CPU = "cpu_anomalies"
CPU_METRIC = "cpu_usage"
FORECAST = "forecast_deviations"


class CpuWindow(NamedTuple):
    """A judged CPU window as ``rt_cpu_windows`` keeps it, whatever its status."""

    entity: str
    window_start: datetime
    window_end: datetime
    value: float
    expected: float
    z: float


@dataclass(frozen=True)
class Recorded:
    """One run through the stack: what the detectors saw and said, and the ground truth."""

    start: datetime  # the evaluated hour
    horizon: datetime  # episodes ending later were not judgeable yet
    labels: tuple[Label, ...]
    cpu_windows: tuple[CpuWindow, ...]
    findings: tuple[Signal, ...]  # every detector but the CPU one, as recorded
    groups: dict[str, tuple[str, str]]
    entity_hours: float  # entities watched × hours judged: the base of the false-incident rate


@dataclass(frozen=True)
class Thresholds:
    """What tuning chooses: ``models.cpu_anomaly``'s sigmas, the IP forecast's WARN and ERROR
    factors (``models.prophet.deviation_warn_factor``, ``deviation_error_factor``) and the
    ``incidents`` rules. The ERROR side (``deviation_error_direction``) is a policy, not tuned."""

    cpu_warn_sigma: float
    cpu_error_sigma: float
    ip_warn_factor: float
    ip_error_factor: float
    warn_count: int
    warn_window: timedelta
    quiet: timedelta
    ip_error_direction: str = "above"

    @property
    def rules(self) -> IncidentRules:
        return IncidentRules(self.warn_count, self.warn_window, self.quiet)

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("warn_window", "quiet"):
            values[name] = f"PT{int(values[name].total_seconds())}S"
        return values


def thresholds_of(settings: Settings) -> Thresholds:
    """The thresholds ``config.json`` ships."""
    models, incidents = settings.models, settings.incidents
    return Thresholds(
        models.cpu_anomaly.warn_sigma,
        models.cpu_anomaly.error_sigma,
        models.prophet.deviation_warn_factor,
        models.prophet.deviation_error_factor,
        incidents.warn_count,
        incidents.warn_window,
        incidents.quiet,
        models.prophet.deviation_error_direction,
    )


@dataclass(frozen=True)
class Grid:
    """The candidates each coordinate is searched over."""

    cpu_warn_sigma: Sequence[float] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
    cpu_error_sigma: Sequence[float] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    ip_warn_factor: Sequence[float] = (1.0, 1.25, 1.5, 1.75)
    ip_error_factor: Sequence[float] = (2.0, 3.0, 4.0, 6.0)
    warn_count: Sequence[int] = (2, 3, 4, 6)
    warn_window: Sequence[timedelta] = (timedelta(minutes=1), timedelta(minutes=2))
    quiet: Sequence[timedelta] = (timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=10))


def cpu_findings(
    windows: Iterable[CpuWindow], warn_sigma: float, error_sigma: float
) -> list[Signal]:
    """The windows the CPU rule flags at these sigmas (``classify_cpu``: z above the bar)."""
    found = []
    for w in windows:
        if w.z > warn_sigma:
            severity = "ERROR" if w.z > error_sigma else "WARN"
            found.append(
                Signal(CPU, w.entity, CPU_METRIC, w.window_start, w.window_end, w.value,
                       w.expected, w.z, severity, "", w.window_end)
            )  # fmt: skip
    return found


def forecast_findings(
    findings: Iterable[Signal],
    warn_factor: float,
    error_factor: float,
    error_direction: str = "above",
) -> list[Signal]:
    """IP findings as ``deviation_columns`` judges them at these factors: beyond
    ``warn_factor`` half-widths WARN, beyond ``error_factor`` on the ERROR side ERROR;
    others' findings unchanged."""
    kept = []
    for s in findings:
        if s.detector != FORECAST:
            kept.append(s)
            continue
        score = s.score or 0.0
        above = (s.value or 0.0) > (s.expected or 0.0)
        on_error_side = {"above": above, "below": not above}.get(error_direction, True)
        if score > error_factor and on_error_side:
            kept.append(replace(s, severity="ERROR"))
        elif score > warn_factor:
            kept.append(replace(s, severity="WARN"))
    return kept


def findings_at(recorded: Recorded, thresholds: Thresholds) -> list[Signal]:
    cpu = cpu_findings(recorded.cpu_windows, thresholds.cpu_warn_sigma, thresholds.cpu_error_sigma)
    return cpu + forecast_findings(
        recorded.findings,
        thresholds.ip_warn_factor,
        thresholds.ip_error_factor,
        thresholds.ip_error_direction,
    )


def _targets(recorded: Recorded, detector: str) -> list[Interval]:
    kinds = DETECTOR_TARGETS[detector]
    return [
        label.interval
        for label in recorded.labels
        if label.kind in kinds and label.end <= recorded.horizon
    ]


def _judged(found: Iterable[Signal], recorded: Recorded, severities: set[str]) -> list[Interval]:
    return [
        Interval(s.entity, s.window_start, s.window_end)
        for s in found
        if s.severity in severities and recorded.start <= s.window_start < recorded.horizon
    ]


def detector_scores(
    recorded: Recorded, found: Iterable[Signal], severities: set[str]
) -> dict[str, Quality]:
    """Per detector, its findings of ``severities`` against only the labels it targets."""
    flagged = list(found)
    result = {}
    for detector in DETECTOR_TARGETS:
        targets = _targets(recorded, detector)
        mine = _judged((s for s in flagged if s.detector == detector), recorded, severities)
        result[detector] = score(targets, targets, mine)
    return result


def false_incident_rate(recorded: Recorded, incidents: Quality) -> float:
    """False incidents per 100 entity-hours."""
    false = incidents.detections - incidents.true_detections
    return round(100 * false / recorded.entity_hours, 2) if recorded.entity_hours else 0.0


def incidents_at(recorded: Recorded, thresholds: Thresholds) -> Quality:
    """Incident precision and recall (``incident_quality``) of the grouping rules replayed
    over the findings these thresholds give."""
    incidents = replay(findings_at(recorded, thresholds), recorded.groups, thresholds.rules)
    spans = [
        IncidentSpan(i.entities, i.first_seen, i.last_seen)
        for i in incidents
        if recorded.start <= i.first_seen < recorded.horizon
    ]
    judged = [
        label.interval
        for label in recorded.labels
        if detector_for(label.kind) and label.end <= recorded.horizon
    ]
    return incident_quality(spans, judged, [label.interval for label in recorded.labels])


def tune(recorded: Recorded, start: Thresholds, grid: Grid | None = None) -> Thresholds:
    """Coordinate search from ``start``: the CPU ERROR sigma and the IP ERROR factor for the
    best ERROR F1, the CPU WARN sigma and the IP WARN factor for the best WARN-or-ERROR F1
    (each against the labels its detector targets), then the incident rules for the best
    incident F1, together with the IP ERROR factor again: one IP ERROR opens an incident on
    its own, so its factor is also an incident rule (one sample a minute never makes the
    WARN count within the window). Ties go to the earlier candidate of the grid (the IP WARN
    factor's: to the highest; the IP ERROR factor's: to the one the findings chose)."""
    grid = grid or Grid()
    windows = recorded.cpu_windows
    every = {"WARN", "ERROR"}

    def cpu_f1(warn: float, error: float, severities: set[str]) -> float:
        found = _judged(cpu_findings(windows, warn, error), recorded, severities)
        targets = _targets(recorded, CPU)
        return score(targets, targets, found).f1

    error = max(grid.cpu_error_sigma, key=lambda e: cpu_f1(min(grid.cpu_warn_sigma), e, {"ERROR"}))
    warn = max((w for w in grid.cpu_warn_sigma if w < error), key=lambda w: cpu_f1(w, error, every))

    ip_records = [s for s in recorded.findings if s.detector == FORECAST]
    direction = start.ip_error_direction

    def ip_f1(warn: float, error: float, severities: set[str]) -> float:
        found = forecast_findings(ip_records, warn, error, direction)
        return detector_scores(recorded, found, severities)[FORECAST].f1

    lowest = min(grid.ip_warn_factor)
    ip_error = max(grid.ip_error_factor, key=lambda e: ip_f1(lowest, e, {"ERROR"}))
    chosen = replace(start, cpu_warn_sigma=warn, cpu_error_sigma=error, ip_error_factor=ip_error)
    # ties to the highest factor: a run records only findings beyond the factor it shipped, so
    # every lower factor reads the same record and must not look like a choice
    factors = sorted((f for f in grid.ip_warn_factor if f < ip_error), reverse=True)
    ip_warn = max(factors, key=lambda f: ip_f1(f, ip_error, every))
    chosen = replace(chosen, ip_warn_factor=ip_warn)
    errors = [ip_error, *(e for e in grid.ip_error_factor if e > ip_warn and e != ip_error)]
    candidates = [
        replace(chosen, warn_count=count, warn_window=window, quiet=quiet, ip_error_factor=e)
        for count, window, quiet, e in product(
            grid.warn_count, grid.warn_window, grid.quiet, errors
        )
    ]
    return max(candidates, key=lambda c: incidents_at(recorded, c).f1)


def scorecard(recorded: Recorded, thresholds: Thresholds) -> dict[str, Any]:
    """The recorded run judged at ``thresholds``: findings per detector and severity against
    their targeted labels, and incidents."""
    found = findings_at(recorded, thresholds)
    incidents = incidents_at(recorded, thresholds)
    views = {"error": {"ERROR"}, "warn_or_error": {"WARN", "ERROR"}}
    return {
        "thresholds": thresholds.as_json(),
        **{
            view: {d: quality_row(q) for d, q in detector_scores(recorded, found, kept).items()}
            for view, kept in views.items()
        },
        "incidents": quality_row(incidents),
        "false_incidents_per_100_entity_hours": false_incident_rate(recorded, incidents),
    }


def quality_row(quality: Quality) -> dict[str, Any]:
    return {
        "episodes": quality.episodes,
        "detected_episodes": quality.detected_episodes,
        "detections": quality.detections,
        "true_detections": quality.true_detections,
        "precision": round(quality.precision, 3),
        "recall": round(quality.recall, 3),
        "f1": round(quality.f1, 3),
    }
