"""Imports only go down the floors DESIGN.md names: a module may import its own room and the
rooms below it, never one above (so "may I import this from here?" has one answer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("lambdawatch", "generators", "spark_apps", "dags")
# room → the rooms it may import (its own included); the first matching prefix wins
ALLOWED = {
    "lambdawatch.core": {"lambdawatch.core"},
    "generators": {"lambdawatch.core", "generators"},
    "spark_apps": {"lambdawatch.core", "spark_apps"},
    "lambdawatch.pipelines": {
        "lambdawatch.core",
        "generators",
        "spark_apps",
        "lambdawatch.pipelines",
    },
    "lambdawatch.ops": {
        "lambdawatch.core",
        "generators",
        "spark_apps",
        "lambdawatch.pipelines",
        "lambdawatch.ops",
    },
    "dags": {"lambdawatch.core", "lambdawatch.pipelines", "dags"},
    "lambdawatch": set(),  # the package's __init__ only
}


def _room(module: str) -> str:
    return max((room for room in ALLOWED if module == room or module.startswith(room + ".")),
               key=len)  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PROJECT}


def upward_imports(path: Path, module: str) -> list[str]:
    allowed = ALLOWED[_room(module)]
    return sorted(
        name for name in _imports(path)
        if not any(name == room or name.startswith(room + ".") for room in allowed)
    )  # fmt: skip


SOURCES = sorted(p for top in PROJECT for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path: Path) -> None:
    module = _module_name(path)
    assert upward_imports(path, module) == [], f"{_room(module)} may import only " + ", ".join(
        sorted(ALLOWED[_room(module)])
    )


def test_every_source_file_is_in_a_room() -> None:
    assert len(SOURCES) > 50
    assert {_room(_module_name(p)) for p in SOURCES} == set(ALLOWED)


@pytest.mark.parametrize(
    ("module", "source", "upward"),
    [
        ("lambdawatch.core.x", "from lambdawatch.ops import cli", ["lambdawatch.ops.cli"]),
        (
            "generators.x",
            "def f():\n    import lambdawatch.pipelines.quality",
            ["lambdawatch.pipelines.quality"],
        ),
        ("spark_apps.x", "from lambdawatch.core.settings import Settings", []),
        ("spark_apps.x", "from generators.ip import IpGenerator", ["generators.ip.IpGenerator"]),
        ("dags.x", "from lambdawatch.pipelines.archive import run", []),
        ("lambdawatch.pipelines.x", "import pyspark\nfrom spark_apps import io", []),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, module: str, source: str, upward: list) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert upward_imports(path, module) == upward
