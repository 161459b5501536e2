"""Precision and recall against ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdawatch.pipelines.quality import IncidentSpan, Interval, Quality, incident_quality, score

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _iv(entity: str, start_s: float, end_s: float) -> Interval:
    return Interval(entity, T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s))


@pytest.mark.parametrize(
    ("detections", "recall", "precision"),
    [
        ([], 0.0, 1.0),
        ([_iv("a", 10, 11)], 0.5, 1.0),
        ([_iv("a", 10, 11), _iv("b", 20, 21)], 1.0, 1.0),
        ([_iv("a", 10, 11), _iv("b", 20, 21), _iv("a", 100, 101)], 1.0, 2 / 3),
        ([_iv("b", 10, 11)], 0.0, 0.0),  # right time, wrong entity
        ([_iv("a", 15, 16)], 0.5, 1.0),  # the last second of a target still counts
    ],
)
def test_recall_and_precision(detections: list[Interval], recall: float, precision: float) -> None:
    targets = [_iv("a", 10, 16), _iv("b", 20, 25)]
    quality = score(targets, targets, detections)
    assert quality.recall == pytest.approx(recall)
    assert quality.precision == pytest.approx(precision)


def test_detection_of_another_labelled_kind_is_not_a_false_positive() -> None:
    spike, drift = _iv("a", 0, 5), _iv("a", 50, 100)
    quality = score([spike], [spike, drift], [_iv("a", 1, 2), _iv("a", 60, 61)])
    assert (quality.recall, quality.precision, quality.f1) == (1.0, 1.0, 1.0)


def test_touching_intervals_do_not_overlap() -> None:
    assert not _iv("a", 0, 10).overlaps(_iv("a", 10, 20))
    assert _iv("a", 0, 10).overlaps(_iv("a", 9.5, 20))


def test_detector_quality_scores_each_detector_on_its_own_kinds() -> None:
    from lambdawatch.pipelines.quality import Label, detector_quality

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    labels = [
        Label("srv-1", "cpu_spike", t0, t0 + timedelta(seconds=5)),
        Label("srv-2", "outage", t0, t0 + timedelta(minutes=1)),
        Label("srv-3", "outage", t0 + timedelta(hours=2), t0 + timedelta(hours=3)),  # too late
    ]
    found = {
        "cpu_anomalies": [Interval("srv-1", t0, t0 + timedelta(seconds=1))],
        # an outage also silences the CPU: flagging it is not a false positive, but a flag on
        # a healthy server is
        "silence": [
            Interval("srv-2", t0, t0 + timedelta(seconds=30)),
            Interval("srv-9", t0, t0 + timedelta(seconds=30)),
        ],
    }
    quality = detector_quality(labels, found, horizon=t0 + timedelta(hours=1))
    assert (quality["cpu_anomalies"].recall, quality["cpu_anomalies"].precision) == (1.0, 1.0)
    assert quality["silence"].episodes == 1  # the episode past the horizon is not judged yet
    assert (quality["silence"].recall, quality["silence"].precision) == (1.0, 0.5)
    assert quality["cdn_clusters"].episodes == 0


def test_pooled_quality_adds_the_counts_not_the_ratios() -> None:
    pooled = Quality(2, 2, 10, 9) + Quality(8, 2, 90, 9)
    assert pooled == Quality(10, 4, 100, 18)
    assert pooled.recall == 0.4
    assert pooled.precision == 0.18


def test_incidents_are_judged_by_their_entities_and_span() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    labels = [Interval("srv-1", at(0), at(2)), Interval("srv-2", at(10), at(12))]
    incidents = [
        IncidentSpan(("srv-1", "srv-3"), at(1), at(5)),  # true: srv-1's episode
        IncidentSpan(("srv-3",), at(1), at(5)),  # false: srv-3 had none
        IncidentSpan(("srv-2",), at(13), at(14)),  # false: after srv-2's episode
    ]
    quality = incident_quality(incidents, labels, labels)
    assert quality == Quality(episodes=2, detected_episodes=1, detections=3, true_detections=1)
