"""Shared fixtures: one real local stack per test session, isolated from a developer's own.

The stack runs from a fresh, throw-away var directory on free ports, so the suite never
touches ``var/`` or a running ``lambdawatch up``. Started once, shared by every integration
test, stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdawatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PORT_VARIABLES = (
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "POSTGRES_PORT",
    "REDIS_PORT",
    "AIRFLOW_PORT",
    "SUPERSET_PORT",
)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Environment for an isolated stack: its own var directory and free ports."""
    var_dir = Path(tempfile.mkdtemp(prefix="lambdawatch-test-"))
    var_dir.chmod(0o755)  # PostgreSQL's service user must reach its data directory
    values = {"LAMBDAWATCH_VAR_DIR": str(var_dir)}
    values.update(zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True))
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def local_stack(settings: Settings) -> Iterator[object]:
    """The real services (PostgreSQL, Redis, Kafka) brought up once from nothing."""
    from lambdawatch.stack.local import LocalStack

    stack = LocalStack(settings)
    try:
        stack.up(on_event=lambda _message: None)
        yield stack
    finally:
        stack.down()
