"""Which micro-batches ``LateEvents`` re-reads, and against which watermark."""

from __future__ import annotations

from typing import Any

from lambdawatch.core.events import SERVER_SCHEMA
from spark_apps.late_events import LateBatch, LateEvents
from spark_apps.transforms.lateness import LateRule

SOURCE = {
    "description": "KafkaV2[Subscribe[server-events]]",
    "startOffset": {"server-events": {"0": 10}},
    "endOffset": '{"server-events": {"0": 15}}',
}


def _progress(query: str, batch_id: int, watermark: str, dropped: int) -> dict[str, Any]:
    return {
        "name": query,
        "batchId": batch_id,
        "eventTime": {"watermark": watermark},
        "stateOperators": [{"numRowsDroppedByWatermark": dropped}],
        "sources": [SOURCE, {"description": "FileStreamSource[/x]"}],
    }


class Recorded(LateEvents):
    """The real queueing, with the batches it would re-read kept instead of read."""

    def __init__(self, recorded_watermarks: dict[tuple[str, int], str]) -> None:
        self.asked: list[tuple[str, int]] = []

        def previous(query: str, batch_id: int) -> str | None:
            self.asked.append((query, batch_id))
            return recorded_watermarks.get((query, batch_id - 1))

        super().__init__(None, {"cpu_anomalies": LateRule(SERVER_SCHEMA)}, previous)  # type: ignore[arg-type]
        self.batches: list[LateBatch] = []

    def send(self, job: LateBatch) -> int:
        self.batches.append(job)
        return job.dropped


def test_a_batch_that_dropped_rows_is_judged_by_the_watermark_before_it() -> None:
    late = Recorded({})
    late.observe(_progress("cpu_anomalies", 4, "2026-01-01T00:01:00.000Z", 0))
    late.observe(_progress("cpu_anomalies", 5, "2026-01-01T00:02:00.000Z", 3))
    late.observe(_progress("server_status", 7, "2026-01-01T00:02:00.000Z", 9))  # no rule
    late.close()
    assert late.batches == [
        LateBatch(
            "cpu_anomalies", 5, ((SOURCE["startOffset"], SOURCE["endOffset"]),),
            "2026-01-01T00:01:00.000Z", 3,
        )
    ]  # fmt: skip  # the Kafka source only, batch 4's watermark, Spark's count
    assert late.asked == []


def test_after_a_restart_the_watermark_before_comes_from_the_record() -> None:
    late = Recorded({("cpu_anomalies", 8): "2026-01-01T00:03:00+00:00"})
    late.observe(_progress("cpu_anomalies", 9, "2026-01-01T00:04:00.000Z", 2))
    late.observe(_progress("cpu_anomalies", 10, "2026-01-01T00:04:00.000Z", 0))
    late.close()
    assert late.asked == [("cpu_anomalies", 9)]
    assert [(b.batch_id, b.watermark) for b in late.batches] == [(9, "2026-01-01T00:03:00+00:00")]


def test_without_a_watermark_before_nothing_is_queued() -> None:
    late = Recorded({})
    late.observe(_progress("cpu_anomalies", 3, "2026-01-01T00:04:00.000Z", 2))
    late.close()
    assert late.batches == []
