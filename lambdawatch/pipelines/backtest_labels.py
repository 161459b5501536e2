"""A backtest judged against labelled episodes: a file (``--labels``) or ``ground_truth``.

The judging is ``quality``'s (one overlap rule): recall over the episodes the detector targets,
precision of its findings against every label of their entity, and the time from an episode's
start to the end of the first finding that overlaps it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd

from lambdawatch.pipelines.backtest_verdicts import Verdicts
from lambdawatch.pipelines.quality import (
    DETECTOR_TARGETS,
    EpisodeVerdict,
    Interval,
    Label,
    Quality,
    judge_episodes,
    score,
)

LABEL_COLUMNS = ("start", "end")  # required; "entity" and "kind" are optional
ANY_ENTITY = ""  # a label without an entity holds for every entity of the run
FILE_KIND = "labelled"
SAMPLE = timedelta(milliseconds=1)  # a sample's finding covers its instant


class LabelError(ValueError):
    """A bad labels file, said in one line naming the line or column."""


def read_labels(path: Path, encoding: str = "utf-8") -> list[Label]:
    """Episodes from a CSV with ``start,end`` (any time replay takes) and optionally
    ``entity`` (default: every entity) and ``kind``."""
    from generators.replay import parse_time  # noqa: PLC0415 - one time rule

    try:
        with path.open(newline="", encoding=encoding) as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in LABEL_COLUMNS if name not in header]
            if missing:
                raise LabelError(f"{path}: no column {', '.join(missing)} (header: {header})")
            labels = []
            for line, raw in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                try:
                    start, end = (parse_time(row[name]) for name in LABEL_COLUMNS)
                except (ValueError, OverflowError) as exc:
                    raise LabelError(f"{path} line {line}: {exc}") from None
                if end < start:
                    raise LabelError(f"{path} line {line}: end {row['end']} is before start")
                labels.append(
                    Label(
                        row.get("entity") or ANY_ENTITY,
                        row.get("kind") or FILE_KIND,
                        datetime.fromtimestamp(start / 1000, tz=UTC),
                        datetime.fromtimestamp(end / 1000, tz=UTC),
                    )
                )
            return labels
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not {encoding} ({exc.reason})") from None
    except OSError as exc:
        raise LabelError(f"{path}: {exc.strerror or exc}") from None


def ground_truth_labels(conn: Any, source: str, start: datetime, end: datetime) -> list[Label]:
    """The ``ground_truth`` episodes of ``source`` that overlap ``[start, end)``."""
    rows = conn.execute(
        "SELECT entity, kind, start_ts, end_ts FROM ground_truth "
        "WHERE source = %s AND start_ts < %s AND end_ts > %s ORDER BY start_ts",
        (source, end, start),
    ).fetchall()
    return [Label(*row) for row in rows]


@dataclass(frozen=True)
class Judgement:
    """A run against its labels, at two levels: any finding (WARN or ERROR), and ERROR."""

    labels: str  # where they came from
    episodes: list[EpisodeVerdict]  # each targeted episode and its first finding
    first_errors: list[datetime | None]  # per episode, the first ERROR's end
    findings: Quality
    errors: Quality

    @property
    def median_time_to_detect(self) -> timedelta | None:
        times = [e.time_to_detect for e in self.episodes if e.time_to_detect is not None]
        return median(times) if times else None

    def row(self) -> dict[str, Any]:
        """``backtest_runs``' judgement columns: none judged is null, not 0 or 1."""
        any_found, errors = self.findings, self.errors
        ttd = self.median_time_to_detect
        return {
            "labels": self.labels,
            "episodes": any_found.episodes,
            "detected": any_found.detected_episodes,
            "detected_by_error": errors.detected_episodes,
            "precision": any_found.precision if any_found.detections else None,
            "recall": any_found.recall if any_found.episodes else None,
            "error_precision": errors.precision if errors.detections else None,
            "error_recall": errors.recall if errors.episodes else None,
            "median_time_to_detect_s": ttd.total_seconds() if ttd is not None else None,
        }


def finding_intervals(results: pd.DataFrame, severities: Iterable[str]) -> list[Interval]:
    """The findings at ``severities`` as intervals (a sample's as its instant)."""
    chosen = results[results["severity"].isin(list(severities))]
    return [
        Interval(str(entity), start.to_pydatetime(), max(end, start + SAMPLE).to_pydatetime())
        for entity, start, end in chosen[["entity", "window_start", "window_end"]].itertuples(
            index=False, name=None
        )
    ]


def for_entities(labels: Iterable[Label], entities: Iterable[str]) -> list[Label]:
    """Labels without an entity, once for each entity of the run."""
    names = sorted(set(entities))
    out = []
    for label in labels:
        if label.entity == ANY_ENTITY:
            out += [Label(name, label.kind, label.start, label.end) for name in names]
        else:
            out.append(label)
    return out


def judge(verdicts: Verdicts, detector: str, labels: list[Label], origin: str) -> Judgement:
    """A backtest's verdicts against ``labels`` (only findings matter, and which entities
    were judged). From ``ground_truth``, an episode is a target
    only if it is of a kind ``detector`` is meant to catch (``DETECTOR_TARGETS``); every label
    counts for precision. A file's labels are all targets."""
    every = for_entities(labels, verdicts.entities)
    kinds = DETECTOR_TARGETS.get(detector) if origin == "ground_truth" else None
    targets = [label for label in every if kinds is None or label.kind in kinds]
    intervals = [label.interval for label in every]
    findings = finding_intervals(verdicts.findings, ("WARN", "ERROR"))
    errors = finding_intervals(verdicts.findings, ("ERROR",))
    target_intervals = [label.interval for label in targets]
    return Judgement(
        origin,
        judge_episodes(targets, findings),
        [verdict.first_finding for verdict in judge_episodes(targets, errors)],
        score(target_intervals, intervals, findings),
        score(target_intervals, intervals, errors),
    )
