"""Incident notifications' pure parts: signature, backoff, payload (``core.webhooks``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from lambdawatch.core.webhooks import DeliveryPolicy, payload, retry_delay, signature, verify

POLICY = DeliveryPolicy(
    timeout=timedelta(seconds=5),
    attempts=10,
    first_delay=timedelta(seconds=1),
    max_delay=timedelta(seconds=30),
    max_age=timedelta(hours=1),
)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
    assert signature(b"key", 1700000000, b'{"a":1}') == (
        "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
    )


@pytest.mark.parametrize(
    ("secret", "stamp", "body", "valid"),
    [
        (b"key", 1700000000, b'{"a":1}', True),
        (b"other", 1700000000, b'{"a":1}', False),  # wrong secret
        (b"key", 1700000001, b'{"a":1}', False),  # replayed with another timestamp
        (b"key", 1700000000, b'{"a":2}', False),  # tampered body
    ],
)
def test_a_receiver_verifies_only_what_was_signed(
    secret: bytes, stamp: int, body: bytes, valid: bool
) -> None:
    header = signature(b"key", 1700000000, b'{"a":1}')
    assert verify(secret, stamp, body, header) is valid


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]
)
def test_retries_back_off_exponentially_up_to_the_cap(attempts: int, seconds: int) -> None:
    assert retry_delay(attempts, POLICY) == timedelta(seconds=seconds)


def test_the_payload_carries_the_event_and_the_incident() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    body = orjson.loads(
        payload(
            {"transition": "opened", "at": at, "by_whom": "stream", "note": None},
            {"incident_id": "abc", "state": "open", "entities": ["srv-1"]},
        )
    )
    assert body == {
        "event": "opened",
        "at": "2026-01-01T00:00:00Z",
        "by": "stream",
        "note": None,
        "incident": {"incident_id": "abc", "state": "open", "entities": ["srv-1"]},
    }
