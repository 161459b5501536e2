"""What an operator does with incidents: list, show, acknowledge, resolve, mark false positive.

The speed layer's ``incidents`` query opens, escalates and resolves them
(``spark_apps/transforms/incidents``); an operator's act is recorded beside its transitions.
Each act locks the incident's row, so it waits for a micro-batch that holds it and the next
micro-batch sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from lambdawatch.core.tables import INCIDENT_STATES

Action = Literal["acknowledged", "resolved", "false positive"]
LIST_COLUMNS = (
    "incident_id",
    "state",
    "severity",
    "scope",
    "first_seen",
    "last_seen",
    "members",
    "summary",
)


DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class IncidentError(Exception):
    """An incident that is not there, or an act its state does not allow: said in one line."""


def parse_duration(text: str, option: str = "--suppress-for") -> timedelta:
    """``90s``, ``30m``, ``2h`` or ``7d``."""
    found = DURATION.match(text.strip().lower())
    if not found or float(found.group(1)) <= 0:
        raise IncidentError(f"{option}: {text!r} is not a duration like 90s, 30m, 2h or 7d")
    return timedelta(seconds=float(found.group(1)) * UNIT_SECONDS[found.group(2)])


@dataclass(frozen=True)
class Change:
    """An operator's act on an incident: its state after, and the fields to set."""

    state: str
    resolved_by: str | None
    false_positive: bool


def change_for(state: str, action: Action) -> Change:
    """What ``action`` does to an incident in ``state``.

    Acknowledging is for an incident still open; resolving for one not yet resolved; marking
    a false positive is allowed in any state (it is often decided after the fact) and resolves
    the incident.
    """
    if action == "acknowledged":
        if state != "open":
            raise IncidentError(f"cannot acknowledge an incident that is {state}")
        return Change("acknowledged", None, False)
    if action == "resolved":
        if state == "resolved":
            raise IncidentError("the incident is already resolved")
        return Change("resolved", "operator", False)
    return Change("resolved", "false positive", True)


def list_incidents(conn: Any, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest incidents (active first), optionally in one state."""
    if state is not None and state not in INCIDENT_STATES:
        raise IncidentError(f"--state must be one of {', '.join(INCIDENT_STATES)}, not {state!r}")
    cursor = conn.execute(
        f"SELECT {', '.join(LIST_COLUMNS)} FROM incidents "
        "WHERE %(state)s::text IS NULL OR state = %(state)s "
        "ORDER BY state = 'resolved', last_seen DESC LIMIT %(limit)s",
        {"state": state, "limit": limit},
    )
    return [dict(zip(LIST_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def find_incident(conn: Any, id_prefix: str, lock: bool = False) -> dict[str, Any]:
    """The incident whose id starts with ``id_prefix`` (a unique prefix will do)."""
    prefix = id_prefix.strip()
    if not prefix:
        raise IncidentError("an incident id is needed")
    cursor = conn.execute(
        "SELECT * FROM incidents WHERE starts_with(incident_id, %s) ORDER BY incident_id LIMIT 2"
        + (" FOR UPDATE" if lock else ""),
        (prefix,),
    )
    rows = cursor.fetchall()
    if not rows:
        raise IncidentError(f"no incident {prefix!r}")
    if len(rows) > 1:
        raise IncidentError(f"{prefix!r} names more than one incident: give more of its id")
    return dict(zip([c.name for c in cursor.description], rows[0], strict=True))


def incident_details(conn: Any, id_prefix: str) -> dict[str, Any]:
    """An incident with its findings (strongest first) and its transitions."""
    incident = find_incident(conn, id_prefix)
    cursor = conn.execute(
        "SELECT detector, entity, metric, window_start, window_end, value, expected, score, "
        "severity FROM incident_signals WHERE incident_id = %s "
        "ORDER BY severity = 'ERROR' DESC, score DESC NULLS LAST, window_start LIMIT 50",
        (incident["incident_id"],),
    )
    names = [c.name for c in cursor.description]
    incident["findings"] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    cursor = conn.execute(
        "SELECT transition, at, severity, by_whom, note FROM incident_transitions "
        "WHERE incident_id = %s ORDER BY recorded_at, at",
        (incident["incident_id"],),
    )
    names = [c.name for c in cursor.description]
    incident["transitions"] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return incident


def act_on_incident(
    conn: Any,
    id_prefix: str,
    action: Action,
    at: datetime,
    reason: str | None = None,
    suppress_for: timedelta | None = None,
) -> dict[str, Any]:
    """Apply an operator's act and record it; returns the incident after it.

    A false positive may come with ``suppress_for``: until then, anomalies of the detectors,
    entities and metrics of its findings (from its first finding on) join no incident.
    """
    if suppress_for is not None and action != "false positive":
        raise IncidentError("--suppress-for goes with false-positive only")
    with conn.transaction():
        incident = find_incident(conn, id_prefix, lock=True)
        change = change_for(incident["state"], action)
        conn.execute(
            "UPDATE incidents SET state = %(state)s, updated_at = now(), "
            "acknowledged_at = CASE WHEN %(state)s = 'acknowledged' THEN %(at)s "
            "ELSE acknowledged_at END, "
            "resolved_at = CASE WHEN %(state)s = 'resolved' "
            "THEN coalesce(resolved_at, %(at)s) END, "
            "resolved_by = CASE WHEN %(state)s = 'resolved' "
            "THEN coalesce(resolved_by, %(resolved_by)s) END, "
            "false_positive = false_positive OR %(false_positive)s, "
            "feedback = coalesce(%(reason)s, feedback) "
            "WHERE incident_id = %(id)s",
            {
                "state": change.state,
                "at": at,
                "resolved_by": change.resolved_by,
                "false_positive": change.false_positive,
                "reason": reason,
                "id": incident["incident_id"],
            },
        )
        conn.execute(
            "INSERT INTO incident_transitions (incident_id, transition, at, severity, by_whom, "
            "note) VALUES (%s, %s, %s, %s, 'operator', %s) ON CONFLICT DO NOTHING",
            (incident["incident_id"], action, at, incident["severity"], reason),
        )
        if suppress_for is not None:
            conn.execute(
                "INSERT INTO suppressions (detector, entity, metric, starts_at, until, reason, "
                "incident_id) SELECT DISTINCT detector, entity, metric, %s::timestamptz, "
                "%s::timestamptz, %s, incident_id FROM incident_signals WHERE incident_id = %s",
                (incident["first_seen"], at + suppress_for, reason, incident["incident_id"]),
            )
    return find_incident(conn, incident["incident_id"])
