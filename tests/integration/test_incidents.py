"""Incidents in the real database: the incidents query's micro-batch (``apply_batch``), a
replayed batch, withdrawals, the quiet period, an operator's acts through the CLI, and
notifications POSTed to a local HTTP server.

Event times are in 2025, before every other test's, and the entities and datacenter are this
module's own, so incidents of other tests on the shared stack are neither joined nor resolved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from lambdawatch.core import db
from lambdawatch.core.settings import Settings
from lambdawatch.core.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryPolicy,
    deliver_due,
    enqueue,
    verify,
)
from lambdawatch.ops.cli import app
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.incidents import IncidentError, act_on_incident
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS, ANOMALY_KEY
from spark_apps.queries.incidents import apply_batch
from spark_apps.transforms.incidents import IncidentRules, Signal

pytestmark = pytest.mark.integration
T0 = datetime(2025, 6, 1, tzinfo=UTC)
RULES = IncidentRules(warn_count=3, warn_window=timedelta(minutes=1), quiet=timedelta(minutes=5))
NO_GROUPS = pa.table(
    {
        "entity": pa.array([], pa.string()),
        "group_kind": pa.array([], pa.string()),
        "group_name": pa.array([], pa.string()),
        "last_seen": pa.array([], pa.timestamp("us", tz="UTC")),
    }
)


def finding(entity: str, second: float, severity: str) -> Signal:
    start = T0 + timedelta(seconds=second)
    return Signal(
        "cpu_anomalies", entity, "cpu_usage", start, start + timedelta(milliseconds=500),
        97.0, 40.0, 5.5 if severity == "ERROR" else 1.5, severity, "baselines",
        start + timedelta(seconds=1),
    )  # fmt: skip


def groups_of(prefix: str, *entities: str) -> pa.Table:
    return pa.table(
        {
            "entity": list(entities),
            "group_kind": ["datacenter"] * len(entities),
            "group_name": [f"{prefix}-dc"] * len(entities),
            "last_seen": [T0] * len(entities),
        }
    )


def test_a_batch_opens_one_incident_per_datacenter_once_and_it_resolves_when_quiet(
    local_stack: LocalStack, settings: Settings
) -> None:
    query = "incidents-test-batch"
    a, b, lone = "it-batch-srv-1", "it-batch-srv-2", "it-batch-srv-3"
    arrived = [finding(a, 0, "ERROR"), finding(b, 10, "ERROR"), finding(lone, 0, "WARN")]
    with (
        db.connect(settings, local_stack.secrets, role="speed_layer") as conn,
        conn.transaction(force_rollback=True),
    ):
        groups = groups_of("it-batch", a, b)
        clock = T0 + timedelta(seconds=11)
        [opened] = apply_batch(conn, query, 7, arrived, [], groups, clock, RULES)
        assert opened.scope == "datacenter:it-batch-dc"
        assert opened.entities == (a, b)
        assert apply_batch(conn, query, 7, arrived, [], groups, clock, RULES) == []  # replayed
        rows = conn.execute(
            "SELECT entity, incident_id FROM incident_signals WHERE entity LIKE 'it-batch-%' "
            "ORDER BY entity"
        ).fetchall()
        assert rows == [(a, opened.incident_id), (b, opened.incident_id), (lone, None)]

        withdrawn = [finding(b, 10, "ERROR").key]
        quiet = T0 + timedelta(minutes=6)
        [resolved] = apply_batch(conn, query, 8, [], withdrawn, NO_GROUPS, quiet, RULES)
        assert (resolved.incident_id, resolved.state) == (opened.incident_id, "resolved")
        state, members, resolved_by, resolved_at = conn.execute(
            "SELECT state, members, resolved_by, resolved_at FROM incidents WHERE incident_id = %s",
            (opened.incident_id,),
        ).fetchone()
        assert (state, members, resolved_by) == ("resolved", 1, "quiet")
        assert resolved_at is not None
        transitions = conn.execute(
            "SELECT transition FROM incident_transitions WHERE incident_id = %s ORDER BY at",
            (opened.incident_id,),
        ).fetchall()
        assert transitions == [("opened",), ("resolved",)]
        pending = conn.execute(
            "SELECT count(*) FROM incident_signals WHERE entity = %s", (lone,)
        ).fetchone()
        assert pending == (0,)  # a lone WARN is dropped once older than the window

        with pytest.raises(IncidentError, match="already resolved"):
            act_on_incident(conn, opened.incident_id, "resolved", quiet)
        marked = act_on_incident(conn, opened.incident_id[:10], "false positive", quiet, "drill")
        assert (marked["false_positive"], marked["feedback"]) == (True, "drill")


@pytest.fixture
def cli_incident(local_stack: LocalStack, settings: Settings) -> Iterator[str]:
    """An incident committed for the CLI (which opens its own connection), removed after."""
    query, entity = "incidents-test-cli", "it-cli-srv-1"
    with db.connect(settings, local_stack.secrets, role="speed_layer") as conn:
        with conn.transaction():
            [incident] = apply_batch(
                conn, query, 1, [finding(entity, 0, "ERROR")], [], NO_GROUPS, T0, RULES
            )
        yield incident.incident_id
        conn.execute("DELETE FROM incidents WHERE incident_id = %s", (incident.incident_id,))
        conn.execute("DELETE FROM incident_progress WHERE query = %s", (query,))


def test_an_operator_lists_shows_acknowledges_and_resolves_an_incident(
    cli_incident: str, local_stack: LocalStack, settings: Settings
) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list", "--state", "open", "--limit", "1000"])
    assert listed.exit_code == 0, listed.output
    assert cli_incident[:8] in listed.output

    shown = runner.invoke(app, ["incidents", "show", cli_incident[:12]])
    assert shown.exit_code == 0, shown.output
    assert "ERROR cpu_anomalies on it-cli-srv-1" in shown.output
    assert "opened by stream" in shown.output

    assert runner.invoke(app, ["incidents", "ack", cli_incident]).exit_code == 0
    again = runner.invoke(app, ["incidents", "ack", cli_incident])
    assert again.exit_code == 1
    assert again.output.strip() == "cannot acknowledge an incident that is acknowledged"
    resolved = runner.invoke(app, ["incidents", "resolve", cli_incident])
    assert resolved.exit_code == 0, resolved.output
    assert f"{cli_incident} is resolved" in resolved.output

    with db.connect(settings, local_stack.secrets) as conn:
        rows = conn.execute(
            "SELECT transition, by_whom FROM incident_transitions WHERE incident_id = %s "
            "ORDER BY recorded_at, at",
            (cli_incident,),
        ).fetchall()
    assert rows == [("opened", "stream"), ("acknowledged", "operator"), ("resolved", "operator")]


def test_an_unknown_incident_or_state_is_one_line(local_stack: LocalStack) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["incidents", "show", "no-such-incident"])
    assert (unknown.exit_code, unknown.output.strip()) == (1, "no incident 'no-such-incident'")
    bad_state = runner.invoke(app, ["incidents", "list", "--state", "closed"])
    assert bad_state.exit_code == 1
    assert "--state must be one of open, acknowledged, resolved" in bad_state.output


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on a free local port that keeps what it received and answers 500 to
    the first request about ``failing`` (other tests' incidents may be notified too), then
    200."""

    def __init__(self) -> None:
        self.failing: bytes | None = None
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = 200
                if receiver.failing is not None and receiver.failing in body:
                    status, receiver.failing = 500, None
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def test_an_opened_incident_is_posted_signed_and_retried_until_delivered(
    local_stack: LocalStack, settings: Settings
) -> None:
    receiver = Receiver()
    policy = DeliveryPolicy(
        timeout=timedelta(seconds=5), attempts=5, first_delay=timedelta(0),
        max_delay=timedelta(0), max_age=timedelta(hours=1),
    )  # fmt: skip
    secret = local_stack.secrets.incident_webhook_secret.get_secret_value().encode()
    with db.connect(settings, local_stack.secrets, role="speed_layer") as conn:
        with conn.transaction():
            [incident] = apply_batch(
                conn, "incidents-test-hook", 1, [finding("it-hook-srv-1", 0, "ERROR")], [],
                NO_GROUPS, T0, RULES,
            )  # fmt: skip
        receiver.failing = incident.incident_id.encode()  # its first attempt gets HTTP 500
        try:
            for _ in range(3):  # the failed attempt, the retry, nothing left
                deliver_due(conn, [receiver.url], secret, policy)
            row = conn.execute(
                "SELECT state, attempts, last_status, delivered_at IS NOT NULL "
                "FROM incident_deliveries WHERE incident_id = %s",
                (incident.incident_id,),
            ).fetchone()
            # queued once: a webhook configured later is not sent what was queued before it
            with conn.transaction():
                enqueue(conn, ["http://127.0.0.1:9/later"], policy)
            requeued = conn.execute(
                "SELECT count(*) FROM incident_deliveries WHERE incident_id = %s "
                "AND webhook = 'http://127.0.0.1:9/later'",
                (incident.incident_id,),
            ).fetchone()[0]
        finally:
            conn.execute("DELETE FROM incidents WHERE incident_id = %s", (incident.incident_id,))
            conn.execute("DELETE FROM incident_progress WHERE query = 'incidents-test-hook'")
            conn.commit()
            receiver.shutdown()
    assert row == ("delivered", 2, 200, True)
    assert requeued == 0
    mine = [(h, b) for h, b in receiver.received if incident.incident_id.encode() in b]
    assert len(mine) == 2  # the failed attempt and the retry, the same delivery
    headers, body = mine[-1]
    assert verify(secret, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert headers[DELIVERY_HEADER].startswith(f"{incident.incident_id}:opened:")
    sent = orjson.loads(body)
    assert (sent["event"], sent["incident"]["state"]) == ("opened", "open")
    assert sent["incident"]["summary"].startswith("ERROR cpu_anomalies on it-hook-srv-1")


def test_a_false_positive_with_a_suppression_mutes_later_findings_which_stay_flagged(
    local_stack: LocalStack, settings: Settings
) -> None:
    query, entity = "incidents-test-mute", "it-mute-srv-1"
    later = finding(entity, 120, "ERROR")
    with db.connect(settings, local_stack.secrets, role="owner") as conn:
        with conn.transaction():
            [incident] = apply_batch(
                conn, query, 1, [finding(entity, 0, "ERROR")], [], NO_GROUPS, T0, RULES
            )
        try:
            marked = CliRunner().invoke(
                app,
                ["incidents", "false-positive", incident.incident_id, "--reason", "load test",
                 "--suppress-for", "2h"],
            )  # fmt: skip
            assert marked.exit_code == 0, marked.output
            with conn.transaction():
                muted = apply_batch(conn, query, 2, [later], [], NO_GROUPS, later.window_end, RULES)
                db.upsert_rows(
                    conn, "anomalies", ANOMALY_COLUMNS,
                    [tuple(getattr(later, c) for c in ANOMALY_COLUMNS)], ANOMALY_KEY,
                )  # fmt: skip
            flagged = conn.execute(
                "SELECT suppressed FROM v_anomalies WHERE entity = %s", (entity,)
            ).fetchall()
            rule = conn.execute(
                "SELECT detector, entity, metric, reason FROM suppressions WHERE incident_id = %s",
                (incident.incident_id,),
            ).fetchall()
        finally:
            conn.execute("DELETE FROM anomalies WHERE entity = %s", (entity,))
            conn.execute("DELETE FROM suppressions WHERE entity = %s", (entity,))
            conn.execute("DELETE FROM incidents WHERE incident_id = %s", (incident.incident_id,))
            conn.execute("DELETE FROM incident_progress WHERE query = %s", (query,))
            conn.commit()
    assert rule == [("cpu_anomalies", entity, "cpu_usage", "load test")]
    assert [i for i in muted if i.incident_id != incident.incident_id] == []  # none opened
    assert flagged == [(True,)]  # kept, and flagged


def test_suppress_for_takes_a_duration_and_goes_with_false_positive_only(
    local_stack: LocalStack,
) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["incidents", "false-positive", "x", "--suppress-for", "soon"])
    assert (bad.exit_code, bad.output.strip()) == (
        1, "--suppress-for: 'soon' is not a duration like 90s, 30m, 2h or 7d"
    )  # fmt: skip
