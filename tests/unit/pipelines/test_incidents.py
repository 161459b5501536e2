"""An operator's acts on incidents (``pipelines.incidents.change_for``)."""

from __future__ import annotations

import pytest

from lambdawatch.pipelines.incidents import Action, Change, IncidentError, change_for


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
