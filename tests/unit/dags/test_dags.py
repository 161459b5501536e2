"""Every DAG file imports cleanly in Airflow's own environment, light and well described.

Airflow lives in its own virtual environment, so the DagBag is loaded there (a subprocess of
``.venv-airflow/bin/python``) and reports back as JSON; no metadata database is needed.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

from lambdawatch.core.settings import load_settings
from lambdawatch.pipelines.backtest import DETECTORS
from lambdawatch.pipelines.platform_init import SCHEDULES_MODULE, render_schedules

ROOT = Path(__file__).resolve().parents[3]
PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

heavy = ("pyspark", "prophet", "kafka", "confluent_kafka", "redis", "psycopg", "pandas", "numpy",
         "lambdawatch.pipelines", "generators")
sys.path.insert(0, sys.argv[1])  # as Airflow's processes do with DAGS_FOLDER
bag = DagBag(sys.argv[1])
report = {"import_errors": {k: v for k, v in bag.import_errors.items()}, "dags": {},
          "heavy_modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy
                                  or any(m.startswith(h) for h in heavy if "." in h))}
for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {
        "fileloc": dag.fileloc,
        "timetable": type(dag.timetable).__name__,
        "cron": getattr(dag.timetable, "expression", None),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "doc_md": bool((dag.doc_md or "").strip()),
        "retries": [t.retries for t in dag.tasks],
        "tasks": sorted(t.task_id for t in dag.tasks),
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "spark_submissions": {t.task_id: [type(t).__mro__[1].__name__, t._conn_id, t.job]
                              for t in dag.tasks if hasattr(t, "job")},
    }
print(json.dumps(report))
"""
PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *"}  # Airflow stores the expansion
EXPECTED_TASKS = {
    "InitialDag": [
        "check_schema",
        "create_hot_store_series",
        "create_topics",
        "unpause_scheduled_dags",
        "validate_config",
    ],
    "feed_events": ["feed", "record_run"],
    "archive_hot_store": ["archive", "record_run"],
    "baseline_stats": ["baselines", "record_run"],
    "forecast_ip_traffic": ["forecast", "record_run"],
    "retrain_cdn_kmeans": ["record_run", "train"],
    "archive_raw_events": ["archive", "record_run"],
    "apply_retention": ["record_run", "retain"],
    "backtest": ["record_run", "run"],
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = load_settings()
    python = settings.airflow_venv_path / "bin" / "python"
    home = tmp_path_factory.mktemp("airflow-home")
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        # importing a DAG file reads no configuration: with none to read, parsing still works
        "LAMBDAWATCH_CONFIG": str(home / "no-config.json"),
        "LAMBDAWATCH_ENV_FILE": str(home / "no.env"),
    }
    result = subprocess.run(
        [str(python), "-c", PROBE, str(ROOT / "dags")],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_no_import_errors(dagbag: dict) -> None:
    assert dagbag["import_errors"] == {}


def test_expected_dags_and_tasks(dagbag: dict) -> None:
    dags = dagbag["dags"]
    assert {dag_id: info["tasks"] for dag_id, info in dags.items()} == EXPECTED_TASKS


def test_every_dag_is_documented_tagged_and_retried(dagbag: dict) -> None:
    for dag_id, info in dagbag["dags"].items():
        assert info["doc_md"], dag_id
        assert "lambdawatch" in info["tags"], dag_id
        assert all(retries >= 1 for retries in info["retries"]), dag_id
        assert info["catchup"] is False, dag_id  # no catch-up storm
        assert info["max_active_runs"] == 1, dag_id


def test_schedules_follow_config(dagbag: dict) -> None:
    dags = dagbag["dags"]
    assert dags["InitialDag"]["timetable"] == "NullTimetable"  # manual only
    assert dags["InitialDag"]["is_paused_upon_creation"] is False
    schedules = load_settings().schedules
    scheduled = ("feed_events", "archive_hot_store", "baseline_stats", "retrain_cdn_kmeans",
                 "archive_raw_events", "apply_retention")  # fmt: skip
    for dag_id in scheduled:
        # interval timetables: the loads are keyed by a real, non-empty data interval
        assert dags[dag_id]["timetable"] == "CronDataIntervalTimetable", dag_id
        configured = getattr(schedules, dag_id)
        assert dags[dag_id]["cron"] == PRESETS.get(configured, configured), dag_id
    assert schedules.forecast_ip_traffic == "asset"
    assert dags["forecast_ip_traffic"]["timetable"] == "AssetTriggeredTimetable"
    assert dags["backtest"]["timetable"] == "NullTimetable"  # on demand, from its form


def test_batch_jobs_are_spark_submit_operators_on_spark_default(dagbag: dict) -> None:
    """Retargeting the cluster is an edit of the ``spark_default`` connection, as Airflow users
    expect: every Spark job is submitted by the provider's operator on it."""
    submissions = {
        dag_id: info["spark_submissions"]
        for dag_id, info in dagbag["dags"].items()
        if info["spark_submissions"]
    }
    assert submissions == {
        "baseline_stats": {"baselines": ["SparkSubmitOperator", "spark_default", "baseline_stats"]},
        "forecast_ip_traffic": {
            "forecast": ["SparkSubmitOperator", "spark_default", "forecast_ip_traffic"]
        },
        "retrain_cdn_kmeans": {
            "train": ["SparkSubmitOperator", "spark_default", "retrain_cdn_kmeans"]
        },
        "archive_raw_events": {
            "archive": ["SparkSubmitOperator", "spark_default", "archive_raw_events"]
        },
        "backtest": {"run": ["SparkSubmitOperator", "spark_default", "backtest"]},
    }


def test_the_backtest_form_offers_every_detector() -> None:
    """The DAG file lists them literally (parsing imports no pipeline): the same list."""
    tree = ast.parse((ROOT / "dags" / "backtest.py").read_text())
    listed = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DETECTORS"
    )
    assert sorted(listed) == sorted(DETECTORS)


def test_the_rendered_schedules_are_config_jsons() -> None:
    """``lambdawatch prepare`` renders them; a changed config.json needs a prepare."""
    rendered = (ROOT / SCHEDULES_MODULE).read_text()
    assert rendered == render_schedules(load_settings()), "run `lambdawatch prepare`"


def test_parsing_does_no_heavy_imports(dagbag: dict) -> None:
    """DAG files import lambdawatch's pipelines, Spark, clients and pandas inside tasks only."""
    assert dagbag["heavy_modules"] == []
