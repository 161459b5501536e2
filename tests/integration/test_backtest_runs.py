"""A backtest against the real database: the run and its findings are recorded, and the same
run id run again replaces them (a retried task neither duplicates nor drops)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from tests.unit.pipelines.test_backtest import CPU_FILE, REFERENCE_SIGMAS

pytestmark = [pytest.mark.integration]


def test_a_backtest_is_recorded_once_per_run_id(
    local_stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "cpu.csv"
    path.write_text(CPU_FILE)
    command = [
        sys.executable, "-m", "lambdawatch.ops.cli", "backtest", str(path), "--detector",
        "cpu_anomalies", "--value-column", "cpu", "--normal-mean", "50", "--normal-stddev", "5",
        "--run-id", "test-backtest-runs",
    ]  # fmt: skip
    for _attempt in range(2):
        run = subprocess.run(
            command, capture_output=True, text=True, check=False,
            env={**os.environ, **REFERENCE_SIGMAS},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "recorded as backtest run test-backtest-runs (3 WARN or ERROR)" in run.stdout
    with db.connect(settings, local_stack.secrets) as conn:
        runs = conn.execute(
            "SELECT detector, history, judged, warn, error, parameters->'normal' FROM "
            "backtest_runs WHERE run_id = 'test-backtest-runs'"
        ).fetchall()
        findings = conn.execute(
            "SELECT entity, extract(epoch FROM window_start) * 1000 - 1767225600000, severity, "
            "score FROM backtest_anomalies WHERE run_id = 'test-backtest-runs' "
            "ORDER BY window_start"
        ).fetchall()
    assert runs == [("cpu_anomalies", str(path.resolve()), 5, 2, 1, {"mean": 50.0, "stddev": 5.0})]
    # the hand-computed reference's WARN and ERROR windows, once each
    assert [(e, int(ms), s, round(z, 9)) for e, ms, s, z in findings] == [
        ("cpu", 500, "WARN", 2.0), ("cpu", 1000, "ERROR", 5.0), ("cpu", 1500, "WARN", 1.2),
    ]  # fmt: skip


def test_a_labelled_backtest_is_judged_and_compared_with_the_live_findings(
    local_stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    """The views the Backtests dashboard reads, from a run with a labels file: one episode
    found by the ERROR window [1000, 1500) ms (known at its end: 0.5 s after the episode's
    start), one missed; no live anomaly of this entity, so every finding is backtest only."""
    path = tmp_path / "cpu.csv"
    path.write_text(CPU_FILE)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,kind\n1767225601000,1767225601200,spike\n"
                      "1767225603000,1767225603100,spike\n")  # fmt: skip
    command = [
        sys.executable, "-m", "lambdawatch.ops.cli", "backtest", str(path), "--detector",
        "cpu_anomalies", "--value-column", "cpu", "--normal-mean", "50", "--normal-stddev", "5",
        "--run-id", "test-labelled-backtest", "--labels", str(labels),
    ]  # fmt: skip
    for _attempt in range(2):  # recorded again: replaced, episodes included
        run = subprocess.run(
            command, capture_output=True, text=True, check=False,
            env={**os.environ, **REFERENCE_SIGMAS},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert f"against {labels}: 1/2 episodes found" in " ".join(run.stdout.split())
    with db.connect(settings, local_stack.secrets) as conn:
        judged = conn.execute(
            "SELECT labels, episodes, detected, precision, recall, error_precision, "
            "error_recall, median_time_to_detect_s FROM v_backtest_runs "
            "WHERE run_id = 'test-labelled-backtest'"
        ).fetchall()
        episodes = conn.execute(
            "SELECT entity, extract(epoch FROM start_ts) * 1000 - 1767225600000, detected, "
            "time_to_detect_s FROM v_backtest_episodes WHERE run_id = 'test-labelled-backtest' "
            "ORDER BY start_ts"
        ).fetchall()
        agreement = conn.execute(
            "SELECT agreement, backtest_severity, count(*) FROM v_backtest_findings "
            "WHERE run_id = 'test-labelled-backtest' GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    assert judged == [(str(labels), 2, 1, 1 / 3, 0.5, 1.0, 0.5, 0.5)]
    assert [(e, int(ms), d, t) for e, ms, d, t in episodes] == [
        ("cpu", 1000, True, 0.5), ("cpu", 3000, False, None)
    ]  # fmt: skip
    assert agreement == [("backtest only", "ERROR", 1), ("backtest only", "WARN", 2)]
