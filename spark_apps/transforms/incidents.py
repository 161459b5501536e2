"""Incidents from anomalies: pure functions, no I/O.

An operator is paged for incidents, not for each anomalous window. Anomalies (``Signal``,
one per detector, entity, metric and window: a later verdict on the same window replaces an
earlier one, and a withdrawn verdict is dropped) are grouped by the rules below, which are a
plain alert-grouping policy of the kind Alertmanager and PagerDuty apply (group by a label,
open on a threshold, resolve after a quiet period):

- an entity *qualifies* on an ERROR, or on ``warn_count`` WARNs in as many distinct windows
  within ``warn_window``; below that its WARNs wait (``pending``) and are dropped once older
  than the window;
- a qualifying anomaly joins the active incident of its *scope* (its entity's datacenter or
  PoP when its events gave one, else the entity itself) whose last finding is less than
  ``quiet`` before it; otherwise it opens one, taking its entity's pending WARNs along;
- an anomaly of an entity already in an active incident always joins it;
- an incident resolves once the stream's clock (event time) is ``quiet`` past its last
  finding, or when all its findings were withdrawn; a late finding from within its span
  still joins it (reopening it only if that puts it back inside the quiet period);
- an incident's fields grow incrementally (its findings are never read back whole), so a long
  incident costs a micro-batch no more than a short one;
- an incident's id is derived from its scope and first finding, so a micro-batch replayed
  after a crash opens the same incident, not a second one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from lambdawatch.core.tables import ACTIVE_INCIDENT_STATES

SEVERITY_RANK = {"WARN": 1, "ERROR": 2}
QUIET = "quiet"  # resolved_by: the stream's clock passed the quiet period


def takes_findings(incident: Incident) -> bool:
    """Active, or resolved only because the stream went quiet: a late finding from within
    its span still belongs to it (operator-resolved incidents never take findings)."""
    return incident.state in ACTIVE_INCIDENT_STATES or incident.resolved_by == QUIET


INCIDENT_NAMESPACE = uuid.UUID("6f1c2b9e-5a4d-4c1e-9a61-3f0f3b1d7e21")
SignalKey = tuple[str, str, str, datetime]  # detector, entity, metric, window_start
TransitionKind = Literal["opened", "escalated", "reopened", "resolved"]


@dataclass(frozen=True)
class IncidentRules:
    warn_count: int
    warn_window: timedelta
    quiet: timedelta


@dataclass(frozen=True)
class Signal:
    """One anomaly (the anomaly record's shape) and the incident it belongs to, if any."""

    detector: str
    entity: str
    metric: str
    window_start: datetime
    window_end: datetime
    value: float | None
    expected: float | None
    score: float | None
    severity: str
    model_version: str
    detected_at: datetime
    incident_id: str | None = None

    @property
    def key(self) -> SignalKey:
        return (self.detector, self.entity, self.metric, self.window_start)

    @property
    def strength(self) -> tuple[int, float]:
        """How strong a finding is: severity first, then score."""
        return (SEVERITY_RANK[self.severity], self.score if self.score is not None else 0.0)


@dataclass(frozen=True)
class Suppression:
    """An operator's rule: anomalies it matches join no incident (None matches any)."""

    detector: str | None
    entity: str | None
    metric: str | None
    starts_at: datetime
    until: datetime

    def mutes(self, signal: Signal) -> bool:
        return (
            self.detector in (None, signal.detector)
            and self.entity in (None, signal.entity)
            and self.metric in (None, signal.metric)
            and self.starts_at <= signal.window_start < self.until
        )


@dataclass(frozen=True)
class Incident:
    incident_id: str
    scope: str  # "datacenter:<name>", "pop:<name>" or "entity:<entity>"
    state: str  # open | acknowledged | resolved
    severity: str
    first_seen: datetime
    last_seen: datetime
    entities: tuple[str, ...]
    metrics: tuple[str, ...]
    detectors: tuple[str, ...]
    members: int
    strongest: Signal
    summary: str
    resolved_by: str | None = None  # quiet | withdrawn | operator | false positive


@dataclass(frozen=True)
class Transition:
    incident_id: str
    kind: TransitionKind
    at: datetime  # the stream's clock when it happened


@dataclass
class Step:
    """What one micro-batch changes: incidents to write, signals to keep (with their
    incident), signals to delete (withdrawn, or pending and too old), transitions to notify."""

    incidents: dict[str, Incident] = field(default_factory=dict)
    signals: dict[SignalKey, Signal] = field(default_factory=dict)
    deleted: set[SignalKey] = field(default_factory=set)
    transitions: list[Transition] = field(default_factory=list)


def scope_of(entity: str, groups: Mapping[str, tuple[str, str]]) -> str:
    """An entity's datacenter or PoP (``groups``: entity → (kind, name), given by its events),
    else the entity alone."""
    group = groups.get(entity)
    return f"{group[0]}:{group[1]}" if group else f"entity:{entity}"


def incident_id_for(scope: str, first: Signal) -> str:
    detector, entity, metric, start = first.key
    name = f"{scope}|{detector}|{entity}|{metric}|{start.isoformat()}"
    return str(uuid.uuid5(INCIDENT_NAMESPACE, name))


def latest_signals(signals: Iterable[Signal]) -> dict[SignalKey, Signal]:
    """One signal per key: the latest verdict (by ``detected_at``) of each window."""
    latest: dict[SignalKey, Signal] = {}
    for signal in signals:
        held = latest.get(signal.key)
        if held is None or signal.detected_at >= held.detected_at:
            latest[signal.key] = signal
    return latest


def qualifies(signal: Signal, pending: Iterable[Signal], rules: IncidentRules) -> bool:
    """An ERROR, or ``warn_count`` WARNs of the entity in distinct windows within
    ``warn_window`` up to this one (``pending`` holds the entity's unassigned WARNs)."""
    if signal.severity == "ERROR":
        return True
    since = signal.window_end - rules.warn_window
    windows = {
        s.window_start
        for s in pending
        if s.entity == signal.entity and since <= s.window_start <= signal.window_start
    }
    return len(windows | {signal.window_start}) >= rules.warn_count


def summarize(incident: Incident) -> str:
    """One line an operator can act on: the strongest finding and how wide the incident is."""
    s = incident.strongest
    observed = f"{s.metric} {_number(s.value)}" + (
        f" vs {_number(s.expected)} expected" if s.expected is not None else ""
    )
    score = f", score {s.score:.3g}" if s.score is not None else ""
    span = _duration(incident.last_seen - incident.first_seen)
    where = (
        f"{len(incident.entities)} entities in {incident.scope}"
        if len(incident.entities) > 1
        else incident.entities[0]
    )
    findings = f"{incident.members} finding{'s' if incident.members != 1 else ''}"
    return (
        f"{incident.severity} {s.detector} on {s.entity}: {observed}{score}; "
        f"{where}, {findings} over {span}"
    )


def aggregate(incident_id: str, scope: str, members: list[Signal]) -> Incident:
    """A new incident's fields from its first findings."""
    first, *rest = members
    opened = Incident(
        incident_id=incident_id,
        scope=scope,
        state="open",
        severity=first.severity,
        first_seen=first.window_start,
        last_seen=first.window_end,
        entities=(first.entity,),
        metrics=(first.metric,),
        detectors=(first.detector,),
        members=1,
        strongest=first,
        summary="",
    )
    return grown(opened, rest, len(rest))


def grown(incident: Incident, joined: list[Signal], new_members: int) -> Incident:
    """``incident`` with ``joined`` findings (``new_members`` of them new to it, the others
    later verdicts on its windows): incremental, so an incident's size never has to be read
    back. The strongest finding is the strongest ever seen."""
    if not joined:
        after = replace(incident, members=incident.members + new_members)
        return replace(after, summary=summarize(after))
    strongest = max([incident.strongest, *joined], key=lambda s: (s.strength, s.window_start))
    after = replace(
        incident,
        severity=max(
            [incident.severity, *(s.severity for s in joined)], key=SEVERITY_RANK.__getitem__
        ),
        first_seen=min(incident.first_seen, *(s.window_start for s in joined)),
        last_seen=max(incident.last_seen, *(s.window_end for s in joined)),
        entities=tuple(sorted({*incident.entities, *(s.entity for s in joined)})),
        metrics=tuple(sorted({*incident.metrics, *(s.metric for s in joined)})),
        detectors=tuple(sorted({*incident.detectors, *(s.detector for s in joined)})),
        members=incident.members + new_members,
        strongest=strongest,
    )
    return replace(after, summary=summarize(after))


def advance(
    active: Iterable[Incident],
    held: Iterable[Signal],
    arrived: Iterable[Signal],
    withdrawn: Iterable[SignalKey],
    groups: Mapping[str, tuple[str, str]],
    clock: datetime,
    rules: IncidentRules,
    suppressions: Iterable[Suppression] = (),
) -> Step:
    """One micro-batch.

    ``active`` are the open and acknowledged incidents; ``held`` the stored signals this batch
    may touch (those with an arrived or withdrawn key, and the pending WARNs of the arrived
    signals' entities); ``arrived`` the new verdicts, ``withdrawn`` the keys of verdicts turned
    SAFE; ``clock`` the stream's event time so far. Pending WARNs older than the window are
    the store's to drop (``stale_before``). Arrived signals an operator's ``suppressions``
    match are left out altogether (the anomalies themselves stay, flagged, where detectors
    wrote them).
    """
    muting = list(suppressions)
    arrived = [s for s in arrived if not any(rule.mutes(s) for rule in muting)]
    step = Step()
    incidents = {i.incident_id: i for i in active}
    signals = {s.key: s for s in held}
    joined: dict[str, list[Signal]] = defaultdict(list)
    new_members: dict[str, int] = defaultdict(int)
    for key in withdrawn:
        gone = signals.pop(key, None)
        if gone is not None:
            step.deleted.add(key)
            if gone.incident_id is not None:
                new_members[gone.incident_id] -= 1
    fresh = []
    for key, signal in latest_signals(arrived).items():
        step.deleted.discard(key)
        before = signals.get(key)
        owner = before.incident_id if before is not None else None
        signals[key] = replace(signal, incident_id=owner)
        step.signals[key] = signals[key]
        if owner is not None:
            joined[owner].append(signals[key])  # a later verdict on one of its windows
        else:
            fresh.append(signals[key])

    pending: dict[str, list[Signal]] = defaultdict(list)  # by entity
    for signal in signals.values():
        if signal.incident_id is None:
            pending[signal.entity].append(signal)
    member_of = {
        entity: incident.incident_id
        for incident in sorted(incidents.values(), key=lambda i: i.last_seen)
        if takes_findings(incident)
        for entity in incident.entities
    }
    last_seen = {i.incident_id: i.last_seen for i in incidents.values()}

    def joinable(incident_id: str | None, signal: Signal) -> bool:
        incident = incidents.get(incident_id or "")
        return (
            incident is not None
            and takes_findings(incident)
            and signal.window_start < last_seen[incident.incident_id] + rules.quiet
        )

    for signal in sorted(fresh, key=lambda s: (s.window_start, s.key)):
        if signal not in pending[signal.entity]:
            continue  # taken along by an incident opened earlier in this batch
        scope = scope_of(signal.entity, groups)
        owner = member_of.get(signal.entity)
        if not joinable(owner, signal):
            if not qualifies(signal, pending[signal.entity], rules):
                continue
            owner = next(
                (i for i, inc in incidents.items() if inc.scope == scope and joinable(i, signal)),
                None,
            )
        if owner is not None:
            taken = [signal]
            joined[owner].append(signal)
            new_members[owner] += 1
        else:
            since = signal.window_end - rules.warn_window
            # the finding itself always (its window may be longer than the WARN window), and
            # the WARNs that made it qualify: never later ones (a batch catching up holds
            # findings hours apart)
            taken = [
                s
                for s in pending[signal.entity]
                if s.key == signal.key or since <= s.window_start <= signal.window_start
            ]
            first = min(taken, key=lambda s: (s.window_start, s.key))
            owner = incident_id_for(scope, first)
            incidents[owner] = aggregate(owner, scope, sorted(taken, key=lambda s: s.key))
            step.incidents[owner] = incidents[owner]
            last_seen[owner] = incidents[owner].last_seen
            step.transitions.append(Transition(owner, "opened", clock))
        for taken_signal in taken:
            pending[taken_signal.entity].remove(taken_signal)
            assigned = replace(taken_signal, incident_id=owner)
            signals[assigned.key] = assigned
            step.signals[assigned.key] = assigned
            last_seen[owner] = max(last_seen[owner], assigned.window_end)
        member_of[signal.entity] = owner

    for incident_id in sorted(set(joined) | set(new_members)):
        before = incidents[incident_id]
        after = grown(
            before, [replace(s, incident_id=incident_id) for s in joined[incident_id]],
            new_members[incident_id],
        )  # fmt: skip
        if after.members <= 0:
            after = replace(after, members=0, state="resolved", resolved_by="withdrawn")
            step.transitions.append(Transition(incident_id, "resolved", clock))
        elif SEVERITY_RANK[after.severity] > SEVERITY_RANK[before.severity]:
            step.transitions.append(Transition(incident_id, "escalated", clock))
        if after.resolved_by == QUIET and clock < after.last_seen + rules.quiet:
            after = replace(after, state="open", resolved_by=None)  # late findings, not quiet
            step.transitions.append(Transition(incident_id, "reopened", clock))
        incidents[incident_id] = after
        step.incidents[incident_id] = after

    for incident_id, incident in incidents.items():
        if incident.state in ACTIVE_INCIDENT_STATES and incident.last_seen + rules.quiet <= clock:
            resolved = replace(incident, state="resolved", resolved_by=QUIET)
            incidents[incident_id] = resolved
            step.incidents[incident_id] = resolved
            step.transitions.append(Transition(incident_id, "resolved", clock))
    return step


def stale_before(clock: datetime, rules: IncidentRules) -> datetime:
    """Pending WARNs whose window ended before this can no longer open an incident."""
    return clock - rules.warn_window


def replay(
    signals: Iterable[Signal],
    groups: Mapping[str, tuple[str, str]],
    rules: IncidentRules,
    batch: timedelta = timedelta(seconds=10),
) -> list[Incident]:
    """The incidents the streaming query makes of ``signals`` when they arrive in event-time
    order, ``batch`` of event time per micro-batch, with its store kept in memory (what the
    query keeps in PostgreSQL); every incident is resolved by quiet once the signals end.
    Used to judge grouping rules on recorded findings without a running stack."""
    ordered = sorted(signals, key=lambda s: (s.window_end, s.key))
    incidents: dict[str, Incident] = {}
    stored: dict[SignalKey, Signal] = {}
    pending: dict[str, dict[SignalKey, Signal]] = defaultdict(dict)  # by entity
    clock: datetime | None = None
    stale: datetime | None = None  # pending WARNs before this are gone from the query's store

    def apply(step: Step) -> None:
        incidents.update(step.incidents)
        for key in step.deleted:
            gone = stored.pop(key, None)
            if gone is not None:
                pending[gone.entity].pop(key, None)
        for key, signal in step.signals.items():
            stored[key] = signal
            if signal.incident_id is None:
                pending[signal.entity][key] = signal
            else:
                pending[signal.entity].pop(key, None)

    start = 0
    while start < len(ordered):
        until = ordered[start].window_end + batch
        end = start
        while end < len(ordered) and ordered[end].window_end < until:
            end += 1
        arrived = ordered[start:end]
        start = end
        latest = max(s.window_end for s in arrived)
        clock = latest if clock is None else max(clock, latest)
        earliest = min(s.window_start for s in arrived) - rules.quiet
        entities = {s.entity for s in arrived}
        held = {s.key: stored[s.key] for s in arrived if s.key in stored}
        for entity in entities:
            held.update(
                (k, s) for k, s in pending[entity].items() if stale is None or s.window_end >= stale
            )
        active = [
            i
            for i in incidents.values()
            if takes_findings(i) and (i.state in ACTIVE_INCIDENT_STATES or i.last_seen >= earliest)
        ]
        apply(advance(active, held.values(), arrived, (), groups, clock, rules))
        stale = stale_before(clock, rules)
    if clock is not None:
        active = [i for i in incidents.values() if i.state in ACTIVE_INCIDENT_STATES]
        apply(advance(active, (), (), (), groups, clock + rules.quiet, rules))
    return sorted(incidents.values(), key=lambda i: (i.first_seen, i.incident_id))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _duration(span: timedelta) -> str:
    seconds = max(span.total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
