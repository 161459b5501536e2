"""Each speed-layer query restarted alone, from its checkpoint, with exponential backoff.

The policy is Kubernetes' CrashLoopBackOff (and supervisord's ``startretries`` with a growing
delay): a failed query waits ``first_delay``, doubled on each failure in a row up to
``max_delay``; once it has run ``healthy_after`` since its last start its failures are
forgiven. One failing query (a database away, a poison batch) no longer stops the others: the
Kafka → Kafka queries go on while a PostgreSQL sink waits. Only the driver's own death (its
SparkContext stopped) ends the process, for the process supervisor to restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("lambdawatch.speed_layer")


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 5.0
    max_delay_s: float = 300.0
    healthy_after_s: float = 600.0

    def delay(self, failures: int) -> float:
        """The wait before the restart that follows the ``failures``-th failure in a row."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** max(failures - 1, 0)))


@dataclass
class RestartSchedule:
    """When each failed query is due to start again (pure: the caller gives the time)."""

    policy: RestartPolicy
    failures: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def started(self, name: str, at: float) -> None:
        self.started_at[name] = at
        self.due.pop(name, None)

    def failed(self, name: str, at: float) -> float:
        """Record a failure at ``at``; returns the delay before its restart."""
        if at - self.started_at.get(name, at) >= self.policy.healthy_after_s:
            self.failures[name] = 0  # it had recovered: a new fault, not the same crash loop
        self.failures[name] = self.failures.get(name, 0) + 1
        delay = self.policy.delay(self.failures[name])
        self.due[name] = at + delay
        return delay

    def ready(self, at: float) -> list[str]:
        return sorted(name for name, due in self.due.items() if due <= at)

    def wait_s(self, at: float, longest: float) -> float:
        """How long to wait for a termination before the next due restart (≤ ``longest``)."""
        soonest = min(self.due.values(), default=at + longest)
        return max(0.0, min(longest, soonest - at))


class Query(Protocol):
    @property
    def isActive(self) -> bool: ...  # noqa: N802 - Spark's name

    def exception(self) -> Any: ...


class Streams(Protocol):
    def awaitAnyTermination(self, timeout: int | None = None) -> bool | None: ...  # noqa: N802

    def resetTerminated(self) -> None: ...  # noqa: N802


def supervise(
    streams: Streams,
    start_query: Callable[[str], Query],
    names: Iterable[str],
    policy: RestartPolicy,
    driver_alive: Callable[[], bool],
    on_restart: Callable[[str, str, float, int], None] = lambda *_: None,
    poll_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Run ``names`` until the driver dies (or ``keep_going`` says stop), restarting each
    failed query alone after its backoff; ``on_restart(name, error, delay, failures)`` is told
    of each failure."""
    schedule = RestartSchedule(policy)
    running: dict[str, Query] = {}

    def failed(name: str, reason: str) -> None:
        delay = schedule.failed(name, clock())
        log.error(
            "query %s failed (%s): restarting it alone in %.0fs (failure %d in a row)",
            name, reason, delay, schedule.failures[name],
        )  # fmt: skip
        on_restart(name, reason, delay, schedule.failures[name])

    for name in names:
        running[name] = start_query(name)
        schedule.started(name, clock())
    while keep_going():
        try:
            streams.awaitAnyTermination(int(schedule.wait_s(clock(), poll_s)) or 1)
        except Exception as error:
            log.debug("a query terminated: %s", error)
        streams.resetTerminated()
        if not driver_alive():
            raise RuntimeError("the Spark driver stopped: the process supervisor restarts it")
        for name in [n for n, query in running.items() if not query.isActive]:
            error = running.pop(name).exception()
            failed(name, str(error).splitlines()[0] if error is not None else "stopped")
        for name in schedule.ready(clock()):
            try:
                running[name] = start_query(name)
            except Exception as error:  # a start that fails is one more failure
                failed(name, str(error).splitlines()[0])
                continue
            schedule.started(name, clock())
            log.info("query %s restarted from its checkpoint", name)
