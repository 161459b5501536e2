"""Detection quality against the generators' ground truth: pure functions, no I/O.

An episode counts as detected when at least one anomaly window of the right entity overlaps
it; a detection counts as true when it overlaps any labelled episode of its entity (labels of
every kind, so flagging a real but different anomaly is not a false positive).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Interval:
    entity: str
    start: datetime
    end: datetime  # exclusive

    def overlaps(self, other: Interval) -> bool:
        return self.entity == other.entity and self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Quality:
    episodes: int
    detected_episodes: int
    detections: int
    true_detections: int

    @property
    def recall(self) -> float:
        return self.detected_episodes / self.episodes if self.episodes else 1.0

    @property
    def precision(self) -> float:
        return self.true_detections / self.detections if self.detections else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def __add__(self, other: Quality) -> Quality:
        """Pooled counts: several detectors (or runs) judged as one."""
        return Quality(
            self.episodes + other.episodes,
            self.detected_episodes + other.detected_episodes,
            self.detections + other.detections,
            self.true_detections + other.true_detections,
        )


def score(
    targets: Iterable[Interval], all_labels: Iterable[Interval], detections: Iterable[Interval]
) -> Quality:
    """Recall over ``targets`` (the kinds a detector must catch), precision against every label."""
    by_entity: dict[str, list[Interval]] = defaultdict(list)
    labels = list(all_labels)
    for label in labels:
        by_entity[label.entity].append(label)
    found = list(detections)
    found_by_entity: dict[str, list[Interval]] = defaultdict(list)
    for detection in found:
        found_by_entity[detection.entity].append(detection)
    wanted = list(targets)
    detected = sum(1 for t in wanted if any(t.overlaps(d) for d in found_by_entity[t.entity]))
    true = sum(1 for d in found if any(d.overlaps(label) for label in by_entity[d.entity]))
    return Quality(len(wanted), detected, len(found), true)


# What each detector is meant to catch, as ground-truth kinds (recall is measured over these;
# precision against every label of the entity, as ``score`` does).
DETECTOR_TARGETS: dict[str, frozenset[str]] = {
    # a drift raises CPU by up to 45 points over 10 to 20 minutes: only this detector sees
    # CPU. A moderate spike (2σ for a quarter of a second) is labelled but not a target.
    "cpu_anomalies": frozenset({"cpu_spike", "stuck_at_100", "drift"}),
    "silence": frozenset({"outage"}),
    "cdn_clusters": frozenset({"error_storm", "cache_collapse", "latency_spike"}),
    "forecast_deviations": frozenset({"port_scan", "exfiltration", "ddos"}),
}


def detector_for(kind: str) -> str | None:
    """The detector meant to catch a ground-truth kind; ``None`` for kinds no detector targets
    (they still count for precision)."""
    return next((d for d, kinds in DETECTOR_TARGETS.items() if kind in kinds), None)


@dataclass(frozen=True)
class Label:
    """A ground-truth episode (a row of ``ground_truth``)."""

    entity: str
    kind: str
    start: datetime
    end: datetime

    @property
    def interval(self) -> Interval:
        return Interval(self.entity, self.start, self.end)


def detector_quality(
    labels: Iterable[Label],
    detections: dict[str, list[Interval]],
    horizon: datetime | None = None,
) -> dict[str, Quality]:
    """Precision and recall per detector against the labels.

    Episodes ending after ``horizon`` (what the stream cannot have judged yet: its watermark)
    are not counted as missed.
    """
    every = list(labels)
    intervals = [label.interval for label in every]
    result = {}
    for detector, kinds in DETECTOR_TARGETS.items():
        targets = [
            label.interval
            for label in every
            if label.kind in kinds and (horizon is None or label.end <= horizon)
        ]
        result[detector] = score(targets, intervals, detections.get(detector, []))
    return result


@dataclass(frozen=True)
class EpisodeVerdict:
    """A labelled episode and the end of the first finding that overlaps it (when the
    detector had said so: a window's verdict is known at its end)."""

    label: Label
    first_finding: datetime | None

    @property
    def time_to_detect(self) -> timedelta | None:
        if self.first_finding is None:
            return None
        return max(self.first_finding - self.label.start, timedelta(0))


def judge_episodes(labels: Iterable[Label], detections: Iterable[Interval]) -> list[EpisodeVerdict]:
    """Each episode with its first overlapping finding (the overlap rule of ``score``)."""
    by_entity: dict[str, list[Interval]] = defaultdict(list)
    for detection in detections:
        by_entity[detection.entity].append(detection)
    verdicts = []
    for label in labels:
        ends = [d.end for d in by_entity[label.entity] if label.interval.overlaps(d)]
        verdicts.append(EpisodeVerdict(label, min(ends, default=None)))
    return verdicts


@dataclass(frozen=True)
class IncidentSpan:
    """An incident as judged: its entities and its span (first to last finding)."""

    entities: tuple[str, ...]
    start: datetime
    end: datetime
    detectors: tuple[str, ...] = ()

    def intervals(self) -> list[Interval]:
        return [Interval(entity, self.start, self.end) for entity in self.entities]


def false_incidents(
    incidents: Iterable[IncidentSpan], all_labels: Iterable[Interval]
) -> list[IncidentSpan]:
    """The incidents none of whose entities has a labelled episode (of any kind) during
    their span."""
    labels = list(all_labels)
    return [
        i
        for i in incidents
        if not any(s.overlaps(label) for s in i.intervals() for label in labels)
    ]


def incident_quality(
    incidents: Iterable[IncidentSpan], targets: Iterable[Interval], all_labels: Iterable[Interval]
) -> Quality:
    """Incident-level precision and recall: an incident is true when any of its entities has
    a labelled episode (of any kind) during its span; an episode of ``targets`` is detected
    when an incident holding its entity overlaps it. What an operator is paged for, judged."""
    found = list(incidents)
    wanted = list(targets)
    true = len(found) - len(false_incidents(found, all_labels))
    spans = [s for i in found for s in i.intervals()]
    detected = sum(1 for t in wanted if any(t.overlaps(s) for s in spans))
    return Quality(len(wanted), detected, len(found), true)
