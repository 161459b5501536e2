"""The Superset dashboards as code: a chart model (``model``) and the dashboards' content
(``content``), rendered to Superset's native YAML in ``superset/``."""

from __future__ import annotations

from pathlib import Path

from lambdawatch.ops.dashboards.content import DASHBOARDS, DATASETS
from lambdawatch.ops.dashboards.model import render_files, write_files

__all__ = ["DASHBOARDS", "DATASETS", "render", "write"]


def render() -> dict[str, str]:
    """Every asset file of the platform's dashboards, relative path → YAML text."""
    return render_files(DATASETS.values(), DASHBOARDS)


def write(root: Path) -> list[Path]:
    """Render the dashboards under ``root`` (``superset/``), removing stale asset files."""
    return write_files(root, render())
