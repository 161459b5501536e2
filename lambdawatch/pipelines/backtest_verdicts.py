"""A backtest's verdicts, as its consumers need them: the findings (WARN, ERROR) in full, the
rest as counts per series, and every row again in chunks only when written out.

Archived history holds more windows than fit in memory (50 servers judged every 500 ms make
8.6 M windows a day), so Spark writes them once to Parquet and they are read back in batches;
a file's verdicts are a pandas frame. Both summarise the same way (``series_counts``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

OUTPUT_COLUMNS = (
    "detector", "entity", "metric", "window_start", "window_end", "value", "expected", "score",
    "severity",
)  # fmt: skip
# what a backtest returns: the output and the model or baseline each row was judged by
RESULT_COLUMNS = (*OUTPUT_COLUMNS, "model_version")
SERIES_COLUMNS = ("entity", "metric", "judged", "warn", "error", "highest_score")
BATCH_ROWS = 262_144  # rows per batch read back from Parquet


@dataclass(frozen=True)
class Verdicts:
    findings: pd.DataFrame  # RESULT_COLUMNS, severity WARN or ERROR, by entity and time
    series: pd.DataFrame  # SERIES_COLUMNS, one row per entity and metric
    first: pd.Timestamp | None  # the earliest and latest window start judged
    last: pd.Timestamp | None
    model_versions: tuple[str, ...]
    chunks: Callable[[], Iterator[pd.DataFrame]]  # every verdict, RESULT_COLUMNS, in order

    @property
    def judged(self) -> int:
        return int(self.series["judged"].sum())

    @property
    def warn(self) -> int:
        return int(self.series["warn"].sum())

    @property
    def error(self) -> int:
        return int(self.series["error"].sum())

    @property
    def entities(self) -> list[str]:
        return sorted({str(entity) for entity in self.series["entity"]})


# How per-row or per-batch counts add up to a series' (one rule for a batch and the whole run).
SERIES_TOTALS = {"judged": "sum", "warn": "sum", "error": "sum", "highest_score": "max"}


def series_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Verdicts → ``SERIES_COLUMNS`` per entity and metric."""
    severity = table["severity"]
    counted = table.assign(
        judged=1,
        warn=(severity == "WARN").astype("int64"),
        error=(severity == "ERROR").astype("int64"),
        highest_score=table["score"],
    )
    return _combined([counted[list(SERIES_COLUMNS)]])


def _combined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({name: [] for name in SERIES_COLUMNS})
    grouped = pd.concat(parts).groupby(["entity", "metric"], sort=True, as_index=False)
    return grouped.agg(SERIES_TOTALS)[list(SERIES_COLUMNS)]


def utc_times(table: pd.DataFrame) -> pd.DataFrame:
    for column in ("window_start", "window_end"):
        table[column] = pd.to_datetime(table[column], utc=True).astype("datetime64[ns, UTC]")
    return table


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """By entity, metric and window start, times as UTC."""
    return utc_times(table).sort_values(["entity", "metric", "window_start"], ignore_index=True)


def verdicts_of(results: pd.DataFrame) -> Verdicts:
    """Verdicts held in memory (a file's)."""
    results = ordered(results[list(RESULT_COLUMNS)].copy())
    times = results["window_start"]
    return Verdicts(
        findings=results[results["severity"] != "SAFE"].reset_index(drop=True),
        series=series_counts(results),
        first=times.min() if len(times) else None,
        last=times.max() if len(times) else None,
        model_versions=tuple(sorted({str(v) for v in results["model_version"].dropna()})),
        chunks=lambda: iter([results]),
    )


def stored_verdicts(path: Path) -> Verdicts:
    """Verdicts Spark wrote to the Parquet folder ``path``, ordered by entity, metric and
    window start: summarised in one pass of bounded batches, read again for ``chunks``."""
    import pyarrow.dataset as ds  # noqa: PLC0415 - with pandas' Parquet support

    def batches() -> Iterator[pd.DataFrame]:
        dataset = ds.dataset(str(path), format="parquet")
        for batch in dataset.to_batches(columns=list(RESULT_COLUMNS), batch_size=BATCH_ROWS):
            if batch.num_rows:  # Spark sorted each file: a batch is in order already
                yield utc_times(batch.to_pandas())

    series, findings, versions = [], [], set()
    first = last = None
    for batch in batches():
        series.append(series_counts(batch))
        findings.append(batch[batch["severity"] != "SAFE"])
        versions |= {str(v) for v in batch["model_version"].dropna()}
        low, high = batch["window_start"].min(), batch["window_start"].max()
        first = low if first is None else min(first, low)
        last = high if last is None else max(last, high)
    found = (
        ordered(pd.concat(findings, ignore_index=True))
        if findings
        else pd.DataFrame({name: [] for name in RESULT_COLUMNS})
    )
    return Verdicts(found, _combined(series), first, last, tuple(sorted(versions)), batches)


def write_output(verdicts: Verdicts, path: Path) -> int:
    """Every verdict's ``OUTPUT_COLUMNS`` as CSV, times in ISO-8601 UTC with milliseconds,
    written chunk by chunk; returns the rows written."""
    written = 0
    with path.open("w", newline="") as handle:
        handle.write(",".join(OUTPUT_COLUMNS) + "\n")
        for chunk in verdicts.chunks():
            out = chunk[list(OUTPUT_COLUMNS)].copy()
            for column in ("window_start", "window_end"):
                out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
            out.to_csv(handle, index=False, header=False, float_format="%.17g")
            written += len(out)
    return written
