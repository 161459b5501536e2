"""Incident notifications: each opening, escalation, reopening and resolution POSTed as JSON
to the configured webhooks, signed, retried with backoff, every delivery recorded.

``incident_transitions`` is the outbox: whatever writes an incident's transition (the
speed layer's ``incidents`` query, an operator's act) needs to know nothing of webhooks. A
``Notifier`` thread claims due deliveries (``FOR UPDATE SKIP LOCKED``, so two notifiers never
send one twice) and records each attempt in ``incident_deliveries``.

The signature follows the scheme Stripe and GitHub use: ``X-Lambdawatch-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the timestamp in
``X-Lambdawatch-Timestamp`` (a receiver rejects old ones, so a captured request cannot be
replayed later) and an idempotency key in ``X-Lambdawatch-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from lambdawatch.core.config_model import IncidentsConfig

log = logging.getLogger(__name__)
NOTIFIED = ("opened", "escalated", "reopened", "resolved", "false positive")
SIGNATURE_HEADER = "X-Lambdawatch-Signature"
TIMESTAMP_HEADER = "X-Lambdawatch-Timestamp"
DELIVERY_HEADER = "X-Lambdawatch-Delivery"


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: timedelta
    attempts: int  # then the delivery is recorded as failed
    first_delay: timedelta
    max_delay: timedelta
    max_age: timedelta  # transitions older than this when first seen are not sent


def delivery_policy(config: IncidentsConfig) -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout=config.webhook_timeout,
        attempts=config.webhook_attempts,
        first_delay=config.webhook_first_retry,
        max_delay=config.webhook_max_retry,
        max_age=config.webhook_max_age,
    )


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None
    error: str | None


Sender = Callable[[str, bytes, dict[str, str], float], Outcome]


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver checks (constant-time)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def retry_delay(attempts: int, policy: DeliveryPolicy) -> timedelta:
    """Exponential backoff after ``attempts`` failed tries: first_delay, twice that, … capped."""
    return min(policy.first_delay * (2 ** max(attempts - 1, 0)), policy.max_delay)


def delivery_id(incident_id: str, transition: str, at: datetime) -> str:
    return f"{incident_id}:{transition.replace(' ', '-')}:{at.isoformat()}"


def payload(transition: dict[str, Any], incident: dict[str, Any]) -> bytes:
    body = {
        "event": transition["transition"],
        "at": transition["at"],
        "by": transition["by_whom"],
        "note": transition["note"],
        "incident": incident,
    }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """One POST; any 2xx is delivered, anything else (or no answer) a failure to retry."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Outcome(200 <= response.status < 300, response.status, None)
    except urllib.error.HTTPError as exc:
        return Outcome(False, exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(False, None, str(reason)[:500])


def enqueue(conn: Any, webhooks: list[str], policy: DeliveryPolicy) -> int:
    """A pending delivery per webhook for every notified transition not queued yet (and
    recorded in the last ``max_age``); every transition read is marked queued, so each is
    read once. Two notifiers never queue one twice: the mark locks its row."""
    if not webhooks:
        return 0
    cursor = conn.execute(
        "WITH fresh AS (UPDATE incident_transitions SET queued_at = now() "
        "WHERE queued_at IS NULL RETURNING incident_id, transition, at, recorded_at) "
        "INSERT INTO incident_deliveries (incident_id, transition, at, webhook) "
        "SELECT f.incident_id, f.transition, f.at, w.url FROM fresh f "
        "CROSS JOIN unnest(%s::text[]) AS w(url) "
        "WHERE f.transition = ANY(%s) AND f.recorded_at > now() - %s "
        "ON CONFLICT DO NOTHING",
        (webhooks, list(NOTIFIED), policy.max_age),
    )
    return cursor.rowcount


def deliver_due(
    conn: Any,
    webhooks: list[str],
    secret: bytes,
    policy: DeliveryPolicy,
    send: Sender = post,
    limit: int = 50,
) -> int:
    """Queue new transitions, then try every due delivery once; returns how many were
    delivered. Each attempt is committed on its own."""
    with conn.transaction():
        enqueue(conn, webhooks, policy)
    delivered = 0
    for _ in range(limit):
        with conn.transaction():
            due = conn.execute(
                "SELECT d.incident_id, d.transition, d.at, d.webhook, d.attempts "
                "FROM incident_deliveries d WHERE d.state = 'pending' "
                "AND d.next_attempt_at <= now() AND d.webhook = ANY(%s) "
                "ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (webhooks,),
            ).fetchone()
            if due is None:
                break
            incident_id, transition, at, webhook, attempts = due
            body = _body(conn, incident_id, transition, at)
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(secret, stamp, body),
                TIMESTAMP_HEADER: str(stamp),
                DELIVERY_HEADER: delivery_id(incident_id, transition, at),
            }
            outcome = send(webhook, body, headers, policy.timeout.total_seconds())
            tried = attempts + 1
            state = (
                "delivered"
                if outcome.delivered
                else ("failed" if tried >= policy.attempts else "pending")
            )
            conn.execute(
                "UPDATE incident_deliveries SET attempts = %s, state = %s, last_status = %s, "
                "last_error = %s, last_attempt_at = now(), next_attempt_at = now() + %s, "
                "delivered_at = CASE WHEN %s THEN now() END "
                "WHERE incident_id = %s AND transition = %s AND at = %s AND webhook = %s",
                (
                    tried, state, outcome.status, outcome.error, retry_delay(tried, policy),
                    outcome.delivered, incident_id, transition, at, webhook,
                ),
            )  # fmt: skip
            delivered += outcome.delivered
            if not outcome.delivered:
                log.warning(
                    "webhook %s: %s (attempt %d of %d)", webhook, outcome.error, tried,
                    policy.attempts,
                )  # fmt: skip
    return delivered


def _body(conn: Any, incident_id: str, transition: str, at: datetime) -> bytes:
    cursor = conn.execute("SELECT * FROM incidents WHERE incident_id = %s", (incident_id,))
    names = [c.name for c in cursor.description]
    incident = dict(zip(names, cursor.fetchone() or (), strict=False))
    cursor = conn.execute(
        "SELECT transition, at, by_whom, note FROM incident_transitions "
        "WHERE incident_id = %s AND transition = %s AND at = %s",
        (incident_id, transition, at),
    )
    names = [c.name for c in cursor.description]
    return payload(dict(zip(names, cursor.fetchone() or (), strict=False)), incident)


class Notifier:
    """A daemon thread that delivers due notifications every ``interval`` seconds on its own
    connection (``connect`` makes one), until ``stop``."""

    def __init__(
        self,
        connect: Callable[[], Any],
        webhooks: list[str],
        secret: bytes,
        policy: DeliveryPolicy,
        interval: float = 1.0,
    ) -> None:
        self._connect, self._webhooks, self._secret = connect, webhooks, secret
        self._policy, self._interval = policy, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incident-notifier", daemon=True)

    def start(self) -> Notifier:
        if self._webhooks:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    while not self._stopping.is_set():
                        deliver_due(conn, self._webhooks, self._secret, self._policy)
                        self._stopping.wait(self._interval)
            except Exception:  # a database hiccup must not end notifications for good
                log.exception("incident notifier failed; retrying")
                self._stopping.wait(max(self._interval, 5.0))
