"""History through the same code: events sent to Kafka, archived by the real Spark job, then
backtested over their span, give exactly the verdicts of a backtest of the file they came from.

The archive job runs twice for the same hour (a retry): the hour's rows stay the same.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest

from generators.replay import plan_replay
from lambdawatch.core import db
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.backtest import backtest, options_from_cli
from lambdawatch.pipelines.spark_jobs import run_spark_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIRST_MS = 1_714_903_200_000  # 2024-05-05T10:00:00Z: event times no other test uses
SAMPLES = 400  # one every 100 ms per server, 40 s; a spike in the middle


def _cpu_file(path: Path) -> Path:
    lines = ["time_ms,box,cpu"]
    for i in range(SAMPLES):
        for box in ("arch-a", "arch-b"):
            cpu = 40 + (i * 7919 % 13) - 6 + (45 if box == "arch-a" and 200 <= i < 210 else 0)
            lines.append(f"{FIRST_MS + 100 * i},{box},{cpu}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.usefixtures("kafka_topics")
def test_archived_history_backtests_exactly_as_its_file(
    local_stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    path = _cpu_file(tmp_path / "arch.csv")
    options = options_from_cli("cpu_anomalies", "box=server_id", None, "time_ms", "cpu", 40, 4)
    events = [event for _ms, _key, event in plan_replay(path, options.replay).events]
    sent_at = datetime.now(UTC)
    producer = make_producer(settings.kafka_bootstrap, "kafka-python")
    try:
        topic = settings.topic("server_events").name
        for event in events:
            producer.send(topic, str(event["server_id"]).encode(), orjson.dumps(event), None)
        producer.flush()
    finally:
        producer.close()

    hour = sent_at.replace(minute=0, second=0, microsecond=0)
    for _attempt in range(2):  # a retried run replaces the hour
        interval = ["--from", hour.isoformat(), "--to", (hour + timedelta(hours=1)).isoformat()]
        summary = run_spark_job(settings, "archive_raw_events", interval)
        assert summary["hours"] == {hour.isoformat(): summary["hours"][hour.isoformat()]}
        assert summary["hours"][hour.isoformat()]["server"] >= len(events)
    stored = pd.read_parquet(
        settings.history_path / "raw" / "source=server" / f"arrived={hour:%Y-%m-%dT%H}"
    )
    event_time = pd.to_datetime(stored["event_time"], utc=True)  # Spark's UTC instants
    first = pd.Timestamp(FIRST_MS, unit="ms", tz="UTC")
    ours = stored[(event_time >= first) & (event_time < first + pd.Timedelta(hours=1))]
    assert len(ours) == len(events)  # once each, after two runs

    run = subprocess.run(
        [sys.executable, "-m", "lambdawatch.ops.cli", "backtest", "--detector", "cpu_anomalies",
         "--from", "2024-05-05T10:00:00Z", "--to", "2024-05-05T11:00:00Z", "--normal-mean", "40",
         "--normal-stddev", "4", "--run-id", "test-archived-backtest"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    from_file = backtest(path, options, settings)
    findings = from_file[from_file["severity"] != "SAFE"]
    assert len(findings) > 0  # the spike
    with db.connect(settings, local_stack.secrets) as conn:
        recorded = conn.execute(
            "SELECT judged, warn, error, history FROM backtest_runs "
            "WHERE run_id = 'test-archived-backtest'"
        ).fetchone()
        archived = conn.execute(
            "SELECT entity, window_start, value, score, severity FROM backtest_anomalies "
            "WHERE run_id = 'test-archived-backtest' ORDER BY entity, window_start"
        ).fetchall()
    assert recorded[:3] == (
        len(from_file),
        int((from_file["severity"] == "WARN").sum()),
        int((from_file["severity"] == "ERROR").sum()),
    )
    assert recorded[3].startswith("archive server 2024-05-05T10:00:00+00:00")
    assert archived == [
        (r.entity, r.window_start.to_pydatetime(), r.value, r.score, r.severity)
        for r in findings.itertuples()
    ]
