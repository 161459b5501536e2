"""An operator's acts on incidents (``pipelines.incidents.change_for``)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from lambdawatch.core.tables import INCIDENT_STATES
from lambdawatch.pipelines.incidents import (
    Action,
    Change,
    IncidentError,
    change_for,
    parse_duration,
)


@pytest.mark.parametrize(
    ("state", "action", "expected"),
    [
        ("open", "acknowledged", Change("acknowledged", None, False)),
        ("open", "resolved", Change("resolved", "operator", False)),
        ("acknowledged", "resolved", Change("resolved", "operator", False)),
        ("open", "false positive", Change("resolved", "false positive", True)),
        ("resolved", "false positive", Change("resolved", "false positive", True)),
    ],
)
def test_an_act_changes_the_state_it_is_allowed_in(
    state: str, action: Action, expected: Change
) -> None:
    assert change_for(state, action) == expected


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        ("acknowledged", "acknowledged", "cannot acknowledge an incident that is acknowledged"),
        ("resolved", "acknowledged", "cannot acknowledge an incident that is resolved"),
        ("resolved", "resolved", "the incident is already resolved"),
    ],
)
def test_an_act_its_state_does_not_allow_is_refused_in_one_line(
    state: str, action: Action, message: str
) -> None:
    with pytest.raises(IncidentError, match=message):
        change_for(state, action)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("1.5h", 5400)]
)
def test_a_duration_is_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "0h", "-1h", "2 weeks", "PT2H"])
def test_anything_else_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(IncidentError, match="is not a duration like 90s, 30m, 2h or 7d"):
        parse_duration(text)


def test_the_incidents_table_allows_exactly_the_declared_states() -> None:
    sql = (Path(__file__).resolve().parents[3] / "sql" / "012_incidents.sql").read_text()
    check = re.search(r"CHECK \(state IN \(([^)]*)\)\)", sql)
    assert check is not None
    assert tuple(v.strip().strip("'") for v in check.group(1).split(",")) == INCIDENT_STATES
