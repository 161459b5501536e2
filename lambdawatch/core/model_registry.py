"""The ``model_registry`` table: which model version is promoted, where it is, its threshold.

The retraining job writes it; the speed layer reads it every micro-batch and switches models
when the promoted version changes. Plain psycopg, so the CLI and tests can read it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import psycopg

Loaded = TypeVar("Loaded")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    path: str
    threshold: float | None


def promoted_model(conn: psycopg.Connection, name: str) -> RegisteredModel | None:
    """The newest promoted version of ``name`` (registration demotes the others)."""
    row = conn.execute(
        "SELECT version, path, threshold FROM model_registry WHERE model_name = %s AND promoted "
        "ORDER BY created_at DESC LIMIT 1",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return RegisteredModel(
        name, str(row[0]), str(row[1]), None if row[2] is None else float(row[2])
    )


class ModelCache(Generic[Loaded]):
    """Holds the loaded artefact of the promoted version; reloads only when the version changes.

    Loading a Spark ``PipelineModel`` takes seconds, checking the registry a millisecond, so a
    streaming query checks every micro-batch and pays the load once per promotion.
    """

    def __init__(self, load: Callable[[str], Loaded]) -> None:
        self._load = load
        self.current: RegisteredModel | None = None
        self.loaded: Loaded | None = None
        self.loads = 0

    def resolve(self, registered: RegisteredModel | None) -> tuple[RegisteredModel, Loaded] | None:
        if registered is None:
            return None
        stale = self.current is None or (registered.version, registered.path) != (
            self.current.version,
            self.current.path,
        )
        if stale:
            self.loaded = self._load(registered.path)
            self.loads += 1
        self.current = registered  # a re-registered version may carry a new threshold
        assert self.loaded is not None
        return self.current, self.loaded


def forecasts_between(conn: psycopg.Connection, first_us: int, last_us: int) -> list[tuple]:
    """The ``ip_forecasts`` rows (``ip, feature, ds, yhat, lower, upper, run_id``) for the
    hours from ``first_us`` to ``last_us`` (epoch µs): what samples are judged by. ``lower``
    and ``upper`` are the sample band, or the interval for forecasts made before it."""
    return conn.execute(
        "SELECT ip, feature, ds, yhat, coalesce(sample_lower, yhat_lower), "
        "coalesce(sample_upper, yhat_upper), run_id FROM ip_forecasts "
        "WHERE ds >= date_trunc('hour', to_timestamp(%s / 1e6)) "
        "AND ds <= to_timestamp(%s / 1e6)",
        (first_us, last_us),
    ).fetchall()
