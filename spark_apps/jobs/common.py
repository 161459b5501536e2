"""What every batch job shares: arguments, JDBC reads of PostgreSQL, the JSON summary line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambdawatch.core.catalog import SUMMARY_FILE


def parse_interval_end(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    """Every job is keyed by its data interval's end (never ``now()``): re-runs are identical."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--interval-end",
        type=lambda text: datetime.fromisoformat(text).astimezone(UTC),
        default=datetime.now(UTC),
        help="ISO-8601 end of the data interval this run is for (default: now)",
    )
    return parser.parse_args(argv)


def time_between(column: str, start: datetime, end: datetime) -> str:
    """SQL for ``start <= column < end`` (aware datetimes, rendered as ISO literals)."""
    return (
        f"{column} >= '{start.isoformat()}'::timestamptz "
        f"AND {column} < '{end.isoformat()}'::timestamptz"
    )


def print_summary(summary: dict[str, Any]) -> None:
    """The job's JSON summary, which the submitting task returns (XCom): the last stdout line,
    and the file ``LAMBDAWATCH_SUMMARY_FILE`` names (a submitter that cannot read the job's
    stdout, such as Airflow's Spark provider, reads it there)."""
    text = json.dumps(summary, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    path = os.environ.get(SUMMARY_FILE)
    if path:
        partial = Path(path).with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        partial.replace(path)  # whole or absent, never half-written
