"""What every batch job shares: arguments, JDBC reads of PostgreSQL, the JSON summary line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


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
    """The last stdout line: a JSON summary the submitting task returns (XCom)."""
    sys.stdout.write(json.dumps(summary, default=str) + "\n")
    sys.stdout.flush()
