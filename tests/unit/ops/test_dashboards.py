"""superset/ as code: the committed YAML is what lambdawatch.ops.dashboards renders, every UUID
reference in it resolves, and every chart asks only for columns and metrics its dataset has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdawatch.ops import dashboards

ROOT = Path(__file__).resolve().parents[3]
ASSETS = ROOT / "superset"


def _load(folder: str) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(ASSETS).as_posix(): yaml.safe_load(path.read_text())
        for path in sorted((ASSETS / folder).rglob("*.yaml"))
    }


@pytest.fixture(scope="module")
def assets() -> dict[str, dict[str, dict[str, Any]]]:
    return {kind: _load(kind) for kind in ("databases", "datasets", "charts", "dashboards")}


def test_committed_assets_are_the_rendered_ones() -> None:
    rendered = dashboards.render()
    on_disk = {
        path.relative_to(ASSETS).as_posix(): path.read_text() for path in ASSETS.rglob("*.yaml")
    }
    assert set(on_disk) == set(rendered), "run `lambdawatch dashboards render`"
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert stale == [], f"stale, run `lambdawatch dashboards render`: {stale}"


def test_metadata_declares_an_assets_bundle() -> None:
    metadata = yaml.safe_load((ASSETS / "metadata.yaml").read_text())
    assert metadata["type"] == "assets"


def test_every_uuid_reference_resolves(assets: dict[str, dict[str, dict[str, Any]]]) -> None:
    databases = {doc["uuid"] for doc in assets["databases"].values()}
    datasets = {doc["uuid"]: doc for doc in assets["datasets"].values()}
    charts = {doc["uuid"]: doc for doc in assets["charts"].values()}
    for name, dataset in assets["datasets"].items():
        assert dataset["database_uuid"] in databases, name
    for name, chart in assets["charts"].items():
        assert chart["dataset_uuid"] in datasets, name
    placed: set[str] = set()
    for name, dashboard in assets["dashboards"].items():
        for node in dashboard["position"].values():
            if isinstance(node, dict) and node.get("type") == "CHART":
                assert node["meta"]["uuid"] in charts, (name, node["meta"]["sliceName"])
                placed.add(node["meta"]["uuid"])
    assert placed == set(charts), "every chart sits on a dashboard (import skips orphans)"
    every = [doc["uuid"] for kind in assets.values() for doc in kind.values()]
    assert len(every) == len(set(every)), "UUIDs are unique"


def test_layout_tree_is_consistent(assets: dict[str, dict[str, dict[str, Any]]]) -> None:
    for name, dashboard in assets["dashboards"].items():
        layout = dashboard["position"]
        for node_id, node in layout.items():
            if not isinstance(node, dict):
                continue
            for child in node.get("children", []):
                assert child in layout, (name, node_id, child)
                assert layout[child]["parents"][-1] == node_id, (name, child)
        for row in (n for n in layout.values() if isinstance(n, dict) and n["type"] == "ROW"):
            assert sum(layout[c]["meta"]["width"] for c in row["children"]) <= 12, name


def _referenced(chart: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(columns, metrics) a chart's params and its saved query ask of the dataset."""
    params = chart["params"]
    columns: set[str] = set()
    for key in ("groupby", "all_columns", "columns"):
        value = params.get(key, [])
        columns.update([value] if isinstance(value, str) else value)
    for key in ("x_axis", "column"):
        if params.get(key):
            columns.add(params[key])
    metrics = set(params.get("metrics", []))
    metrics.update(params[k] for k in ("metric", "timeseries_limit_metric") if params.get(k))
    for query in json.loads(chart["query_context"])["queries"]:
        for column in query["columns"]:
            columns.add(column["sqlExpression"] if isinstance(column, dict) else column)
        metrics.update(query["metrics"])
        for filter_ in query["filters"]:
            columns.add(filter_["col"])
    return columns, metrics


def test_charts_ask_only_for_what_their_dataset_has(
    assets: dict[str, dict[str, dict[str, Any]]],
) -> None:
    datasets = {doc["uuid"]: doc for doc in assets["datasets"].values()}
    for name, chart in assets["charts"].items():
        dataset = datasets[chart["dataset_uuid"]]
        have_columns = {c["column_name"] for c in dataset["columns"]}
        have_metrics = {m["metric_name"] for m in dataset["metrics"]}
        columns, metrics = _referenced(chart)
        assert columns <= have_columns, (name, columns - have_columns)
        assert metrics <= have_metrics, (name, metrics - have_metrics)


def test_every_chart_carries_a_query_context_that_matches_its_params(
    assets: dict[str, dict[str, dict[str, Any]]],
) -> None:
    for name, chart in assets["charts"].items():
        context = json.loads(chart["query_context"])
        assert context["form_data"] == chart["params"], name
        assert context["form_data"]["viz_type"] == chart["viz_type"], name
        assert len(context["queries"]) == 1, name
        query = context["queries"][0]
        assert query["columns"] or query["metrics"], name


def test_every_dataset_reads_a_view_the_migrations_create(
    assets: dict[str, dict[str, dict[str, Any]]],
) -> None:
    sql = "\n".join(path.read_text() for path in sorted((ROOT / "sql").glob("*.sql")))
    views = set(re.findall(r"CREATE OR REPLACE VIEW (\w+)", sql))
    for name, dataset in assets["datasets"].items():
        assert dataset["table_name"] in views, name
        assert dataset["schema"] == "public", name


def test_dashboards_refresh_themselves(assets: dict[str, dict[str, dict[str, Any]]]) -> None:
    titles = {doc["dashboard_title"] for doc in assets["dashboards"].values()}
    assert titles == {
        "Incidents",
        "Network traffic",
        "Data center",
        "Anomalies",
        "CDN",
        "Pipeline health",
        "Weather",
        "Backtests",
    }
    for name, dashboard in assets["dashboards"].items():
        assert 10 <= dashboard["metadata"]["refresh_frequency"] <= 300, name


def test_no_secret_is_committed(assets: dict[str, dict[str, dict[str, Any]]]) -> None:
    for name, database in assets["databases"].items():
        assert ":XXXXXXXXXX@" in database["sqlalchemy_uri"], name


def test_the_incidents_dashboard_is_the_first_a_user_is_sent_to() -> None:
    assert dashboards.DASHBOARDS[0].slug == "incidents"


def test_the_cpu_heat_map_runs_in_time_order(assets: dict[str, dict[str, dict[str, Any]]]) -> None:
    [heat_map] = [c for c in assets["charts"].values() if c["slice_name"] == "CPU heat-map"]
    assert heat_map["params"]["sort_x_axis"] == "alpha_asc"  # epoch milliseconds, ascending
