"""Pure pieces of the orchestration layer: intervals, archival rows, spark-submit commands,
Airflow's rendered environment, model promotion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import load_settings
from lambdawatch.ops.stack.airflow_node import airflow_environment, metadata_url
from lambdawatch.ops.stack.superset_node import superset_environment, superset_program
from lambdawatch.pipelines.archive import archive_cutoff_ms, history_rows, next_slice_ms
from lambdawatch.pipelines.event_feed import interval_ms
from lambdawatch.pipelines.spark_jobs import (
    backtest_arguments,
    connection_action,
    spark_connection,
    spark_submission,
    spark_submit_command,
)
from spark_apps.detectors.cdn_kmeans import should_promote

END = datetime(2026, 5, 1, 12, tzinfo=UTC)
SECRETS = Secrets(
    postgres_password="p",  # type: ignore[arg-type]
    airflow_db_password="a b/c@d",  # type: ignore[arg-type]
    superset_db_password="s",  # type: ignore[arg-type]
    speed_layer_db_password="l",  # type: ignore[arg-type]
    batch_db_password="b",  # type: ignore[arg-type]
    redis_password="r",  # type: ignore[arg-type]
    airflow_admin_password="adm",  # type: ignore[arg-type]
    superset_admin_password="sadm",  # type: ignore[arg-type]
    superset_secret_key="k",  # type: ignore[arg-type]
    airflow_fernet_key="f",  # type: ignore[arg-type]
    airflow_jwt_secret="j",  # type: ignore[arg-type]
    airflow_api_secret_key="api",  # type: ignore[arg-type]
    incident_webhook_secret="hook",  # type: ignore[arg-type]
)


def test_interval_bounds_are_milliseconds_and_validated() -> None:
    assert interval_ms(END - timedelta(minutes=5), END) == (
        int(END.timestamp() * 1000) - 300_000,
        int(END.timestamp() * 1000),
    )
    with pytest.raises(ValueError, match="empty data interval"):
        interval_ms(END, END)
    with pytest.raises(ValueError, match="timezone-aware"):
        interval_ms(datetime(2026, 5, 1), datetime(2026, 5, 2))


@pytest.mark.parametrize(
    ("slice_ms", "read", "wanted"),
    [
        (3_600_000, 1_000_000, 1_800_000),  # twice too dense: half as long
        (3_600_000, 500_000, 3_600_000),  # just right
        (3_600_000, 100_000, 18_000_000),  # sparse: five times as long
        (3_600_000, 10_000, 28_800_000),  # very sparse: at most eightfold
        (3_600_000, 0, 28_800_000),  # empty: eightfold
        (2_000, 10**9, 1_000),  # never under a second
    ],
)
def test_a_slice_follows_the_density_the_last_one_found(
    slice_ms: int, read: int, wanted: int
) -> None:
    assert next_slice_ms(slice_ms, read, 500_000) == wanted


def test_archive_cutoff_counts_back_from_the_interval_not_now() -> None:
    assert archive_cutoff_ms(END, 6) == int((END - timedelta(hours=6)).timestamp() * 1000)
    assert archive_cutoff_ms(END, 0.5) == int((END - timedelta(minutes=30)).timestamp() * 1000)


def test_history_rows_need_an_identity_for_every_series() -> None:
    rows = history_rows({"k1": [(0, 1.5), (60_000, 2.5)]}, {"k1": ("10.0.0.1", "unq_dst_ip")})
    assert rows == [
        ("10.0.0.1", "unq_dst_ip", 0, 1.5),
        ("10.0.0.1", "unq_dst_ip", 60_000, 2.5),
    ]
    with pytest.raises(KeyError, match="no ip/feature identity"):
        history_rows({"mystery": [(0, 1.0)]}, {})


def test_spark_submit_targets_the_configured_master_with_matching_packages() -> None:
    settings = load_settings(
        spark_master="spark://spark-master:7077", spark_driver_host="airflow-scheduler"
    )
    command = spark_submit_command(settings, "retrain_cdn_kmeans", "4.2.0", ["--x", "1"])
    assert command[0].endswith("/spark-submit")
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert "spark.driver.host=airflow-scheduler" in command  # executors connect back to it
    assert not settings.spark_is_local
    packages = command[command.index("--packages") + 1].split(",")
    assert "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0" in packages
    assert any(p.startswith("org.postgresql:postgresql:") for p in packages)
    assert command[-3].endswith("spark_apps/jobs/retrain_cdn_kmeans.py")
    assert command[-2:] == ["--x", "1"]
    baseline = spark_submit_command(settings, "baseline_stats", "4.2.0")
    assert "spark-sql-kafka" not in baseline[baseline.index("--packages") + 1]
    with pytest.raises(ValueError, match="unknown batch job"):
        spark_submit_command(settings, "rm -rf", "4.2.0")


@pytest.mark.parametrize(
    ("master", "host", "port"),
    [
        ("local[*]", "local[*]", None),
        ("spark://spark-master:7077", "spark://spark-master", 7077),
    ],
)
def test_spark_default_describes_the_master_the_settings_name(
    master: str, host: str, port: int | None
) -> None:
    connection = spark_connection(load_settings(spark_master=master))
    assert (connection["conn_type"], connection["host"], connection["port"]) == (
        "spark", host, port,
    )  # fmt: skip
    extra = json.loads(connection["extra"])
    assert extra == {"deploy-mode": "client", "spark-binary": "spark-submit"}  # on PATH


def test_the_provider_and_the_cli_submit_the_same_job() -> None:
    settings = load_settings(spark_master="spark://spark-master:7077")
    submission = spark_submission(settings, "baseline_stats", "4.2.0", ["--interval-end", "t"])
    command = spark_submit_command(settings, "baseline_stats", "4.2.0", ["--interval-end", "t"])
    assert command == submission.command(command[0], "spark://spark-master:7077")
    for key, value in submission.conf.items():
        assert f"{key}={value}" in command
    assert submission.env["PYSPARK_PYTHON"] == str(settings.spark_python_path)
    assert "SPARK_LOCAL_IP" not in submission.env  # executors elsewhere reach the driver


WANTED = {"conn_type": "spark", "host": "spark://h", "port": 7077, "extra": "{}"}
BEFORE = {"conn_type": "spark", "host": "local[*]", "port": None, "extra": "{}"}
EDITED = {"conn_type": "spark", "host": "spark://ops-cluster", "port": 7077, "extra": "{}"}


@pytest.mark.parametrize(
    ("current", "before", "action"),
    [
        (None, None, "create"),  # a fresh Airflow
        (WANTED, BEFORE, "none"),  # already right
        (BEFORE, BEFORE, "update"),  # settings moved (another profile), nobody edited it
        (EDITED, BEFORE, "keep"),  # an operator retargeted it in Connections
        (EDITED, None, "keep"),  # one that was there before lambdawatch
    ],
)
def test_up_moves_spark_default_with_the_settings_but_keeps_an_operator_s_edit(
    current: dict | None, before: dict | None, action: str
) -> None:
    assert connection_action(current, WANTED, before) == action


def test_the_archive_reads_kafka_and_the_backtest_submits_the_pipeline_s_own_job() -> None:
    settings = load_settings()
    archive = spark_submit_command(settings, "archive_raw_events", "4.2.0", ["--from", "h"])
    assert "spark-sql-kafka" in archive[archive.index("--packages") + 1]
    assert archive[-3].endswith("spark_apps/jobs/archive_raw_events.py")
    backtest = spark_submit_command(settings, "backtest", "4.2.0")
    assert backtest[-1].endswith("lambdawatch/pipelines/backtest_job.py")
    assert Path(backtest[-1]).is_file()
    assert Path(archive[-3]).is_file()


def test_the_backtest_form_becomes_the_job_s_arguments() -> None:
    form = {"detector": "cpu_anomalies", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02",
            "source": None, "normal_mean": 40.0, "normal_stddev": 6}  # fmt: skip
    assert backtest_arguments(form, "manual__1") == [
        "--detector", "cpu_anomalies", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02",
        "--run-id", "manual__1", "--normal-mean", "40.0", "--normal-stddev", "6",
    ]  # fmt: skip


def test_airflow_environment_avoids_the_known_traps() -> None:
    settings = load_settings(airflow_port=18123, airflow_log_server_port=18124)
    env = airflow_environment(settings, SECRETS)
    assert env["PATH"].split(":")[0] == str(settings.airflow_venv_path / "bin")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert env["AIRFLOW__API__PORT"] == "18123"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18124"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["LAMBDAWATCH_VAR_DIR"] == str(settings.var_path)
    # passwords are URL-quoted; psycopg 3 serves the sync and async engines alike
    assert metadata_url(settings, SECRETS).startswith("postgresql+psycopg://airflow:a%20b%2Fc%40d@")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+psycopg_async")


def test_superset_runs_our_config_against_two_databases() -> None:
    settings = load_settings(superset_port=18555, postgres_port=15999)
    env = superset_environment(settings, SECRETS)
    config = Path(env["SUPERSET_CONFIG_PATH"])
    assert config.is_file()
    assert config.parent == settings.root / "superset"
    assert env["SUPERSET_METADATA_URL"].endswith("@127.0.0.1:15999/superset")
    assert env["LAMBDAWATCH_DATABASE_URI"].endswith(f"@127.0.0.1:15999/{settings.postgres_db}")
    assert env["SUPERSET_SECRET_KEY"] == "k"
    assert env["PATH"].split(":")[0] == str(settings.superset_venv_path / "bin")
    command = superset_program(settings, SECRETS).command
    assert command[command.index("--bind") + 1] == "127.0.0.1:18555"
    assert command[-1] == "superset.app:create_app()"


@pytest.mark.parametrize(
    ("candidate", "current", "promote"),
    [
        (0.40, None, True),  # first model
        (0.40, 0.30, True),  # better
        (0.29, 0.30, True),  # within the tolerance: fresh data wins
        (0.20, 0.30, False),  # worse on the same held-out set: kept out
    ],
)
def test_promotion_rule(candidate: float, current: float | None, promote: bool) -> None:
    incumbent = None if current is None else {"silhouette": current}
    assert should_promote({"silhouette": candidate}, incumbent) is promote
