"""A throw-away var directory and free ports: a second stack that never touches ``var/``.

Used by the test suite and the benchmarks so they can run beside a developer's own stack.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORT_VARIABLES = (
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "POSTGRES_PORT",
    "REDIS_PORT",
    "AIRFLOW_PORT",
    "AIRFLOW_LOG_SERVER_PORT",
    "AIRFLOW_TRIGGER_LOG_SERVER_PORT",
    "SUPERSET_PORT",
    "SPARK_UI_PORT",
    "KAFKA_PORT_2",
    "KAFKA_CONTROLLER_PORT_2",
    "KAFKA_PORT_3",
    "KAFKA_CONTROLLER_PORT_3",
    "SPARK_MASTER_PORT",
    "SPARK_MASTER_UI_PORT",
    "SPARK_WORKER_UI_PORT_1",
    "SPARK_WORKER_UI_PORT_2",
)


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def isolated_environment(prefix: str = "lambdawatch-") -> Iterator[dict[str, str]]:
    """Point settings at a fresh var directory and free ports for the duration of the block."""
    var_dir = Path(tempfile.mkdtemp(prefix=prefix))
    var_dir.chmod(0o755)  # PostgreSQL's service user must reach its data directory
    values = {"LAMBDAWATCH_VAR_DIR": str(var_dir)}
    values.update(zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True))
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(var_dir, ignore_errors=True)
