"""Shared fixtures: one real local stack per test session, isolated from a developer's own.

The stack runs from a fresh, throw-away var directory on free ports, so the suite never
touches ``var/`` or a running ``lambdawatch up``. Started once, shared by every integration
test, stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.ops.stack.isolation import isolated_environment


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Environment for an isolated stack: its own var directory and free ports."""
    with isolated_environment(prefix="lambdawatch-test-") as values:
        # The test stack's scheduler creates no scheduled runs: tests trigger and test DAGs
        # themselves, and a feed_events run every 5 minutes would race their counts.
        os.environ["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
        try:
            yield values
        finally:
            os.environ.pop("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", None)


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def local_stack(settings: Settings) -> Iterator[object]:
    """The real services (PostgreSQL, Redis, Kafka) brought up once from nothing."""
    from lambdawatch.ops.stack.local import INFRASTRUCTURE, LocalStack

    stack = LocalStack(settings)
    try:
        # The always-on speed layer is not started: tests run it themselves, on demand.
        stack.up(list(INFRASTRUCTURE), on_event=lambda _message: None)
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def airflow_stack(local_stack: object) -> object:
    """Airflow's four processes on the session's stack (metadata in its PostgreSQL)."""
    from lambdawatch.ops.stack.local import AIRFLOW, LocalStack

    assert isinstance(local_stack, LocalStack)
    local_stack.up(list(AIRFLOW), on_event=lambda _message: None)
    return local_stack


@pytest.fixture(scope="session")
def superset_stack(local_stack: object) -> object:
    """Superset on the session's stack: metadata migrated, dashboards imported, serving."""
    from lambdawatch.ops.stack.local import LocalStack
    from lambdawatch.ops.stack.superset_node import PROGRAM

    assert isinstance(local_stack, LocalStack)
    local_stack.up([PROGRAM], on_event=lambda _message: None)
    return local_stack


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session for every transformation test (no Kafka connector needed)."""
    from spark_apps.session import build_session

    session = build_session(
        "lambdawatch-tests",
        master="local[2]",
        with_kafka=False,
        shuffle_partitions=2,
        extra={"spark.ui.enabled": "false", "spark.sql.adaptive.enabled": "false"},
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka_topics(local_stack: object, settings: Settings) -> None:
    """Every topic of config.json, created once on the session's broker (as InitialDag would)."""
    from lambdawatch.core.kafka_admin import admin_client, ensure_topics

    admin = admin_client(settings.kafka_bootstrap)
    try:
        ensure_topics(admin, settings.topics)
    finally:
        admin.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the Airflow DAG tests, then the end-to-end tests, last: each publishes data at later
    event times than the modules before it (Airflow's intervals in February, the demo's now)
    into the shared topics and hot store, which would advance the speed layer's watermark and
    the hot-store series' retention past the earlier tests' data."""
    items.sort(
        key=lambda item: (item.path.parent.name == "e2e", item.path.name == "test_airflow.py")
    )
