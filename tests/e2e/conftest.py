"""The end-to-end tests share one demo run on the session's stack."""

from __future__ import annotations

from typing import Any

import pytest

from lambdawatch.core.settings import Settings
from lambdawatch.ops.demo import report_rows, run_demo
from lambdawatch.ops.stack.local import LocalStack

DEMO_MINUTES = 4.0  # the forecast (started with the feed) is ready after about two
# Generator slots are 20-30 minutes per entity and a detector can judge only what happens once
# it is ready (baselines, model, forecast), so a four-minute feed needs every slot to hold an
# episode for each run to have some to judge. Detection quality proper is bench/detection_quality.
ANOMALY_RATE = 1.0


@pytest.fixture(scope="session")
def demo_report(airflow_stack: LocalStack, superset_stack: LocalStack, settings: Settings) -> Any:
    """``lambdawatch demo`` minus ``up``: the speed layer joins the session's stack first."""
    airflow_stack.up(["speed-layer"], on_event=lambda _message: None)
    report = run_demo(
        settings,
        airflow_stack.secrets,
        minutes=DEMO_MINUTES,
        anomaly_rate=ANOMALY_RATE,
        history_hours=72,
        history_ips=2,
        say=lambda _message: None,
        dag_timeout=900,
    )
    print("\n".join(f"{what}: {value}" for what, value in report_rows(report)))
    return report
