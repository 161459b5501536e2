"""The standalone cluster's health, read from the master's own JSON view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lambdawatch.core.settings import load_settings
from lambdawatch.ops.stack import spark_node

SETTINGS = load_settings(stack_profile="cluster")
UI = f"http://127.0.0.1:{SETTINGS.spark_worker_ui_port_1}"


@pytest.mark.parametrize(
    ("workers", "problem"),
    [
        ([], "spark-worker-1: not registered yet"),
        ([{"webuiaddress": UI, "state": "ALIVE"}], None),
        ([{"webuiaddress": UI, "state": "DEAD"}], "spark-worker-1: DEAD at the master"),
        # killed and started again: the master lists the dead one beside the new one
        ([{"webuiaddress": UI, "state": "DEAD"}, {"webuiaddress": UI, "state": "ALIVE"}], None),
        ([{"webuiaddress": "http://127.0.0.1:1", "state": "ALIVE"}], "not registered yet"),
    ],
)
def test_a_worker_is_healthy_when_the_master_counts_it_alive(
    monkeypatch: pytest.MonkeyPatch, workers: list[dict[str, Any]], problem: str | None
) -> None:
    monkeypatch.setattr(spark_node, "master_state", lambda _s: {"workers": workers})
    found = spark_node.check_worker(SETTINGS, "spark-worker-1")
    assert found == problem or (problem is not None and found is not None and problem in found)


def test_workers_run_the_core_interpreter_with_the_project_importable() -> None:
    program = spark_node.worker_program(SETTINGS, "spark-worker-2")
    assert program.command[1:3] == [
        "org.apache.spark.deploy.worker.Worker",
        SETTINGS.spark_master_url,
    ]
    assert program.environment["PYTHONPATH"] == str(SETTINGS.root)
    assert program.command[program.command.index("--webui-port") + 1] == str(
        SETTINGS.spark_worker_ui_port_2
    )


def test_a_master_ui_still_starting_is_not_ready_rather_than_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While it starts, the master's UI can answer /json/ with its HTML page: not ALIVE yet."""
    page = httpx.Response(
        200, text="<!DOCTYPE html><html></html>", request=httpx.Request("GET", "http://m/json/")
    )
    monkeypatch.setattr(spark_node.httpx, "get", lambda *_a, **_k: page)
    reason = spark_node.check_master(SETTINGS)
    assert reason is not None
    assert "answered with a page" in reason
    assert "answered with a page" in (spark_node.check_worker(SETTINGS, "spark-worker-1") or "")
