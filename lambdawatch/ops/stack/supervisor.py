"""supervisord wiring: render its config from component specs and drive it over XML-RPC.

supervisord (from PyPI) does the supervision: restarts, log rotation, process groups. This
module only renders the config (a pure function) and talks to the daemon through its socket.
"""

from __future__ import annotations

import configparser
import io
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

RUNNING_STATES = {"RUNNING", "STARTING"}


@dataclass(frozen=True)
class ProgramSpec:
    """One supervised process: what supervisord needs to run and stop it properly."""

    name: str
    command: list[str]
    directory: Path
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: str = "TERM"
    stop_wait_seconds: int = 30
    start_seconds: int = 2


@dataclass(frozen=True)
class SupervisorPaths:
    """Where one supervisord instance keeps its socket, pid file, config and logs."""

    var_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def config(self) -> Path:
        return self.run_dir / "supervisord.conf"


def _env_value(value: str) -> str:
    escaped = value.replace("%", "%%").replace('"', '\\"')
    return f'"{escaped}"'


def render_supervisord_conf(paths: SupervisorPaths, programs: list[ProgramSpec]) -> str:
    """supervisord.conf for ``programs``; autostart is off so ``up`` can start in order."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser["unix_http_server"] = {"file": str(paths.socket), "chmod": "0700"}
    parser["supervisord"] = {
        "logfile": str(paths.log_dir / "supervisord.log"),
        "logfile_maxbytes": "10MB",
        "logfile_backups": "3",
        "pidfile": str(paths.pidfile),
        "childlogdir": str(paths.log_dir),
        "identifier": "lambdawatch",
        "nodaemon": "false",
        "silent": "true",
        "minfds": "16384",
    }
    parser["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    parser["supervisorctl"] = {"serverurl": f"unix://{paths.socket}"}
    for program in programs:
        section: dict[str, str] = {
            "command": shlex.join(program.command).replace("%", "%%"),
            "directory": str(program.directory),
            "autostart": "false",
            "autorestart": "true",
            "startsecs": str(program.start_seconds),
            "startretries": "3",
            "stopsignal": program.stop_signal,
            "stopwaitsecs": str(program.stop_wait_seconds),
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(paths.log_dir / f"{program.name}.log"),
            "stdout_logfile_maxbytes": "50MB",
            "stdout_logfile_backups": "3",
        }
        if program.user:
            section["user"] = program.user
        if program.environment:
            section["environment"] = ",".join(
                f"{key}={_env_value(value)}" for key, value in sorted(program.environment.items())
            )
        parser[f"program:{program.name}"] = section
    buffer = io.StringIO()
    parser.write(buffer)
    return buffer.getvalue()


class Supervisor:
    """A handle on one supervisord instance (started on demand, addressed by its socket)."""

    def __init__(self, paths: SupervisorPaths) -> None:
        self.paths = paths

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.paths.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def is_running(self) -> bool:
        if not self.paths.socket.exists():
            return False
        try:
            return self._proxy().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def write_config(self, programs: list[ProgramSpec]) -> None:
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        # Program environments carry secrets (database URLs, keys): owner-only.
        descriptor = os.open(self.paths.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(render_supervisord_conf(self.paths, programs))
        self.paths.config.chmod(0o600)

    def ensure_started(self, programs: list[ProgramSpec], timeout: float = 30.0) -> None:
        """Start supervisord, or make a running one pick up changed program definitions."""
        self.write_config(programs)
        if self.is_running():
            added, changed, removed = self._proxy().supervisor.reloadConfig()[0]
            for name in removed + changed:
                self._stop_quietly(name)
                self._proxy().supervisor.removeProcessGroup(name)
            for name in added + changed:
                self._proxy().supervisor.addProcessGroup(name)
            return
        self.paths.socket.unlink(missing_ok=True)
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.paths.config)],
            check=True,
        )
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                log = self.paths.log_dir / "supervisord.log"
                raise RuntimeError(f"supervisord did not come up; see {log}")
            time.sleep(0.2)

    def start(self, name: str) -> None:
        info = self.info(name)
        if info["statename"] in RUNNING_STATES:
            return
        self._proxy().supervisor.startProcess(name, True)

    def start_async(self, name: str) -> None:
        """Ask supervisord to start ``name`` without waiting; health checks decide readiness."""
        if self.info(name)["statename"] in RUNNING_STATES:
            return
        try:
            self._proxy().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise

    def info(self, name: str) -> dict[str, Any]:
        return self._proxy().supervisor.getProcessInfo(name)  # type: ignore[no-any-return]

    def all_info(self) -> list[dict[str, Any]]:
        if not self.is_running():
            return []
        return self._proxy().supervisor.getAllProcessInfo()  # type: ignore[no-any-return]

    def _stop_quietly(self, name: str, wait: bool = True) -> None:
        try:
            self._proxy().supervisor.stopProcess(name, wait)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise

    def stop(self, names: list[str]) -> None:
        for name in names:
            self._stop_quietly(name)

    def stop_together(self, names: list[str], timeout: float = 120.0) -> None:
        """Signal every one of ``names`` at once, then wait until none is running.

        ``stop`` waits for each before signalling the next; members of a quorum must go
        together, or the last one waits for a majority that has already left.
        """
        if not self.is_running():
            return
        active = RUNNING_STATES | {"STOPPING"}
        running = [name for name in names if self.info(name)["statename"] in active]
        for name in running:
            self._stop_quietly(name, wait=False)
        deadline = time.monotonic() + timeout
        while any(self.info(name)["statename"] in active for name in running):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(running)} did not stop within {timeout:.0f}s")
            time.sleep(0.2)

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop every program, then supervisord itself, and wait until its pid is gone."""
        if not self.is_running():
            return
        pid = int(self.paths.pidfile.read_text().strip()) if self.paths.pidfile.exists() else None
        self._proxy().supervisor.shutdown()
        deadline = time.monotonic() + timeout
        while pid is not None and _pid_alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord (pid {pid}) did not exit within {timeout:.0f}s")
            time.sleep(0.2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
