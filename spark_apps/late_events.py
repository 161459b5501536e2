"""The late events of the windowed queries, sent to the dead-letter topic as they are counted.

Every query progress passes through ``LateEvents.observe`` (on Spark's listener thread: a dict
update). A micro-batch whose stateful operators dropped rows behind the watermark is queued;
a worker thread re-reads exactly that batch's Kafka offsets and applies the query's rule
(``spark_apps.transforms.lateness``) against the watermark of the query's previous batch,
remembered from the previous progress or, after a restart, read from ``speed_layer_progress``.
The queries never wait for it, and a failure here is logged, never raised into the stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lambdawatch.core.pipeline_health import (
    SUBSCRIPTION,
    batch_watermark,
    kafka_offsets,
    late_rows,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.lateness import LateRule, late_dead_letters
from spark_apps.transforms.parsing import dead_letters_to_kafka

log = logging.getLogger("lambdawatch.speed_layer")
PreviousWatermark = Callable[[str, int], str | None]  # (query, batch id) → the batch before's


@dataclass(frozen=True)
class LateBatch:
    """A micro-batch that dropped rows: where its records are and what they were judged by."""

    query: str
    batch_id: int
    sources: tuple[tuple[Any, Any], ...]  # (start offsets, end offsets) per Kafka source
    watermark: str  # the previous batch's, which Spark's late filter applied
    dropped: int  # Spark's count


class LateEvents:
    def __init__(
        self,
        io: StreamIO,
        rules: Mapping[str, LateRule],
        previous_watermark: PreviousWatermark,
    ) -> None:
        self.io, self.rules, self.previous_watermark = io, rules, previous_watermark
        self.last: dict[str, tuple[int, str | None]] = {}  # query → (batch id, its watermark)
        self.jobs: queue.Queue[LateBatch | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="late-events", daemon=True)
        self.worker.start()

    def observe(self, progress: Mapping[str, Any]) -> None:
        """One query progress (its JSON form): queue the batch if it dropped late rows."""
        query, batch_id = str(progress.get("name")), int(progress["batchId"])
        before = self.last.get(query)
        self.last[query] = (batch_id, batch_watermark(progress))
        dropped = late_rows(progress) or 0
        if query not in self.rules or dropped == 0:
            return
        if before is not None and before[0] == batch_id - 1:
            watermark = before[1]
        else:  # the first batch since a restart: the one before it is on record
            watermark = self.previous_watermark(query, batch_id)
        if watermark is None:
            log.warning("%s batch %d dropped %d late rows; no earlier watermark to find them",
                        query, batch_id, dropped)  # fmt: skip
            return
        sources = tuple(
            (source.get("startOffset"), source.get("endOffset"))
            for source in progress.get("sources", [])
            if SUBSCRIPTION.search(str(source.get("description", "")))  # Kafka sources
        )
        self.jobs.put(LateBatch(query, batch_id, sources, watermark, dropped))

    def close(self, timeout: float = 120.0) -> None:
        """Finish the queued batches (available-now runs end only once they are sent)."""
        self.jobs.put(None)
        self.worker.join(timeout)

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                self.send(job)
            except Exception:  # a dead-letter failure must never stop the stream
                log.exception("late events of %s batch %d not sent", job.query, job.batch_id)

    def send(self, job: LateBatch) -> int:
        """The batch's late events as dead letters; returns how many."""
        rule = self.rules[job.query]
        mark = datetime.fromisoformat(job.watermark.replace("Z", "+00:00"))
        max_bytes = self.io.settings.dead_letters.max_raw_bytes
        found = 0
        for start, end in job.sources:
            last = kafka_offsets(end)
            if not last:
                continue
            records = self.io.kafka_range(kafka_offsets(start), last)
            letters = late_dead_letters(records, rule, job.query, mark, max_bytes).persist()
            try:
                count = letters.count()
                if count:
                    kafka = dead_letters_to_kafka(letters, max_bytes)
                    self.io.write_kafka(kafka, "dead_letters", job.query)
            finally:
                letters.unpersist()
            found += count
        if found != job.dropped:
            log.warning("%s batch %d: Spark dropped %d late rows, %d found", job.query,
                        job.batch_id, job.dropped, found)  # fmt: skip
        return found
