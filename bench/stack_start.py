"""Seconds from ``up`` to all healthy (warm: dependencies installed) and memory per component.

Measured twice in one run: a first start from an empty var directory (initdb, KRaft format)
and a restart over existing state. Goals (issue 1/6): all healthy in <= 30 s, and Kafka +
Redis + PostgreSQL together <= 1.5 GB resident.
"""

from __future__ import annotations

import time

from rich.console import Console

from bench.common import write_result
from lambdawatch.core.settings import load_settings
from lambdawatch.ops.stack.isolation import isolated_environment
from lambdawatch.ops.stack.local import LocalStack

GOAL_SECONDS = 30.0
GOAL_MEMORY_BYTES = 1.5 * 2**30


def _timed_up(stack: LocalStack) -> tuple[float, dict[str, float]]:
    healthy_at: dict[str, float] = {}
    start = time.perf_counter()

    def record(message: str) -> None:
        healthy_at[message.split(maxsplit=1)[0]] = round(time.perf_counter() - start, 2)

    stack.up(on_event=record)
    return round(time.perf_counter() - start, 2), healthy_at


def main() -> None:
    console = Console()
    with isolated_environment(prefix="lambdawatch-bench-"):
        stack = LocalStack(load_settings())
        try:
            cold_total, cold_each = _timed_up(stack)
            time.sleep(5)  # let the JVM settle before reading memory
            memory = {row.name: row.rss_bytes for row in stack.status()}
            stack.down()
            warm_total, warm_each = _timed_up(stack)
        finally:
            stack.down()
    total_memory = sum(memory.values())
    result = {
        "first_start": {"seconds_to_all_healthy": cold_total, "healthy_after": cold_each},
        "restart": {"seconds_to_all_healthy": warm_total, "healthy_after": warm_each},
        "memory_bytes": memory,
        "memory_total_bytes": total_memory,
        "memory_measure": "PSS of each supervised process tree",
        "goals": {
            "seconds_to_all_healthy": GOAL_SECONDS,
            "memory_total_bytes": GOAL_MEMORY_BYTES,
            "met": max(cold_total, warm_total) <= GOAL_SECONDS
            and total_memory <= GOAL_MEMORY_BYTES,
        },
    }
    path = write_result("stack_start", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
