"""A micro-batch that fails on a record it cannot write sets that record aside and goes on.

Without this, a ``foreachBatch`` sink that raises on one record fails its micro-batch, the
query stops, the restarted layer replays the same offsets and fails again: one record stops
the real-time output until the topic's retention removes it.

The guard tells record errors (the data is at fault: PostgreSQL ``DataError`` or
``IntegrityError``, Kafka refusing a record's size) from everything else (a broker or database
that is down, a bug), which still fails the query as before. On a record error it finds the
records at fault by bisection (group testing: re-run the sink on halves of the batch until the
failing parts are single rows, ``O(k log n)`` runs for ``k`` bad rows of ``n``), writes the
others, and sends each bad row to the dead letters, or, when that fails too, to a local
quarantine file, logged with its coordinates. Sinks are idempotent (upserts on natural keys,
at-least-once Kafka with stable keys), so re-running one on part of a batch is safe.

A database that is away (a connection refused or lost) is waited for instead: the sink is
re-run with a doubling delay (``retry_delays``) for up to ``retry_for_s``, then the error fails
the query, which its supervisor restarts alone (``spark_apps.supervision``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from lambdawatch.core.pipeline_health import SinkError

log = logging.getLogger("lambdawatch.speed_layer")

BatchSink = Callable[[Any, int], None]
# Kafka's own names for a record the broker or producer refuses for what it is, not for where
# it was sent: these repeat on every replay of the batch, so waiting cannot help.
KAFKA_RECORD_ERRORS = (
    "RecordTooLargeException",
    "RecordBatchTooLargeException",
    "InvalidRecordException",
    "CorruptRecordException",
)
MAX_ERROR_TEXT = 300
SetAside = list[tuple[dict[str, Any], str]]  # rows, each with the reason it was set aside


def is_record_error(error: BaseException) -> bool:
    """True when ``error`` is about the data written, so a replay would fail the same way."""
    if isinstance(error, psycopg.DataError | psycopg.IntegrityError):
        return True
    text = f"{type(error).__name__}: {error}"
    return any(name in text for name in KAFKA_RECORD_ERRORS)


def is_connection_error(error: BaseException) -> bool:
    """True when the database could not be reached or the connection broke (a pool timeout is
    one too): waiting may help, the data is not at fault."""
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        error, psycopg.errors.QueryCanceled
    )


def retry_delays(first_s: float, cap_s: float, total_s: float) -> Iterator[float]:
    """Truncated exponential backoff: ``first_s``, doubled up to ``cap_s``, until the delays
    add up to ``total_s``."""
    delay, waited = first_s, 0.0
    while waited + delay <= total_s:
        yield delay
        waited += delay
        delay = min(cap_s, delay * 2)


def error_summary(error: BaseException) -> str:
    """The first line of an error, named by its class, short enough for a table cell."""
    lines = str(error).strip().splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    for name in KAFKA_RECORD_ERRORS:  # a JVM error's first line is rarely the Kafka one
        match = next((line.strip() for line in lines if name in line), None)
        if match:
            first = match
            break
    return f"{type(error).__name__}: {first}"[:MAX_ERROR_TEXT]


def isolate_failures(
    count: int, attempt: Callable[[int, int], None], fails: Callable[[BaseException], bool]
) -> list[tuple[int, BaseException]]:
    """Bisection over rows ``[0, count)``: run ``attempt(start, stop)`` on halves until each
    failing part is one row; return those rows with their errors. An error ``fails`` does not
    accept propagates (it is not the data's fault)."""
    failed: list[tuple[int, BaseException]] = []
    pending = [(0, count)]
    while pending:
        start, stop = pending.pop()
        if start >= stop:
            continue
        try:
            attempt(start, stop)
        except Exception as error:
            if not fails(error):
                raise
            if stop - start == 1:
                failed.append((start, error))
            else:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]
    return sorted(failed, key=lambda item: item[0])


def quarantine(path: Path, query: str, batch_id: int, rows: SetAside) -> None:
    """Append rows that could not even be dead-lettered to a JSON-lines file (never lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    with path.open("a", encoding="utf-8") as handle:
        for index, (row, reason) in enumerate(rows):
            entry = {"query": query, "batch_id": batch_id, "row_index": index, "reason": reason}
            entry |= {"quarantined_at": now, "row": row}
            handle.write(json.dumps(entry, default=str) + "\n")


@dataclass
class SinkGuard:
    """Wraps the ``foreachBatch`` sinks of one speed layer.

    ``dead_letter(query, batch_id, rows)`` writes ``(row, reason)`` pairs to the dead-letter
    topic; ``on_error`` hears of every batch that set records aside (status file, table).
    """

    spark: Any
    quarantine_dir: Path
    dead_letter: Callable[[str, int, SetAside], None]
    on_error: Callable[[SinkError], None] = lambda _error: None
    retry_first_s: float = 1.0
    retry_cap_s: float = 15.0
    retry_for_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep

    def wrap(self, query: str, sink: BatchSink) -> BatchSink:
        def guarded(frame: Any, batch_id: int) -> None:
            try:
                self._with_retries(query, sink, frame, batch_id)
            except Exception as error:
                if not is_record_error(error):
                    raise
                log.warning("%s batch %d: %s; isolating the records at fault", query, batch_id,
                            error_summary(error))  # fmt: skip
                self._isolate(query, sink, frame, batch_id)

        return guarded

    def _with_retries(self, query: str, sink: BatchSink, frame: Any, batch_id: int) -> None:
        """The sink, re-run while its database is away (its writes are idempotent)."""
        delays = retry_delays(self.retry_first_s, self.retry_cap_s, self.retry_for_s)
        while True:
            try:
                sink(frame, batch_id)
                return
            except Exception as error:
                delay = next(delays, None) if is_connection_error(error) else None
                if delay is None:
                    raise
                log.warning("%s batch %d: %s; retrying in %.0fs", query, batch_id,
                            error_summary(error), delay)  # fmt: skip
                self.sleep(delay)

    def _isolate(self, query: str, sink: BatchSink, frame: Any, batch_id: int) -> None:
        rows = frame.toArrow()
        schema = frame.schema

        def attempt(start: int, stop: int) -> None:
            part = rows.slice(start, stop - start).to_pandas()  # (offset, length)
            sink(self.spark.createDataFrame(part, schema), batch_id)

        failures = isolate_failures(rows.num_rows, attempt, is_record_error)
        if not failures:
            log.warning("%s batch %d: every part was written on retry", query, batch_id)
            return
        bad = [
            (rows.slice(index, 1).to_pylist()[0], f"unwritable: {error_summary(error)}")
            for index, error in failures
        ]
        disposition = "dead_letters"
        try:
            self.dead_letter(query, batch_id, bad)
        except Exception as error:  # the dead letters refused them too: keep them locally
            disposition = "quarantine"
            path = self.quarantine_dir / f"{query}.jsonl"
            quarantine(path, query, batch_id, bad)
            log.error(
                "%s batch %d: %d record(s) quarantined in %s (dead letters failed: %s)",
                query, batch_id, len(bad), path, error_summary(error),
            )  # fmt: skip
        for row, reason in bad:
            log.error("%s batch %d: set aside to %s: %s; row %s", query, batch_id, disposition,
                      reason, json.dumps(row, default=str)[:500])  # fmt: skip
        self.on_error(
            SinkError(
                query=query,
                batch_id=batch_id,
                error=bad[0][1],
                records=len(bad),
                disposition=disposition,
                recorded_at=datetime.now(UTC).isoformat(),
            )
        )
