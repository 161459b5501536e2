"""Airflow on the real local stack: InitialDag through the REST API, and every DAG run end to
end with ``airflow dags test`` (Airflow's ``dag.test()``) against PostgreSQL, Redis, Kafka and
Spark.

Each test writes to a time range or entities of its own, so the tests do not see each other's
data in the shared session stack.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from generators.registry import make_generator
from lambdawatch.core import db
from lambdawatch.core.airflow_api import AirflowClient
from lambdawatch.core.hot_store import open_hot_store, redis_client
from lambdawatch.core.kafka_admin import admin_client, partition_counts
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.airflow_node import run_airflow_cli
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.event_feed import feed_batch
from lambdawatch.pipelines.platform_init import ON_DEMAND_DAGS, SCHEDULED_DAGS
from lambdawatch.pipelines.spark_jobs import spark_connection
from tests.integration.kafka_reading import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ALL_DAGS = ["InitialDag", *SCHEDULED_DAGS, *ON_DEMAND_DAGS]


def dags_test(stack: LocalStack, dag_id: str, logical_date: datetime) -> str:
    """``airflow dags test`` for one logical date; fails the test with the error lines.

    The DAG is paused first: ``dags test`` runs the tasks itself, and the stack's running
    scheduler would otherwise pick up the same queued task instances and race it.
    """
    AirflowClient.from_settings(stack.settings, stack.secrets).set_paused(dag_id, paused=True)
    result = run_airflow_cli(
        stack.settings, stack.secrets, ["dags", "test", dag_id, logical_date.isoformat()], 900
    )
    output = result.stdout + result.stderr
    errors = "\n".join(line[:3000] for line in output.splitlines() if "error" in line.lower()[:200])
    assert result.returncode == 0, errors[-8000:] or output[-4000:]
    assert "state=success" in output, errors[-8000:] or output[-4000:]
    return output


@pytest.fixture(scope="module")
def client(airflow_stack: LocalStack) -> AirflowClient:
    api = AirflowClient.from_settings(airflow_stack.settings, airflow_stack.secrets)
    api.wait_for_dags(ALL_DAGS)
    return api


@pytest.fixture(scope="module")
def initialised(client: AirflowClient, airflow_stack: LocalStack) -> str:
    """InitialDag triggered through the REST API on the running api-server, polled to success."""
    run_id = client.trigger("InitialDag")
    assert client.wait_for_run("InitialDag", run_id, timeout=600) == "success", client.task_states(
        "InitialDag", run_id
    )
    return run_id


def test_dag_processor_parsed_every_dag_without_errors(client: AirflowClient) -> None:
    assert set(ALL_DAGS) <= set(client.dag_ids())
    assert client.import_errors() == []


def test_spark_default_is_created_from_settings_and_an_edit_is_kept(
    client: AirflowClient, airflow_stack: LocalStack
) -> None:
    """The batch DAGs submit through spark_default: ``up`` rendered it from the settings; an
    operator who retargets it in Connections keeps the edit across the next ``up``."""
    connection = client.connection("spark_default")
    assert connection is not None
    assert (connection["conn_type"], connection["host"]) == ("spark", "local[*]")
    edited = {**spark_connection(airflow_stack.settings), "host": "local[2]"}
    client.put_connection(edited, exists=True)
    try:
        airflow_stack.up(["airflow-api-server"], on_event=lambda _m: None)  # runs its after-start
        kept = client.connection("spark_default")
        assert kept is not None
        assert kept["host"] == "local[2]"
    finally:
        client.put_connection(spark_connection(airflow_stack.settings), exists=True)


def test_initial_dag_creates_topics_series_and_tables(
    initialised: str, client: AirflowClient, settings: Settings, airflow_stack: LocalStack
) -> None:
    assert set(client.task_states("InitialDag", initialised).values()) == {"success"}
    admin = admin_client(settings.kafka_bootstrap)
    try:
        counts = partition_counts(admin, [t.name for t in settings.topics])
    finally:
        admin.close()
    assert counts == {t.name: t.partitions for t in settings.topics}

    client_redis = redis_client(settings)
    try:
        store = open_hot_store(client_redis, settings)
        keys = store.query_index({"source": "ip"})
        assert len(keys) >= len(settings.ips.resolved_addresses) * len(settings.ips.features)
        first = settings.hot_store.key_template.format(
            ip=settings.ips.resolved_addresses[0], feature=settings.ips.features[0]
        )
        assert store.labels(first)["feature"] == settings.ips.features[0]
        assert store.retention_ms(first) == 0  # only the archive trims, behind what it verified
    finally:
        client_redis.close()

    with db.connect(settings, airflow_stack.secrets) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"ip_history", "baselines", "model_registry", "ip_forecasts", "anomalies"} <= tables
    for dag_id in (*SCHEDULED_DAGS, *ON_DEMAND_DAGS):  # the platform exists: they may run
        assert client.dag(dag_id)["is_paused"] is False, dag_id


def test_initial_dag_is_safe_to_trigger_twice(
    initialised: str, client: AirflowClient, settings: Settings
) -> None:
    run_id = client.trigger("InitialDag")
    assert client.wait_for_run("InitialDag", run_id, timeout=600) == "success"
    admin = admin_client(settings.kafka_bootstrap)
    try:
        counts = partition_counts(admin, [t.name for t in settings.topics])
    finally:
        admin.close()
    assert counts == {t.name: t.partitions for t in settings.topics}


# --- feed_events ---------------------------------------------------------------------------
FEED_END = datetime(2026, 2, 3, 4, 5, tzinfo=UTC)  # interval [04:00, 04:05), this test's own


def _feed_footprint(settings: Settings, stack: LocalStack) -> dict[str, object]:
    start_ms = int((FEED_END - timedelta(minutes=5)).timestamp() * 1000)
    end_ms = int(FEED_END.timestamp() * 1000)
    client = redis_client(settings)
    try:
        series = open_hot_store(client, settings).mrange({"source": "ip"}, start_ms, end_ms - 1)
    finally:
        client.close()
    with db.connect(settings, stack.secrets) as conn:
        labels = conn.execute(
            "SELECT count(*) FROM ground_truth WHERE start_ts < %s AND end_ts >= %s",
            (FEED_END, FEED_END - timedelta(minutes=5)),
        ).fetchone()[0]
    ids: list[str] = []
    for role in ("ip_events", "cdn_events"):
        for record in read_topic(settings.kafka_bootstrap, settings.topic(role).name):
            try:  # the shared topic also holds other modules' records, bad ones included
                event = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("timestamp", "").startswith("2026-02-03T04:0"):
                ids.append(event["event_id"])
    return {
        "hot_samples": sum(len(points) for points in series.values()),
        "labels": labels,
        "kafka_records": len(ids),
        "kafka_ids": set(ids),
    }


@pytest.mark.usefixtures("initialised")
def test_feed_events_twice_for_one_interval_duplicates_nothing_downstream(
    airflow_stack: LocalStack, settings: Settings
) -> None:
    dags_test(airflow_stack, "feed_events", FEED_END)
    first = _feed_footprint(settings, airflow_stack)
    start_ms = int((FEED_END - timedelta(minutes=5)).timestamp() * 1000)
    end_ms = int(FEED_END.timestamp() * 1000)
    ip_events = make_generator("ip", settings).generate(start_ms, end_ms).events
    cdn_events = make_generator("cdn", settings).generate(start_ms, end_ms).events
    expected_ids = {e["event_id"] for e in ip_events} | {e["event_id"] for e in cdn_events}
    assert first["kafka_ids"] == expected_ids  # the interval, all of it, nothing else
    assert first["hot_samples"] == len(ip_events) * len(settings.ips.features)

    dags_test(airflow_stack, "feed_events", FEED_END)  # a retry / cleared task
    second = _feed_footprint(settings, airflow_stack)
    assert second["hot_samples"] == first["hot_samples"]
    assert second["labels"] == first["labels"]
    assert second["kafka_ids"] == first["kafka_ids"]  # same ids: the speed layer drops repeats
    assert second["kafka_records"] == 2 * first["kafka_records"]  # at-least-once transport

    # each run's last task recorded it (``dags test`` makes a new run id each time; a cleared
    # task reuses its run's id and overwrites the row) and sampled the hot store
    with db.connect(settings, airflow_stack.secrets) as conn:
        runs = conn.execute(
            "SELECT details FROM batch_runs WHERE dag_id = 'feed_events' AND interval_end = %s",
            (FEED_END,),
        ).fetchall()
        sampled = conn.execute("SELECT max(series) FROM hot_store_stats").fetchone()
    assert len(runs) == 2
    sent = [[(r["events"], r["labels"]) for r in run[0]["results"]] for run in runs]
    assert sent[0] == sent[1]  # same interval, same events (the repeat adds no hot samples)
    results = runs[0][0]["results"]  # one per mapped feed task: ip, server, cdn, weather
    assert len(results) == 4
    assert all(result["events"] > 0 for result in results)
    assert sampled is not None
    assert sampled[0] >= len(settings.ips.resolved_addresses)


# --- archive_hot_store ---------------------------------------------------------------------
ARCHIVE_END = datetime(2026, 2, 10, 12, tzinfo=UTC)


@pytest.mark.usefixtures("initialised")
def test_archive_dag_moves_old_samples_to_history(
    airflow_stack: LocalStack, settings: Settings
) -> None:
    ip = "203.0.113.77"  # not in config: identified through its series labels
    key = f"test:archive:{ip}:unq_dst_ip"
    hot_window = timedelta(hours=settings.hot_store.hot_window_hours)
    old = [ARCHIVE_END - hot_window - timedelta(minutes=m) for m in range(1, 31)]
    recent = [ARCHIVE_END - hot_window + timedelta(minutes=m) for m in range(0, 10)]
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        store.ensure_series(key, {"source": "ip", "ip": ip, "feature": "unq_dst_ip"}, 10**12)
        store.add([(key, int(t.timestamp() * 1000), float(i)) for i, t in enumerate(old + recent)])
        dags_test(airflow_stack, "archive_hot_store", ARCHIVE_END)
        remaining = store.range(key, 0, 2**62)
    finally:
        client.close()
    assert [datetime.fromtimestamp(ts / 1000, UTC) for ts, _ in remaining] == recent
    with db.connect(settings, airflow_stack.secrets) as conn:
        archived = conn.execute(
            "SELECT ts, value FROM ip_history WHERE ip = %s ORDER BY ts", (ip,)
        ).fetchall()
    assert [row[0] for row in archived] == sorted(old)
    assert sorted(row[1] for row in archived) == [float(i) for i in range(len(old))]


# --- baseline_stats ------------------------------------------------------------------------
BASELINE_END = datetime(2026, 2, 20, tzinfo=UTC)


@pytest.mark.usefixtures("initialised")
def test_baseline_stats_dag_learns_only_normal_windows(
    airflow_stack: LocalStack, settings: Settings
) -> None:
    """Baselines pooled from per-window (n, mean, σ) equal the statistics of the raw samples
    of the normal windows: an hour stuck at 100 % (an outlier by the modified z-score) and a
    span an operator marked false positive (excluded) are left out, in the next run."""
    rng = np.random.default_rng(4)
    servers = {"bl-server-a": (40.0, 5.0), "bl-server-b": (70.0, 15.0)}
    raw: dict[str, list[float]] = {}
    windows = []
    first = BASELINE_END - timedelta(hours=2)

    def window(server: str, w: int, values: np.ndarray) -> tuple[Any, ...]:
        start = first + timedelta(milliseconds=500 * w)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return (server, start, start + timedelta(milliseconds=500), float(values.mean()), std,
                len(values), 45.0, 12.0, 0.0, "SAFE")  # fmt: skip

    for server, (mu, sigma) in servers.items():
        raw[server] = []
        for w in range(200):
            n = int(rng.integers(1, 4))
            values = rng.normal(mu, sigma, n)
            while abs(values.mean() - mu) > 1.5 * sigma / np.sqrt(n):  # plainly normal
                values = rng.normal(mu, sigma, n)
            raw[server].extend(values)
            windows.append(window(server, w, values))
    stuck = [window("bl-server-a", 200 + w, np.array([100.0, 100.0])) for w in range(20)]
    # bl-server-b ran 1.5 σ hot for 40 windows: no outlier, but an operator's false positive
    hot = [window("bl-server-b", 200 + w, np.array([92.5, 92.5])) for w in range(40)]
    stale = BASELINE_END - timedelta(hours=settings.models.baselines.trailing_hours + 1)
    windows += [*stuck, *hot, ("bl-server-a", stale, stale, 999.0, 0.0, 5, 45.0, 12.0, 0.0, "SAFE")]
    with db.connect(settings, airflow_stack.secrets, role="owner") as conn:
        db.upsert_rows(
            conn,
            "rt_cpu_windows",
            ("server_id", "window_start", "window_end", "mean_cpu", "std_cpu", "samples",
             "expected_mean", "expected_std", "z", "status"),
            windows,
            ("server_id", "window_start"),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO incidents (incident_id, scope, state, severity, first_seen, last_seen, "
            "entities, metrics, detectors, members, strongest_detector, strongest_entity, "
            "strongest_metric, strongest_window_start, summary, resolved_by, false_positive) "
            "VALUES ('bl-incident', 'entity:bl-server-b', 'resolved', 'WARN', %s, %s, "
            "ARRAY['bl-server-b'], ARRAY['cpu_usage'], ARRAY['cpu_anomalies'], 40, "
            "'cpu_anomalies', 'bl-server-b', 'cpu_usage', %s, 'hot', 'false positive', true) "
            "ON CONFLICT (incident_id) DO NOTHING",
            (hot[0][1], hot[-1][2], hot[0][1]),
        )
        conn.commit()
    try:
        dags_test(airflow_stack, "baseline_stats", BASELINE_END)
    finally:
        with db.connect(settings, airflow_stack.secrets, role="owner") as conn:
            conn.execute("DELETE FROM incidents WHERE incident_id = 'bl-incident'")
    with db.connect(settings, airflow_stack.secrets) as conn:
        rows = conn.execute(
            "SELECT entity, mean, variance, stddev, samples, window_end FROM baselines "
            "WHERE metric = 'cpu_usage' AND entity LIKE 'bl-server-%' ORDER BY entity"
        ).fetchall()
    assert [row[0] for row in rows] == sorted(servers)
    for entity, mean, variance, stddev, samples, window_end in rows:
        values = np.asarray(raw[entity])  # normal windows only (the stale one is outside)
        assert samples == len(values)
        assert mean == pytest.approx(values.mean(), rel=1e-9)
        assert variance == pytest.approx(values.var(ddof=1), rel=1e-9)
        assert stddev == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert window_end == BASELINE_END


# --- retrain_cdn_kmeans --------------------------------------------------------------------
# Aligned to the daily schedule: a manual run's data interval ends at the last boundary.
KMEANS_ENDS = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


@pytest.mark.usefixtures("initialised")
def test_retrain_cdn_kmeans_versions_registers_and_promotes(
    airflow_stack: LocalStack, settings: Settings
) -> None:
    hour = timedelta(hours=1)  # one hour of events in each run's training window
    batch = make_generator("cdn", settings).generate(
        int((KMEANS_ENDS[0] - hour).timestamp() * 1000),
        int((KMEANS_ENDS[0] + hour).timestamp() * 1000),
    )
    producer = make_producer(settings.kafka_bootstrap)
    try:
        feed_batch(batch, settings, producer)
    finally:
        producer.close()
    for end in KMEANS_ENDS:
        dags_test(airflow_stack, "retrain_cdn_kmeans", end)
    with db.connect(settings, airflow_stack.secrets) as conn:
        rows = conn.execute(
            "SELECT version, path, threshold, metrics, promoted FROM model_registry "
            "WHERE model_name = 'cdn_kmeans' AND version IN (%s, %s) ORDER BY version",
            tuple(end.strftime("%Y%m%dT%H%M%SZ") for end in KMEANS_ENDS),
        ).fetchall()
        promoted = conn.execute(
            "SELECT count(*) FROM model_registry WHERE model_name = 'cdn_kmeans' AND promoted"
        ).fetchone()[0]
    assert len(rows) == 2
    assert promoted == 1
    first, second = rows

    def earned(metrics: dict[str, Any]) -> bool:  # should_promote, against that run's incumbent
        incumbent = metrics["incumbent"]
        return incumbent is None or metrics["silhouette"] >= incumbent["silhouette"] - 0.02

    for version, path, threshold, metrics, _promoted in (first, second):
        assert (settings.models_path / "cdn_kmeans" / version / "stages").is_dir(), path
        assert 0 < threshold < float("inf")
        assert -1 <= metrics["silhouette"] <= 1
        assert metrics["holdout_rows"] > 0
    assert first[3]["incumbent"] is None or first[3]["incumbent"]["silhouette"] is not None
    assert second[3]["incumbent"] is not None  # judged against the promoted first version
    assert second[4] == earned(second[3])
    if not second[4]:  # promoting the second would have demoted the first
        assert first[4] == earned(first[3])


# --- forecast_ip_traffic -------------------------------------------------------------------
FORECAST_END = datetime(2026, 4, 11, tzinfo=UTC)


@pytest.mark.usefixtures("initialised")
def test_forecast_dag_fits_long_series_and_reports_short_ones(
    airflow_stack: LocalStack, settings: Settings
) -> None:
    hours = pd.date_range(
        FORECAST_END - timedelta(days=10), FORECAST_END, freq="h", inclusive="left"
    )
    t = np.arange(len(hours))
    rng = np.random.default_rng(8)
    rows = []
    for ip in ("fc-ip-1", "fc-ip-2"):
        values = 50 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, len(t))
        rows += [
            (ip, "unq_dst_ip", ts.to_pydatetime(), float(v))
            for ts, v in zip(hours, values, strict=True)
        ]
    # fc-ip-2 reports every 10 minutes, scattered ±20 % around its hour's level
    rows += [
        ("fc-ip-2", "unq_dst_ip", (ts + pd.Timedelta(minutes=m)).to_pydatetime(), float(v * f))
        for ts, v in zip(hours, values, strict=True)
        for m, f in ((10, 0.8), (20, 1.2), (30, 0.9), (40, 1.1), (50, 1.0))
    ]
    rows += [("fc-ip-short", "unq_dst_ip", ts.to_pydatetime(), 1.0) for ts in hours[-30:]]
    with db.connect(settings, airflow_stack.secrets) as conn:
        db.upsert_rows(
            conn, "ip_history", ("ip", "feature", "ts", "value"), rows, ("ip", "feature", "ts")
        )
    dags_test(airflow_stack, "forecast_ip_traffic", FORECAST_END)
    with db.connect(settings, airflow_stack.secrets) as conn:
        forecasts = conn.execute(
            "SELECT ip, count(*), min(ds), max(ds), "
            "bool_and(yhat_lower <= yhat AND yhat <= yhat_upper), "
            "bool_and(abs(sample_lower - yhat_lower) <= 1e-9 * (1 + abs(yhat_lower)) "
            "AND abs(sample_upper - yhat_upper) <= 1e-9 * (1 + abs(yhat_upper))), "
            "bool_and(sample_lower < yhat_lower AND sample_upper > yhat_upper) "
            "FROM ip_forecasts WHERE ip LIKE 'fc-ip-%' GROUP BY ip ORDER BY ip"
        ).fetchall()
        quality = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT ip, model, points, coverage, reason FROM forecast_quality "
                "WHERE ip LIKE 'fc-ip-%%' AND run_id = %s",
                ("forecast-" + FORECAST_END.strftime("%Y%m%dT%H%M%SZ"),),
            )
        }
    horizon = settings.models.prophet.horizon_hours
    assert [row[0] for row in forecasts] == ["fc-ip-1", "fc-ip-2"]
    for _ip, count, first_ds, last_ds, ordered, _band_is_interval, _band_wider in forecasts:
        assert count == horizon
        assert first_ds == FORECAST_END
        assert last_ds == FORECAST_END + timedelta(hours=horizon - 1)
        assert ordered
    # one sample an hour: a sample falls where the hourly mean does; scattered samples: wider
    assert forecasts[0][5:] == (True, False)
    assert forecasts[1][5:] == (False, True)
    assert quality["fc-ip-short"][0] == "none"
    assert "30 <" in quality["fc-ip-short"][3]
    for ip in ("fc-ip-1", "fc-ip-2"):
        model, points, coverage, _reason = quality[ip]
        assert model in {"prophet", "seasonal_naive"}
        assert points == len(hours)  # hourly points, however often the IP reported
        assert coverage >= 0.7
