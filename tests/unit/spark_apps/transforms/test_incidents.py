"""Grouping anomalies into incidents (``transforms.incidents``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from spark_apps.transforms.incidents import (
    Incident,
    IncidentRules,
    Signal,
    Step,
    Suppression,
    advance,
    latest_signals,
    qualifies,
    replay,
    stale_before,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = IncidentRules(warn_count=3, warn_window=timedelta(minutes=1), quiet=timedelta(minutes=5))
NO_GROUPS: dict[str, tuple[str, str]] = {}


def signal(
    entity: str = "srv-1",
    second: float = 0,
    severity: str = "WARN",
    score: float = 1.5,
    detector: str = "cpu_anomalies",
    detected: float | None = None,
) -> Signal:
    start = T0 + timedelta(seconds=second)
    return Signal(
        detector=detector,
        entity=entity,
        metric="cpu_usage",
        window_start=start,
        window_end=start + timedelta(milliseconds=500),
        value=90.0,
        expected=40.0,
        score=score,
        severity=severity,
        model_version="baselines",
        detected_at=start + timedelta(seconds=detected if detected is not None else 1),
    )


def step_of(
    arrived: list[Signal],
    active: list[Incident] | None = None,
    held: list[Signal] | None = None,
    withdrawn: list[tuple[str, str, str, datetime]] | None = None,
    groups: dict[str, tuple[str, str]] | None = None,
    clock_second: float = 60,
) -> Step:
    return advance(
        active or [],
        held or [],
        arrived,
        withdrawn or [],
        groups if groups is not None else NO_GROUPS,
        T0 + timedelta(seconds=clock_second),
        RULES,
    )


def test_an_error_opens_an_incident_and_says_what_and_where() -> None:
    step = step_of([signal(severity="ERROR", score=4.2)])
    [incident] = step.incidents.values()
    assert incident.state == "open"
    assert incident.severity == "ERROR"
    assert incident.scope == "entity:srv-1"
    assert incident.entities == ("srv-1",)
    assert [t.kind for t in step.transitions] == ["opened"]
    assert incident.summary.startswith("ERROR cpu_anomalies on srv-1: cpu_usage 90 vs 40 expected")
    assert all(s.incident_id == incident.incident_id for s in step.signals.values())


@pytest.mark.parametrize(
    ("seconds", "opens"),
    [
        ((0, 1, 2), True),  # three WARNs in three windows within a minute
        ((0, 1), False),  # two are not enough
        ((0, 30, 70), False),  # three, but not within one minute
        ((0, 0, 1), False),  # three verdicts on two windows
    ],
)
def test_warns_open_an_incident_only_k_in_distinct_windows_within_m(
    seconds: tuple[float, ...], opens: bool
) -> None:
    arrived = [signal(second=s, detected=i) for i, s in enumerate(seconds)]
    step = step_of(arrived)
    assert bool(step.incidents) is opens
    if opens:
        [incident] = step.incidents.values()
        assert incident.members == len(set(seconds))
    else:  # they wait as pending signals, in no incident
        assert all(s.incident_id is None for s in step.signals.values())


def test_pending_warns_from_earlier_batches_count_and_are_taken_along() -> None:
    held = [signal(second=0), signal(second=1)]
    step = step_of([signal(second=2)], held=held)
    [incident] = step.incidents.values()
    assert incident.members == 3
    assert {s.incident_id for s in step.signals.values()} == {incident.incident_id}


def test_a_later_verdict_on_the_same_window_replaces_the_earlier() -> None:
    earlier = signal(severity="WARN", detected=1)
    later = signal(severity="ERROR", score=3.0, detected=2)
    assert latest_signals([later, earlier]) == {later.key: later}


def test_anomalies_of_one_datacenter_in_the_same_minutes_are_one_incident() -> None:
    groups = {"srv-1": ("datacenter", "fra-1"), "srv-2": ("datacenter", "fra-1")}
    step = step_of(
        [signal("srv-1", 0, "ERROR"), signal("srv-2", 30, "ERROR"), signal("srv-3", 31, "ERROR")],
        groups=groups,
    )
    by_scope = {i.scope: i for i in step.incidents.values()}
    assert set(by_scope) == {"datacenter:fra-1", "entity:srv-3"}
    assert by_scope["datacenter:fra-1"].entities == ("srv-1", "srv-2")
    assert "2 entities in datacenter:fra-1" in by_scope["datacenter:fra-1"].summary


def test_a_lone_warn_of_another_entity_does_not_join_its_datacenter_s_incident() -> None:
    groups = {"srv-1": ("datacenter", "fra-1"), "srv-2": ("datacenter", "fra-1")}
    step = step_of([signal("srv-1", 0, "ERROR"), signal("srv-2", 5)], groups=groups)
    [incident] = step.incidents.values()
    assert incident.entities == ("srv-1",)


def test_an_incident_escalates_then_resolves_after_the_quiet_period() -> None:
    opened = step_of([signal(second=0), signal(second=1), signal(second=2)])
    [incident] = opened.incidents.values()
    held = list(opened.signals.values())
    escalated = step_of([signal(second=10, severity="ERROR")], [incident], held, clock_second=11)
    assert [t.kind for t in escalated.transitions] == ["escalated"]
    after = escalated.incidents[incident.incident_id]
    assert after.severity == "ERROR"
    assert after.members == 4
    held = held + [escalated.signals[k] for k in escalated.signals]
    quiet = step_of([], [after], held, clock_second=10.5 + 5 * 60)
    assert [t.kind for t in quiet.transitions] == ["resolved"]
    assert quiet.incidents[incident.incident_id].resolved_by == "quiet"


def test_an_acknowledged_incident_keeps_its_state_as_findings_join() -> None:
    first = step_of([signal(severity="ERROR")])
    [incident] = first.incidents.values()
    acknowledged = replace(incident, state="acknowledged")
    step = step_of(
        [signal(second=20, severity="ERROR")], [acknowledged], list(first.signals.values())
    )
    assert step.incidents[incident.incident_id].state == "acknowledged"
    assert step.incidents[incident.incident_id].members == 2


def test_an_incident_whose_findings_are_all_withdrawn_resolves_as_withdrawn() -> None:
    first = step_of([signal(severity="ERROR")])
    [incident] = first.incidents.values()
    [member] = first.signals.values()
    step = step_of([], [incident], [member], withdrawn=[member.key])
    assert step.deleted == {member.key}
    assert step.incidents[incident.incident_id].state == "resolved"
    assert step.incidents[incident.incident_id].resolved_by == "withdrawn"


def test_a_replayed_batch_opens_the_same_incident() -> None:
    arrived = [signal("srv-1", 0, "ERROR"), signal("srv-2", 3, "ERROR")]
    assert step_of(arrived).incidents.keys() == step_of(list(reversed(arrived))).incidents.keys()


def test_pending_warns_go_stale_once_the_window_has_passed() -> None:
    clock = T0 + timedelta(seconds=200)
    assert stale_before(clock, RULES) == clock - RULES.warn_window


def test_a_long_incident_grows_from_its_row_not_its_findings() -> None:
    first = step_of([signal(severity="ERROR", score=3.0)])
    [incident] = first.incidents.values()
    big = replace(incident, members=10_000)  # its findings are not held, only its row
    step = step_of([signal(second=5, severity="ERROR", score=7.0)], [big], [])
    after = step.incidents[incident.incident_id]
    assert after.members == 10_001
    assert after.strongest.score == 7.0
    assert "10001 findings" in after.summary


def test_after_resolution_a_new_finding_opens_a_new_incident() -> None:
    first = step_of([signal(severity="ERROR")])
    [incident] = first.incidents.values()
    resolved = replace(incident, state="resolved")
    later = step_of([signal(second=30, severity="ERROR")], [resolved], [])
    assert incident.incident_id not in later.incidents
    assert [t.kind for t in later.transitions] == ["opened"]


def test_qualifies_counts_only_the_entity_s_own_warns() -> None:
    others = [signal("srv-2", 0), signal("srv-2", 1)]
    assert not qualifies(signal("srv-1", 2), others, RULES)


def test_a_late_finding_joins_the_quiet_resolved_incident_of_its_span() -> None:
    first = step_of([signal(severity="ERROR")])
    [incident] = first.incidents.values()
    quiet = replace(incident, state="resolved", resolved_by="quiet")
    late = step_of([signal(second=30, severity="ERROR")], [quiet], [], clock_second=3600)
    after = late.incidents[incident.incident_id]
    assert (after.state, after.members) == ("resolved", 2)
    assert late.transitions == []


def test_a_finding_inside_the_quiet_period_reopens_the_incident() -> None:
    first = step_of([signal(severity="ERROR")])
    [incident] = first.incidents.values()
    quiet = replace(incident, state="resolved", resolved_by="quiet")
    step = step_of([signal(second=200, severity="ERROR")], [quiet], [], clock_second=201)
    assert step.incidents[incident.incident_id].state == "open"
    assert [t.kind for t in step.transitions] == ["reopened"]


def test_a_suppressed_finding_opens_no_incident_and_others_still_do() -> None:
    rule = Suppression("cpu_anomalies", "srv-1", None, T0, T0 + timedelta(hours=1))
    step = advance(
        [], [], [signal("srv-1", 0, "ERROR"), signal("srv-2", 0, "ERROR")], [], NO_GROUPS,
        T0 + timedelta(seconds=1), RULES, [rule],
    )  # fmt: skip
    assert [i.entities for i in step.incidents.values()] == [("srv-2",)]
    assert all(s.entity == "srv-2" for s in step.signals.values())


@pytest.mark.parametrize(
    ("rule", "mutes"),
    [
        (Suppression(None, None, None, T0, T0 + timedelta(minutes=1)), True),
        (Suppression("silence", None, None, T0, T0 + timedelta(minutes=1)), False),
        (Suppression(None, "srv-2", None, T0, T0 + timedelta(minutes=1)), False),
        (Suppression(None, None, "cpu_usage", T0, T0 + timedelta(minutes=1)), True),
        (Suppression(None, None, None, T0 + timedelta(seconds=1), T0 + timedelta(hours=1)), False),
        (Suppression(None, None, None, T0 - timedelta(minutes=1), T0), False),  # ended
    ],
)
def test_a_suppression_matches_by_detector_entity_metric_and_time(
    rule: Suppression, mutes: bool
) -> None:
    assert rule.mutes(signal("srv-1", 0)) is mutes


def test_replay_opens_an_incident_on_enough_warns_and_resolves_it_once_quiet() -> None:
    incidents = replay([signal(second=s) for s in (0, 10, 20)], NO_GROUPS, RULES)
    assert [(i.entities, i.members, i.state, i.resolved_by) for i in incidents] == [
        (("srv-1",), 3, "resolved", "quiet")
    ]


def test_replay_leaves_too_few_or_too_spread_warns_alone() -> None:
    assert replay([signal(second=0), signal(second=10)], NO_GROUPS, RULES) == []
    spread = [signal(second=s) for s in (0, 70, 140)]  # never 3 within a minute
    assert replay(spread, NO_GROUPS, RULES) == []


def test_replay_groups_a_datacenter_and_splits_on_a_quiet_gap() -> None:
    groups = {"srv-1": ("datacenter", "fra-1"), "srv-2": ("datacenter", "fra-1")}
    later = 60 * 20  # well past the quiet period
    found = [
        signal("srv-1", 0, "ERROR"),
        signal("srv-2", 30, "ERROR"),
        signal("srv-2", later, "ERROR"),
    ]
    incidents = replay(found, groups, RULES)
    assert [(i.scope, i.entities, i.members) for i in incidents] == [
        ("datacenter:fra-1", ("srv-1", "srv-2"), 2),
        ("datacenter:fra-1", ("srv-2",), 1),
    ]


def test_replay_does_not_depend_on_how_the_stream_was_cut_into_batches() -> None:
    found = [signal(f"srv-{n % 3}", n * 7.0, "ERROR" if n % 11 == 0 else "WARN") for n in range(60)]
    fine = replay(found, NO_GROUPS, RULES, batch=timedelta(seconds=1))
    coarse = replay(found, NO_GROUPS, RULES, batch=timedelta(seconds=30))
    assert [(i.entities, i.first_seen, i.members) for i in fine] == [
        (i.entities, i.first_seen, i.members) for i in coarse
    ]
    assert fine


def test_an_error_with_a_window_longer_than_the_warn_window_opens_an_incident() -> None:
    gap = replace(
        signal(second=0, severity="ERROR", detector="silence"),
        window_end=T0 + timedelta(minutes=3),  # a silence of three minutes
    )
    step = step_of([gap], clock_second=200)
    assert [(i.entities, i.members) for i in step.incidents.values()] == [(("srv-1",), 1)]


def test_one_batch_catching_up_keeps_findings_hours_apart_in_their_own_incidents() -> None:
    hours = 3 * 3600
    found = [signal(second=s) for s in (0, 1, 2)] + [signal(second=hours + s) for s in (0, 1, 2)]
    found.append(signal("srv-2", hours + 5, "ERROR"))
    groups = {"srv-1": ("datacenter", "fra-1"), "srv-2": ("datacenter", "fra-1")}
    step = step_of(found, groups=groups, clock_second=hours + 10)
    spans = sorted((i.first_seen, i.entities, i.members) for i in step.incidents.values())
    assert spans == [
        (T0, ("srv-1",), 3),
        (T0 + timedelta(seconds=hours), ("srv-1", "srv-2"), 4),
    ]
