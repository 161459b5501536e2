"""Local Redis from Debian's ``redis-server``, with AOF persistence so a restart loses nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from lambdawatch.ops.stack.supervisor import ProgramSpec


def render_redis_conf(host: str, port: int, data_dir: Path, password: str) -> str:
    """Foreground server; AOF fsync every second plus RDB snapshots for fast restarts; every
    client authenticates with the generated password (the file is the owner's only)."""
    lines = {
        "bind": host,
        "port": str(port),
        "requirepass": '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"',
        "protected-mode": "yes",
        "daemonize": "no",
        "dir": str(data_dir),
        "appendonly": "yes",
        "appendfsync": "everysec",
        "appendfilename": '"appendonly.aof"',
        "save": '"900 1 300 100 60 10000"',
        "dbfilename": "dump.rdb",
        "maxmemory-policy": "noeviction",
        "logfile": '""',
        "loglevel": "notice",
    }
    return "".join(f"{key} {value}\n" for key, value in lines.items())


def redis_program(conf: Path) -> ProgramSpec:
    binary = shutil.which("redis-server")
    if not binary:
        raise FileNotFoundError("redis-server not found; install Debian's redis-server package")
    return ProgramSpec(
        name="redis",
        command=[binary, str(conf)],
        directory=conf.parent,
        stop_signal="TERM",
        stop_wait_seconds=30,
    )
