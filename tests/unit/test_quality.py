"""Precision and recall against ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdawatch.quality import Interval, score

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
