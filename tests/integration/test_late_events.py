"""A backfill behind the live watermark: every event is a late dead letter, and counted.

The speed layer's two server-event windowed queries run available-now on their own
checkpoints from the topic's end. A recent event moves their watermark; then a user's
two-column CPU file from last year is replayed (``lambdawatch replay --source server``, its
location set), which warns before sending. The next run must send each of its events to the
dead-letter topic once per query, with the reason ``late: N s behind the watermark of
<query>``, and record Spark's count of them in ``speed_layer_progress``: the same numbers.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lambdawatch.core import db
from lambdawatch.core.producers import make_producer
from lambdawatch.core.settings import Settings
from lambdawatch.ops.stack.local import LocalStack
from tests.integration.kafka_reading import end_offsets, read_topic
from tests.integration.speed_layer_process import speed_layer_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUERIES = ("cpu_anomalies", "server_status")
BACKFILL = 40  # one reading every 500 ms, a year before the live events
LIVE = datetime(2023, 6, 1, tzinfo=UTC)
# where the box stood: server_status reads only located servers
LOCATION = "datacenter=old-dc,country_code=FR,country_name=France,city=Lyon,status_color=Green"
LOCATION += ",severity_level=1"
LATE = re.compile(r"late: (\d+\.\d{3}) s behind the watermark of (cpu_anomalies|server_status)")


def _speed_layer(checkpoints: Path) -> None:
    run = subprocess.run(
        [*speed_layer_command(",".join(QUERIES), checkpoints), "--available-now",
         "--starting-offsets", "latest"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]


@pytest.mark.usefixtures("kafka_topics")
def test_a_backfill_behind_the_watermark_is_dead_lettered_and_counted(
    local_stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    server_topic = settings.topic("server_events").name
    _speed_layer(checkpoints)  # checkpoints at the topic's end: nothing before counts

    # "live" is older than every other test's events: a test reading the topic from its start
    # must not find its own events behind this one's watermark
    now = LIVE
    live = {"server_id": "late-test-live", "cpu_usage": 30.0, "timestamp": now.isoformat(),
            **dict(pair.split("=") for pair in LOCATION.split(","))}  # fmt: skip
    live["severity_level"] = int(live["severity_level"])
    producer = make_producer(settings.kafka_bootstrap, "kafka-python")
    try:
        producer.send(server_topic, b"late-test-live", orjson.dumps(live), None)
        producer.flush()
    finally:
        producer.close()
    _speed_layer(checkpoints)  # the watermark moves to about now

    first = now - timedelta(days=365)
    backfill = tmp_path / "old-box.csv"
    backfill.write_text(
        "time_ms,cpu\n"
        + "".join(
            f"{int((first + timedelta(milliseconds=500 * i)).timestamp() * 1000)},{40 + i % 7}\n"
            for i in range(BACKFILL)
        )
    )
    dead_topic = settings.topic("dead_letters").name
    letters_before = end_offsets(settings.kafka_bootstrap, dead_topic)
    replay = subprocess.run(
        [sys.executable, "-m", "lambdawatch.ops.cli", "replay", str(backfill), "--source",
         "server", "--value-column", "cpu", "--max-rate", "--set", LOCATION],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    said = " ".join(replay.stdout.split())
    assert "behind the live watermark of cpu_anomalies" in said
    assert "server_status (" in said
    assert f"lambdawatch backtest {backfill} --detector cpu_anomalies" in said

    started = datetime.now(UTC)
    _speed_layer(checkpoints)

    late: dict[str, dict[str, Any]] = {query: {} for query in QUERIES}
    for record in read_topic(settings.kafka_bootstrap, dead_topic):
        if record.offset < letters_before.get(record.partition, 0):
            continue
        letter = json.loads(record.value)
        match = LATE.fullmatch(letter["reason"])
        if match is None or letter["source_topic"] != server_topic:
            continue
        event = json.loads(base64.b64decode(letter["raw_base64"]))
        if event.get("server_id") == "old-box":
            assert match.group(2) == letter["query"]
            late[letter["query"]][event["timestamp"]] = float(match.group(1))
    for query in QUERIES:
        assert len(late[query]) == BACKFILL, query  # every event, once per query
        assert min(late[query].values()) > 364 * 86_400  # about a year behind

    with db.connect(settings, local_stack.secrets) as conn:
        counted = dict(
            conn.execute(
                "SELECT query, sum(late_rows) FROM speed_layer_progress WHERE batch_ts >= %s "
                "AND query = ANY(%s) AND source = %s GROUP BY query",
                (started, list(QUERIES), server_topic),
            ).fetchall()
        )
    assert counted == dict.fromkeys(QUERIES, BACKFILL)  # Spark's count is the letters' count
