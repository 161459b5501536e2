"""Superset on the real stack: provisioned from superset/, read-only on the platform database,
and every chart's saved query answers with rows through the REST API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.ops import dashboards
from lambdawatch.ops.stack import superset_node
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.ops.superset_api import SupersetClient

pytestmark = pytest.mark.integration
IP = "198.51.100.7"


def _seed_recent_rows(settings: Settings, stack: LocalStack) -> None:
    """One or a few rows per view, stamped around now: the dashboards show the last day."""
    now = datetime.now(UTC).replace(microsecond=0)
    recent = now - timedelta(minutes=5)
    hours = [now - timedelta(hours=h) for h in range(1, 6)]
    with db.connect(settings, stack.secrets, role="owner") as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ip_history VALUES (%s, 'bytesin', %s, %s) ON CONFLICT DO NOTHING",
            [(IP, ts, 100.0 + i) for i, ts in enumerate(hours)],
        )
        cur.executemany(
            "INSERT INTO ip_forecasts VALUES (%s, 'bytesin', %s, 110, 90, 130, 'prophet', "
            "'superset-test', now()) ON CONFLICT DO NOTHING",
            [(IP, now + timedelta(hours=h)) for h in range(0, 3)],
        )
        for feature in ("bytesin", "bytesout", "unq_dst_port"):
            cur.execute(
                "INSERT INTO rt_ip_windows VALUES (%s, %s, %s, %s, 3, 300, 100) "
                "ON CONFLICT DO NOTHING",
                (recent, recent + timedelta(minutes=1), IP, feature),
            )
        for detector, metric in (("forecast_deviations", "unq_dst_port"), ("silence", "x")):
            cur.execute(
                "INSERT INTO anomalies (detector, entity, metric, window_start, window_end, "
                "value, expected, score, severity) VALUES (%s, %s, %s, %s, %s, 40, 4, 9, "
                "'ERROR') ON CONFLICT DO NOTHING",
                (detector, IP, metric, recent, recent + timedelta(minutes=1)),
            )
        cur.execute(
            "INSERT INTO rt_server_status VALUES (%s, %s, 'DE', 'Germany', 'Berlin', "
            "'fra-test', 'RED', 3, 7, 70, now()) ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(minutes=1)),
        )
        cur.execute(
            "INSERT INTO rt_cpu_windows VALUES ('srv-superset', %s, %s, 91, 2, 4, 45, 12, "
            "3.8, 'ERROR') ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(seconds=1)),
        )
        cur.execute(
            "INSERT INTO rt_cdn_clusters VALUES ('edge-superset', %s, 'fra', 'eu', 'e1', 2, "
            "9.0, 3.0, true, 'v-test') ON CONFLICT DO NOTHING",
            (recent,),
        )
        db.refresh_cdn_cluster_minutes(conn, recent, recent)  # as the speed layer does
        cur.execute(
            "INSERT INTO model_registry (model_name, version, path, threshold) VALUES "
            "('superset_test_model', 'v-test', '/nowhere', 3.0) ON CONFLICT DO NOTHING"
        )
        cur.execute(
            "INSERT INTO speed_layer_progress VALUES ('ip_averages', 999999, 'ip-events', "
            "%s, 120, 2.0, 4.0, 17, 300) ON CONFLICT DO NOTHING",
            (recent,),
        )
        cur.execute(
            "INSERT INTO speed_layer_errors VALUES ('weather_derived', 999999, "
            "'unwritable: DataError: x', 1, 'dead_letters', %s) ON CONFLICT DO NOTHING",
            (recent,),
        )
        cur.execute(
            "INSERT INTO batch_runs (dag_id, run_id) VALUES ('superset_test', 'r1') "
            "ON CONFLICT DO NOTHING"
        )
        cur.execute(
            "INSERT INTO hot_store_stats VALUES (%s, 'plain', 36, 1048576) ON CONFLICT DO NOTHING",
            (recent,),
        )
        cur.execute(  # a batch with late events and records lost to retention (Pipeline health)
            "INSERT INTO speed_layer_progress (query, batch_id, source, batch_ts, input_rows, "
            "watermark, late_rows, lost_rows) VALUES ('ip_averages', 999998, 'ip-events', %s, "
            "0, %s, 3, 5) ON CONFLICT DO NOTHING",
            (recent, recent),
        )
        cur.execute(
            "INSERT INTO incidents (incident_id, scope, state, severity, first_seen, last_seen, "
            "entities, metrics, detectors, members, strongest_detector, strongest_entity, "
            "strongest_metric, strongest_window_start, summary) VALUES ('superset-test', "
            "'entity:srv-superset', 'open', 'ERROR', %s, %s, '{srv-superset}', '{cpu}', "
            "'{cpu_anomalies}', 1, 'cpu_anomalies', 'srv-superset', 'cpu', %s, 'test') "
            "ON CONFLICT DO NOTHING",
            (recent, recent, recent),
        )
        cur.execute(
            "INSERT INTO rt_weather (city, ts, temperature, feels_like, "
            "temperature_minus_feels_like, event_id) VALUES ('Supersetville', %s, 21, 19, 2, "
            "'w-superset') ON CONFLICT DO NOTHING",
            (recent,),
        )
        cur.execute(
            "INSERT INTO backtest_runs (run_id, detector, history, parameters, model_versions, "
            "judged, warn, error, first_event, last_event, started_at, finished_at) VALUES "
            "('superset-test', 'cpu_anomalies', 'superset.csv', '{}', 'v-test', 2, 0, 1, %s, %s, "
            "%s, %s) ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(seconds=1), recent, recent),
        )
        cur.execute(
            "INSERT INTO backtest_anomalies VALUES ('superset-test', 'cpu_anomalies', "
            "'srv-superset', 'cpu', %s, %s, 91, 45, 3.8, 'ERROR', 'v-test', %s) "
            "ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(seconds=1), recent),
        )
        cur.execute(
            "INSERT INTO backtest_episodes VALUES ('superset-test', 'srv-superset', 'cpu_spike', "
            "%s, %s, %s, %s, 0.5) ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(seconds=5), recent + timedelta(seconds=1), recent),
        )
        cur.execute(
            "INSERT INTO incident_signals VALUES ('cpu_anomalies', 'srv-superset', 'cpu', %s, %s, "
            "91, 45, 3.8, 'ERROR', 'v-test', %s, 'superset-test') ON CONFLICT DO NOTHING",
            (recent, recent + timedelta(seconds=1), recent),
        )


@pytest.fixture(scope="module")
def client(superset_stack: LocalStack, settings: Settings) -> SupersetClient:
    _seed_recent_rows(settings, superset_stack)
    return SupersetClient.from_settings(settings, superset_stack.secrets)


def _by_uuid(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(item["uuid"]): item for item in items}


def test_every_dashboard_and_chart_was_imported_once(client: SupersetClient) -> None:
    dashboards_here = _by_uuid(client.dashboards())
    charts_here = _by_uuid(client.charts())
    declared_charts = {c.uuid: c for d in dashboards.DASHBOARDS for c in d.charts}
    assert {d.uuid for d in dashboards.DASHBOARDS} <= set(dashboards_here)
    assert set(declared_charts) <= set(charts_here)
    for dashboard in dashboards.DASHBOARDS:
        placed = client.dashboard_charts(dashboards_here[dashboard.uuid]["id"])
        assert sorted(c["slice_name"] for c in placed) == sorted(c.name for c in dashboard.charts)


def test_every_chart_keeps_its_saved_query_context(client: SupersetClient) -> None:
    for chart in client.charts():
        detail = client.chart(chart["id"])
        context = json.loads(detail["query_context"])
        assert context["queries"], chart["slice_name"]
        # the import pointed it at the dataset's real id
        assert context["datasource"]["id"] > 0, chart["slice_name"]


def test_every_chart_query_returns_rows(client: SupersetClient) -> None:
    empty = {}
    for chart in client.charts():
        results = client.chart_data(chart["id"])
        rows = sum(result.get("rowcount", 0) for result in results)
        if rows == 0:
            empty[chart["slice_name"]] = [r.get("query", "")[-300:] for r in results]
    assert empty == {}, empty


def test_reprovisioning_updates_in_place(
    superset_stack: LocalStack, settings: Settings, client: SupersetClient
) -> None:
    before = (len(client.dashboards()), len(client.charts()))
    assert superset_node.provision(settings, superset_stack.secrets, force=True)
    assert (len(client.dashboards()), len(client.charts())) == before


def test_superset_reads_but_cannot_write_the_platform_database(
    superset_stack: LocalStack, settings: Settings
) -> None:
    password = superset_stack.secrets.superset_db_password.get_secret_value()
    with psycopg.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        dbname=settings.postgres_db,
        user=superset_node.SUPERSET_DB_USER,
        password=password,
        autocommit=True,
    ) as conn:
        assert conn.execute("SELECT count(*) FROM v_anomalies").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM anomalies")


def test_sql_lab_is_off_for_everyone_the_admin_included(
    client: SupersetClient, settings: Settings
) -> None:
    """Off by default (``superset_sql_lab``): its page and API answer 403, and the platform
    database is not offered to it nor to SQL-defined datasets."""
    headers = {"Authorization": f"Bearer {client.login()}"}
    for path in ("/sqllab/", "/api/v1/sqllab/"):
        response = httpx.get(
            f"{settings.superset_base_url}{path}", headers=headers, follow_redirects=False
        )
        assert response.status_code == 403, (path, response.status_code)
        assert "SQL Lab is off" in response.text
    [database] = client._all(
        "database", ["database_name", "expose_in_sqllab", "allows_virtual_table_explore"]
    )
    assert database["expose_in_sqllab"] is False
    assert database["allows_virtual_table_explore"] is False
