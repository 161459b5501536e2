"""Restart-alone supervision: the backoff schedule, and the loop on a scripted stream manager
(the real one is exercised in tests/integration/test_speed_layer_faults.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from spark_apps.supervision import RestartPolicy, RestartSchedule, supervise

POLICY = RestartPolicy(first_delay_s=5, max_delay_s=60, healthy_after_s=600)


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (9, 60.0)]
)
def test_the_delay_doubles_up_to_its_cap(failures: int, delay: float) -> None:
    assert POLICY.delay(failures) == delay


def test_a_crash_loop_backs_off_and_a_recovered_query_starts_again_from_the_first_delay() -> None:
    schedule = RestartSchedule(POLICY)
    schedule.started("q", 0)
    assert schedule.failed("q", 10) == 5
    assert schedule.ready(14) == []
    assert schedule.ready(15) == ["q"]
    schedule.started("q", 15)
    assert schedule.failed("q", 20) == 10  # again within healthy_after: the same loop
    schedule.started("q", 30)
    assert schedule.failed("q", 30 + 600) == 5  # ran 10 minutes: forgiven
    assert schedule.wait_s(630, longest=3) == 3
    assert schedule.wait_s(634, longest=3) == 1


@dataclass
class FakeQuery:
    name: str
    fails_at: float | None = None
    clock: list[float] = field(default_factory=lambda: [0.0])

    @property
    def isActive(self) -> bool:  # noqa: N802
        return self.fails_at is None or self.clock[0] < self.fails_at

    def exception(self) -> Any:
        return None if self.isActive else RuntimeError(f"{self.name} sink: connection refused")


@dataclass
class ScriptedStreams:
    """Each call advances the clock by the wait asked for."""

    clock: list[float]
    waits: list[int] = field(default_factory=list)

    def awaitAnyTermination(self, timeout: int | None = None) -> bool:  # noqa: N802
        self.waits.append(int(timeout or 0))
        self.clock[0] += timeout or 0
        return False

    def resetTerminated(self) -> None:  # noqa: N802
        pass


def test_only_the_failed_query_is_restarted_and_the_others_keep_running() -> None:
    clock = [0.0]
    starts: list[tuple[str, float]] = []
    restarts: list[tuple[str, str, float, int]] = []

    def start(name: str) -> FakeQuery:
        starts.append((name, clock[0]))
        first = sum(1 for started, _ in starts if started == name) == 1
        fails = 7.0 if name == "to_postgres" and first else None
        return FakeQuery(name, fails, clock)

    supervise(
        ScriptedStreams(clock),
        start,
        ["kafka_to_kafka", "to_postgres"],
        POLICY,
        driver_alive=lambda: True,
        on_restart=lambda *args: restarts.append(args),
        poll_s=3,
        clock=lambda: clock[0],
        keep_going=lambda: clock[0] < 30,
    )
    assert starts == [("kafka_to_kafka", 0), ("to_postgres", 0), ("to_postgres", 14)]
    assert restarts == [("to_postgres", "to_postgres sink: connection refused", 5.0, 1)]


def test_a_dead_driver_ends_the_process_for_its_supervisor() -> None:
    clock = [0.0]
    with pytest.raises(RuntimeError, match="driver stopped"):
        supervise(
            ScriptedStreams(clock),
            lambda name: FakeQuery(name, None, clock),
            ["q"],
            POLICY,
            driver_alive=lambda: clock[0] < 10,
            clock=lambda: clock[0],
            poll_s=3,
        )
