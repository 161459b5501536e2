"""A real supervisord (the PyPI one the stack runs) driving two throwaway programs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lambdawatch.ops.stack.supervisor import ProgramSpec, Supervisor, SupervisorPaths

# On TERM a member writes its mark, waits (up to 20 s) for the other's, and says whether it
# saw it before exiting: as a quorum member does, it cannot finish leaving alone.
MEMBER = """
import pathlib, signal, sys, time
folder, me, other = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def leave(*_):
    (folder / f"term-{me}").touch()
    deadline = time.monotonic() + 20
    while not (folder / f"term-{other}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / f"left-{me}").write_text(str((folder / f"term-{other}").exists()))
    sys.exit(0)
signal.signal(signal.SIGTERM, leave)
(folder / f"ready-{me}").touch()
while True:
    time.sleep(0.1)
"""


def test_members_stopped_together_each_see_the_other_leave(tmp_path: Path) -> None:
    script = tmp_path / "member.py"
    script.write_text(MEMBER)
    programs = [
        ProgramSpec(
            name,
            [sys.executable, str(script), str(tmp_path), name, other],
            tmp_path,
            start_seconds=0,
        )
        for name, other in (("a", "b"), ("b", "a"))
    ]
    supervisor = Supervisor(SupervisorPaths(tmp_path / "var"))
    supervisor.ensure_started(programs)
    try:
        for program in programs:
            supervisor.start(program.name)
        while not all((tmp_path / f"ready-{name}").exists() for name in "ab"):
            time.sleep(0.05)  # each has its TERM handler
        supervisor.stop_together(["a", "b"])
        assert {supervisor.info(name)["statename"] for name in "ab"} == {"STOPPED"}
    finally:
        supervisor.shutdown()
    assert (tmp_path / "left-a").read_text() == "True"
    assert (tmp_path / "left-b").read_text() == "True"
