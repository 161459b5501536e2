"""A backtest judged against labels: precision, recall and time to detect by hand, and one-line
errors for a bad labels file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lambdawatch.ops.cli import app
from lambdawatch.pipelines.backtest_labels import LabelError, judge, read_labels
from lambdawatch.pipelines.backtest_verdicts import Verdicts, verdicts_of
from lambdawatch.pipelines.quality import Label

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _results(rows: list[tuple[str, float, float, str]]) -> Verdicts:
    """(entity, window start s, window end s, severity) → a backtest's verdicts."""
    return verdicts_of(
        pd.DataFrame(
            {
                "detector": "cpu_anomalies",
                "entity": [r[0] for r in rows],
                "metric": "cpu_usage",
                "window_start": pd.to_datetime([_at(r[1]) for r in rows], utc=True),
                "window_end": pd.to_datetime([_at(r[2]) for r in rows], utc=True),
                "value": 1.0,
                "expected": 1.0,
                "score": 1.0,
                "severity": [r[3] for r in rows],
                "model_version": "test",
            }
        )
    )


def test_windows_judged_by_hand() -> None:
    results = _results([
        ("a", 0, 10, "SAFE"),
        ("a", 10, 20, "WARN"),   # overlaps episode a[15, 40): found at 20 → 5 s to detect
        ("a", 20, 30, "ERROR"),  # same episode, first ERROR ends at 30
        ("a", 60, 70, "ERROR"),  # no label: false
        ("b", 10, 20, "WARN"),   # overlaps b's other-kind label: true, not a target
        ("c", 0, 10, "SAFE"),
    ])  # fmt: skip
    labels = [
        Label("a", "cpu_spike", _at(15), _at(40)),
        Label("b", "ddos", _at(0), _at(30)),  # not a CPU kind: counts for precision only
        Label("c", "stuck_at_100", _at(0), _at(50)),  # missed
    ]
    verdict = judge(results, "cpu_anomalies", labels, "ground_truth")
    assert [(e.label.entity, e.first_finding) for e in verdict.episodes] == [
        ("a", _at(20)), ("c", None)
    ]  # fmt: skip
    assert verdict.first_errors == [_at(30), None]
    row = verdict.row()
    assert row["episodes"] == 2
    assert row["detected"] == 1
    assert row["detected_by_error"] == 1
    assert row["precision"] == pytest.approx(3 / 4)  # a@10, a@20, b@10 true; a@60 false
    assert row["recall"] == pytest.approx(1 / 2)
    assert row["error_precision"] == pytest.approx(1 / 2)
    assert row["error_recall"] == pytest.approx(1 / 2)
    assert row["median_time_to_detect_s"] == pytest.approx(5.0)


def test_a_file_s_labels_are_all_targets_and_without_an_entity_hold_for_each() -> None:
    # samples (start == end): a finding covers its instant
    results = _results([("x", 5, 5, "WARN"), ("y", 8, 8, "SAFE"), ("y", 30, 30, "ERROR")])
    verdict = judge(results, "metric_scores", [Label("", "labelled", _at(0), _at(10))], "f.csv")
    assert [(e.label.entity, e.first_finding) for e in verdict.episodes] == [
        ("x", _at(5) + timedelta(milliseconds=1)), ("y", None)
    ]  # fmt: skip
    row = verdict.row()
    assert (row["episodes"], row["detected"]) == (2, 1)
    assert row["precision"] == pytest.approx(1 / 2)  # y@30 is outside every label
    assert row["error_recall"] == 0.0


def test_nothing_to_judge_is_null_not_a_perfect_score() -> None:
    verdict = judge(_results([("a", 0, 10, "SAFE")]), "cpu_anomalies", [], "f.csv")
    row = verdict.row()
    assert row["precision"] is None
    assert row["recall"] is None
    assert row["median_time_to_detect_s"] is None


def test_a_labels_file_takes_replay_s_times(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "start,end,entity,kind\n"
        "2026-03-02T00:00:00Z,2026-03-02T00:01:00Z,a,spike\n"
        "1772409600,1772409660,,\n"
    )
    assert read_labels(path) == [
        Label("a", "spike", T0, T0 + timedelta(minutes=1)),
        Label("", "labelled", T0, T0 + timedelta(minutes=1)),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"begin,end\n1,2\n", "no column start"),
        (b"start,end\nsoon,2026-03-02\n", "line 2: "),
        (b"start,end\n2026-03-02,2026-03-01\n", "line 2: end 2026-03-01 is before start"),
        (b"start,end\n1e20,1\n", "line 2: 1e20 is out of range"),
        (b"start,end\n\xff,1\n", "not utf-8"),
    ],
)
def test_a_bad_labels_file_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(LabelError, match=message):
        read_labels(path)


def test_the_cli_judges_a_file_by_its_labels(tmp_path: Path) -> None:
    data = tmp_path / "cpu.csv"
    rows = [
        "time_ms,cpu",
        *(f"{1772409600000 + 100 * i},{40 if i < 30 else 90}" for i in range(40)),
    ]
    data.write_text("\n".join(rows) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end\n1772409603000,1772409604000\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end\nnever,1\n")
    runner = CliRunner()
    base = ["backtest", str(data), "--detector", "cpu_anomalies", "--time-column", "time_ms",
            "--value-column", "cpu", "--normal-mean", "40", "--normal-stddev", "4"]  # fmt: skip
    result = runner.invoke(app, [*base, "--labels", str(labels)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"against {labels}: 1/1 episodes found" in result.output
    failed = runner.invoke(app, [*base, "--labels", str(bad)], env={"COLUMNS": "200"})
    assert failed.exit_code == 1
    assert f"--labels {bad} line 2: " in failed.output
    assert "Traceback" not in failed.output
