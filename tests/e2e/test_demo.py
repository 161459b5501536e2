"""The demo, end to end on the session's stack: InitialDag through Airflow's REST API, live
events with injected anomalies through the running speed layer, every batch DAG once, and the
result visible through Superset's chart-data API."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops.cli import app
from lambdawatch.ops.demo import BATCH_DAGS
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.ops.superset_api import SupersetClient
from lambdawatch.pipelines.quality import Quality

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]


def test_initial_dag_and_every_batch_dag_succeed(demo_report: Any) -> None:
    assert demo_report.initial_dag == "success"
    assert demo_report.batch_runs == dict.fromkeys(BATCH_DAGS, "success")


def test_events_flowed_through_every_source_topic(demo_report: Any, settings: Settings) -> None:
    assert set(demo_report.fed) == {"ip", "server", "cdn", "weather"}
    assert all(count > 0 for count in demo_report.fed.values())
    for role in ("ip_events", "server_events", "cdn_events", "weather_events"):
        assert demo_report.events_per_topic[settings.topic(role).name] > 0, role


def test_the_speed_layer_flagged_the_injected_anomalies(demo_report: Any) -> None:
    """ERROR findings against the labels the detectors could judge, pooled over detectors.

    A few minutes hold only a few judgeable episodes per detector, so one miss would swing a
    per-detector figure; per-detector precision, recall and F1 are measured on an hour of
    events by bench/detection_quality.
    """
    assert demo_report.anomalies, "no anomaly was recorded during the demo"
    pooled = sum(demo_report.quality.values(), Quality(0, 0, 0, 0))
    assert pooled.episodes > 0, demo_report.quality
    assert pooled.recall >= 0.5, demo_report.quality
    assert pooled.detections > 0
    assert pooled.precision >= 0.5, demo_report.quality


def test_forecasts_and_a_promoted_model_came_out_of_the_batch_layer(demo_report: Any) -> None:
    assert demo_report.forecasts > 0
    assert demo_report.model_version is not None


def test_the_anomalies_dashboard_has_data(
    demo_report: Any, superset_stack: LocalStack, settings: Settings
) -> None:
    client = SupersetClient.from_settings(settings, superset_stack.secrets)
    charts = {chart["slice_name"]: chart["id"] for chart in client.charts()}
    rows = client.chart_data(charts["Latest anomalies"])
    assert sum(result["rowcount"] for result in rows) > 0
    with db.connect(settings, superset_stack.secrets) as conn:
        progress = conn.execute("SELECT count(*) FROM speed_layer_progress").fetchone()
    assert progress is not None
    assert progress[0] > 0


def test_the_demo_s_feed_was_archived_and_backtested_against_its_ground_truth(
    demo_report: Any,
) -> None:
    """archive_raw_events then the backtest DAG (its form: the CPU detector over the feed),
    judged by the ground truth of the span and set beside the live findings."""
    backtest = demo_report.backtest
    assert backtest["detector"] == "cpu_anomalies"
    assert backtest["judged"] > 0
    assert backtest["labels"] == "ground_truth"
    assert backtest["episodes"] > 0
    agreement = backtest["agreement"]
    assert set(agreement) <= {"both", "both, other severity", "backtest only", "live only"}
    assert sum(agreement.values()) >= backtest["warn"] + backtest["error"]


def test_the_demo_s_anomalies_became_incidents_an_operator_can_list(demo_report: Any) -> None:
    """The incidents query ran beside the detectors: the feed's findings went into incidents
    (opened during it, or continued: on this shared stack the integration tests' servers were
    silent from their January history until the feed, and that silence's incident takes their
    first findings), judged against the labels, and ``lambdawatch incidents list`` shows them."""
    assert sum(demo_report.incidents.values()) > 0, demo_report.incidents
    assert demo_report.incident_quality is not None
    assert demo_report.incident_quality.detections == sum(demo_report.incidents.values())
    listed = CliRunner().invoke(app, ["incidents", "list", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    assert "incidents" in listed.output
    assert any(state in listed.output for state in ("open", "resolved", "acknowledged"))
