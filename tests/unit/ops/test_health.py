"""The speed layer's health verdict from its progress file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lambdawatch.ops.health import check_speed_layer, speed_layer_notice

QUERIES = ("a", "b")
PID = 4242


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        (None, "no query has started yet"),
        ({"a": {"status": "active", "updated": 0}}, "waiting for b"),
        (
            {"a": {"status": "active"}, "b": {"status": "terminated", "error": "x"}},
            "query terminated: b",
        ),
        (
            {"a": {"status": "active"}, "b": {"status": "started"}},
            "first micro-batch pending for b",
        ),
        (
            {"a": {"status": "active"}, "b": {"status": "restarting", "failures": 2, "error": "e"}},
            "restarting b after failure 2 (e)",
        ),
        (
            {"a": {"status": "active", "stale": True}, "b": {"status": "active", "stale": True}},
            "no progress for",
        ),
        ({"a": {"status": "active"}, "b": {"status": "active"}}, None),
    ],
)
def test_speed_layer_health(tmp_path: Path, state: dict | None, verdict: str | None) -> None:
    path = tmp_path / "speed_layer.json"
    if state is not None:
        now = time.time()
        for entry in state.values():
            entry["updated"] = now - 600 if entry.pop("stale", False) else now
        path.write_text(json.dumps({"pid": PID, "queries": state}))
    result = check_speed_layer(path, QUERIES, PID)
    if verdict is None:
        assert result is None
    else:
        assert result is not None
        assert verdict in result


def test_a_file_from_an_earlier_process_is_not_health(tmp_path: Path) -> None:
    path = tmp_path / "speed_layer.json"
    fresh = {"status": "active", "updated": time.time()}
    path.write_text(json.dumps({"pid": PID, "queries": {"a": fresh, "b": fresh}}))
    assert check_speed_layer(path, QUERIES, PID) is None
    assert check_speed_layer(path, QUERIES, PID + 1) == (
        "speed layer: progress file is from an earlier run"
    )
    assert check_speed_layer(path, QUERIES, None) is not None  # nothing supervised now


def test_records_a_query_set_aside_are_a_notice_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "speed_layer.json"
    fresh = {"status": "active", "updated": time.time()}
    document = {"pid": PID, "queries": {"a": fresh, "b": fresh}}
    path.write_text(json.dumps(document))
    assert speed_layer_notice(path, PID) is None
    document["set_aside"] = {
        "b": {
            "records": 3,
            "batches": 2,
            "disposition": "dead_letters",
            "last_at": "2026-11-26T06:00:00+00:00",
            "last_error": "unwritable: DataError: x",
            "batch_id": 9,
        }
    }
    path.write_text(json.dumps(document))
    assert check_speed_layer(path, QUERIES, PID) is None  # every query went on
    assert speed_layer_notice(path, PID) == (
        "b set aside 3 record(s) to dead_letters, last at 2026-11-26T06:00:00+00:00: "
        "unwritable: DataError: x"
    )
    assert speed_layer_notice(path, PID + 1) is None  # an earlier run's file says nothing now
