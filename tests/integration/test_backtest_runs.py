"""A backtest against the real database: the run and its findings are recorded, and the same
run id run again replaces them (a retried task neither duplicates nor drops)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from tests.unit.pipelines.test_backtest import CPU_FILE

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
        run = subprocess.run(command, capture_output=True, text=True, check=False)
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
