"""Replay any CSV into Kafka in timestamp order: bring-your-own telemetry.

The source (``metric`` by default, or ``server``, ``ip``, ``cdn``, ``weather``) fixes the
events' shape (``lambdawatch.core.events``). For ``metric``, each numeric column (or
``value_column``) becomes ``{entity, metric, timestamp, value}`` events for the
``metric_scores`` query. For the others, each row becomes one event: a field takes the column
mapped to it, else the column of its name, else a constant; a field no detector needs may be
missing. The entity (the source's key) is the file name unless given, and an unmapped
``event_id`` is derived (``lambdawatch.core.events.event_id``). A malformed row is reported with
its line number; ``on_error`` decides whether it stops the replay or is skipped and counted.
"""

from __future__ import annotations

import codecs
import csv
import heapq
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from lambdawatch.core.events import SCHEMAS, EventSchema, Source, event_id, iso_utc

TIME_COLUMN_NAMES = ("timestamp", "time", "ts", "datetime", "date", "event_time")
OnError = Literal["skip", "stop"]
T = TypeVar("T")
TimeUnit = Literal["s", "ms", "us"]
MILLIS_PER_UNIT: dict[TimeUnit, float] = {"s": 1000.0, "ms": 1.0, "us": 0.001}
# An epoch number's unit, told by its size: below 1e11 seconds (up to year 5138), below 1e14
# milliseconds, below 1e17 microseconds; anything larger is out of range.
UNIT_BY_MAGNITUDE = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant ISO-8601 can write


class OptionError(ValueError):
    """A bad ``--map`` or ``--set``, said in one line."""


MAPPABLE_FIELDS = ("timestamp", "value", "entity")  # --map COLUMN=FIELD of metric events
SETTABLE_FIELDS = ("entity", "metric")  # --set FIELD=VALUE of metric events
SOURCES: tuple[Source, ...] = ("metric", "server", "ip", "cdn", "weather")


class ReplayError(ValueError):
    """A row that cannot be replayed, with its 1-based line number in the file."""

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class ReplayOptions:
    entity: str | None = None  # the source's key (metric: ``entity``)
    time_column: str | None = None
    value_column: str | None = None  # of the source's ``value_field``
    entity_column: str | None = None
    source: Source = "metric"
    columns: tuple[tuple[str, str], ...] = ()  # (field, column) of other fields (not metric)
    constants: tuple[tuple[str, str], ...] = ()  # (field, text) of other fields (not metric)
    on_error: OnError = "stop"
    encoding: str = "utf-8"
    time_unit: TimeUnit | None = None  # of epoch numbers; None: told by the column or the size
    metric: str | None = None  # the metric's name (one value column); default the column's


def parse_pairs(texts: Iterable[str] | str | None, option: str) -> dict[str, str]:
    """``a=b,c=d`` (the option may be repeated) into a dict; a malformed pair names itself."""
    chunks = [texts] if isinstance(texts, str) else list(texts or [])
    pairs: dict[str, str] = {}
    for part in (p.strip() for chunk in chunks for p in chunk.split(",")):
        if not part:
            continue
        left, sep, right = part.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise OptionError(f"{option}: {part!r} is not name=value")
        pairs[left.strip()] = right.strip()
    return pairs


def replay_options(
    source: str = "metric",
    mapping: Iterable[str] | str | None = None,
    constants: Iterable[str] | str | None = None,
    time_column: str | None = None,
    value_column: str | None = None,
    entity_column: str | None = None,
    entity: str | None = None,
    **rest: Any,
) -> ReplayOptions:
    """Replay options from ``--source``, ``--map COLUMN=FIELD`` and ``--set FIELD=VALUE``
    pairs; the ``*_column`` arguments are shorthands for ``--map``, ``entity`` for ``--set``
    of the source's key field."""
    if source not in SOURCES:
        raise OptionError(f"--source: {source!r} is not one of {', '.join(SOURCES)}")
    schema = SCHEMAS[source]
    mappable = MAPPABLE_FIELDS if source == "metric" else schema.names
    settable = (
        SETTABLE_FIELDS
        if source == "metric"
        else tuple(name for name in schema.names if name != "timestamp")
    )
    key = "entity" if source == "metric" else schema.key_field
    columns: dict[str, str] = {}
    for column, name in parse_pairs(mapping, "--map").items():
        if name not in mappable:
            raise OptionError(
                f"--map: field {name!r} (from column {column!r}) is not one of "
                + ", ".join(mappable)
            )
        columns[name] = column
    if value_column and schema.value_field is None:
        raise OptionError(
            f"--value-column: a {source} event has no single value; use --map COLUMN=FIELD"
        )
    value = schema.value_field
    shorthands = (("timestamp", time_column), (value, value_column), (key, entity_column))
    for name, column in shorthands:
        if column and name:
            columns[name] = column
    values = parse_pairs(constants, "--set")
    if entity:
        values[key] = entity
    for name in values:
        if name not in settable:
            raise OptionError(f"--set: field {name!r} is not one of {', '.join(settable)}")
    both = sorted(set(values) & set(columns))
    if both:
        raise OptionError(f"{both[0]} is both mapped from a column (--map) and set (--set)")
    return ReplayOptions(
        entity=values.pop(key, None),
        time_column=columns.pop("timestamp", None),
        value_column=columns.pop(value, None) if value else None,
        entity_column=columns.pop(key, None),
        source=source,  # type: ignore[arg-type]  # checked against SOURCES above
        metric=values.pop("metric", None) if source == "metric" else None,
        columns=tuple(sorted(columns.items())),
        constants=tuple(sorted(values.items())),
        **rest,
    )


@dataclass
class ReplayPlan:
    """Events to send, in timestamp order, and the rows that were skipped."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    skipped: list[ReplayError] = field(default_factory=list)
    rows: int = 0


def parse_time(text: str, unit: TimeUnit | None = None) -> int:
    """Epoch milliseconds from ISO-8601 (naive = UTC) or an epoch number in ``unit`` (seconds,
    milliseconds or microseconds; told by its size when not given)."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    try:
        number = float(value)
    except ValueError:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if not math.isfinite(number):
        raise ValueError(f"not a timestamp: {value!r}")
    if unit is None:
        unit = next((u for limit, u in UNIT_BY_MAGNITUDE if abs(number) < limit), None)
        if unit is None:
            raise ValueError(f"{value} is out of range for epoch seconds, ms or µs")
    millis = int(number * MILLIS_PER_UNIT[unit])
    if not 0 <= millis <= LATEST_MS:
        raise ValueError(f"{value} {unit} is out of range (1970 to 9999)")
    return millis


def column_time_unit(column: str, requested: TimeUnit | None) -> TimeUnit | None:
    """A column named ``*_ms`` or ``*millis*`` holds milliseconds whatever their size."""
    if requested:
        return requested
    name = column.strip().lower()
    return "ms" if name.endswith("_ms") or "millis" in name else None


def undecodable(row: dict[str, str], encoding: str) -> str | None:
    """The reason a row read with ``surrogateescape`` held bytes invalid in ``encoding``."""
    for column, text in row.items():
        if text and any("\udc80" <= char <= "\udcff" for char in text):
            raw = text.encode(encoding, "surrogateescape")
            bad = next(ord(c) - 0xDC00 for c in text if "\udc80" <= c <= "\udcff")
            return f"column {column!r} has a byte 0x{bad:02x} that is not {encoding} ({raw[:40]!r})"
    return None


def parse_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def choose_time_column(header: list[str], requested: str | None) -> str:
    if requested:
        if requested not in header:
            raise ReplayError(1, f"time column {requested!r} not in header {header}")
        return requested
    for name in header:
        if name.strip().lower() in TIME_COLUMN_NAMES:
            return name
    return header[0]


@dataclass(frozen=True)
class FieldSource:
    """Where one field of a shaped event comes from: a column, a constant, or nowhere."""

    name: str
    type: str
    column: str | None = None
    constant: str | None = None


def event_shape(
    schema: EventSchema, header: list[str], time_column: str, entity: str, options: ReplayOptions
) -> tuple[FieldSource, ...]:
    """Each field's source for a non-metric event; a required field with none is an error."""
    mapped = dict(options.columns)
    if options.value_column and schema.value_field:
        mapped[schema.value_field] = options.value_column
    if options.entity_column:
        mapped[schema.key_field] = options.entity_column
    for field_name, column in mapped.items():
        if column not in header:
            raise ReplayError(1, f"column {column!r} (for {field_name}) not in header {header}")
    constants = dict(options.constants)
    if options.entity:
        constants[schema.key_field] = options.entity
    taken = set(mapped.values()) | {time_column}
    shape = []
    for name, kind in schema.fields:
        if name == "timestamp":
            continue
        same_name = name in header and name not in taken and name not in constants
        column = mapped.get(name) or (name if same_name else None)
        if name == schema.key_field and column is None:
            constants.setdefault(name, entity)  # the file's name, unless given
        source = FieldSource(name, kind, column, None if column else constants.get(name))
        if name in schema.required and source.column is None and source.constant is None:
            raise ReplayError(
                1,
                f"a {schema.source} event needs {name!r}: no column of that name in {header}; "
                f"map one (--map COLUMN={name}) or set it (--set {name}=VALUE)",
            )
        shape.append(source)
    return tuple(shape)


def field_value(field_source: FieldSource, text: str) -> Any:
    """``text`` as the field's type; raises ValueError naming what is wrong."""
    if field_source.type in {"long", "int"}:
        number = parse_number(text)
        if not number.is_integer():
            raise ValueError(f"not a whole number: {text!r}")
        return int(number)
    if field_source.type == "double":
        return parse_number(text)
    if field_source.type == "timestamp":
        return iso_utc(parse_time(text))
    return text


def _shaped_event(
    line: int, row: dict[str, str], schema: EventSchema, shape: tuple[FieldSource, ...],
    timestamp: int,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    event: dict[str, Any] = {}
    for source in shape:
        text = row[source.column] if source.column else source.constant
        if text is None or not text.strip():
            if source.name in schema.required:
                where = f"column {source.column!r}" if source.column else "the --set value"
                raise ReplayError(line, f"{where} is empty; a {schema.source} event needs it")
            continue  # optional and absent: the field defaults to null
        try:
            event[source.name] = field_value(source, text.strip())
        except (ValueError, OverflowError) as exc:
            where = f"column {source.column!r}" if source.column else f"--set {source.name}"
            raise ReplayError(line, f"{where} ({source.name}): {exc}") from None
    event["timestamp"] = iso_utc(timestamp)
    key = str(event[schema.key_field])
    if "event_id" not in event:
        identity = tuple(str(event[name]) for name in schema.identity_fields)
        event["event_id"] = event_id(schema.source, identity, timestamp)
    return key, {name: event[name] for name, _ in schema.fields if name in event}


def _row_events(
    line: int,
    row: dict[str, str],
    header: list[str],
    time_column: str,
    metrics: list[str],
    entity: str,
    options: ReplayOptions,
    shape: tuple[FieldSource, ...],
) -> tuple[int, str, list[dict[str, Any]]]:
    if None in row or any(value is None for value in row.values()):
        raise ReplayError(line, f"expected {len(header)} columns")
    problem = undecodable(row, options.encoding)
    if problem:
        raise ReplayError(line, problem)
    try:
        timestamp = parse_time(row[time_column], column_time_unit(time_column, options.time_unit))
    except (ValueError, OverflowError) as exc:
        raise ReplayError(line, f"bad timestamp in {time_column!r}: {exc}") from None
    if options.source != "metric":
        key, event = _shaped_event(line, row, SCHEMAS[options.source], shape, timestamp)
        return timestamp, key, [event]
    row_entity = row[options.entity_column] if options.entity_column else entity
    events = []
    for metric in metrics:
        try:
            value = parse_number(row[metric])
        except ValueError:
            raise ReplayError(line, f"column {metric!r} is not a number: {row[metric]!r}") from None
        name = options.metric or metric
        events.append(
            {
                "event_id": event_id("metric", (row_entity, name), timestamp),
                "entity": row_entity,
                "metric": name,
                "value": value,
                "timestamp": iso_utc(timestamp),
            }
        )
    return timestamp, row_entity, events


Event = tuple[int, str, dict[str, Any]]  # (epoch ms, Kafka key, event)
Encoded = tuple[int, str, bytes]  # (epoch ms, Kafka key, the event's JSON)
REORDER_EVENTS = 100_000  # how far out of time order a streamed file may be and still be sorted
SEND_BUFFER_MB = 16  # unsent messages a replay's producer may hold (bounds its memory)


def _encoding(options: ReplayOptions) -> str:
    name = options.encoding.lower().replace("_", "-")
    encoding = "utf-8-sig" if name in {"utf-8", "utf8"} else options.encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ReplayError(1, f"unknown encoding {options.encoding!r}") from None
    return encoding


def read_events(path: Path, options: ReplayOptions) -> Iterator[list[Event] | ReplayError]:
    """Stream the file: per data row, its events or the error that rejects it (in file order,
    one row in memory at a time). A bad header raises."""
    entity = options.entity or path.stem
    with path.open(newline="", encoding=_encoding(options), errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        if not header:
            raise ReplayError(1, "empty file or missing header")
        time_column = choose_time_column(header, options.time_column)
        if options.value_column and options.value_column not in header:
            raise ReplayError(1, f"value column {options.value_column!r} not in header {header}")
        skip = {time_column, options.entity_column}
        metrics = (
            [options.value_column]
            if options.value_column
            else [name for name in header if name not in skip]
        )
        if options.metric and len(metrics) > 1:
            raise ReplayError(
                1, f"one metric name for {len(metrics)} value columns {metrics}: map one to value"
            )
        shape = (
            event_shape(SCHEMAS[options.source], header, time_column, entity, options)
            if options.source != "metric"
            else ()
        )
        for row in reader:
            try:
                timestamp, key, events = _row_events(
                    reader.line_num, row, header, time_column, metrics, entity, options, shape
                )
            except ReplayError as error:
                yield error
                continue
            yield [(timestamp, key, event) for event in events]


@dataclass
class ReplayCheck:
    """A first pass over the file: what a replay will send, before anything is sent."""

    good_rows: int = 0
    events: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    skipped: int = 0
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[ReplayError] = field(default_factory=list)  # the first few skipped rows

    @property
    def rows(self) -> int:
        return self.good_rows + self.skipped


def good_rows(
    path: Path, options: ReplayOptions, on_skip: Callable[[ReplayError], None]
) -> Iterator[list[Event]]:
    """Each good row's events; a bad row raises under ``stop``, else goes to ``on_skip``."""
    for item in read_events(path, options):
        if isinstance(item, ReplayError):
            if options.on_error == "stop":
                raise item
            on_skip(item)
            continue
        yield item


def check_replay(path: Path, options: ReplayOptions, examples: int = 10) -> ReplayCheck:
    """Validate the whole file in bounded memory; under ``stop`` the first bad row raises."""
    check = ReplayCheck()

    def skipped(error: ReplayError) -> None:
        check.skipped += 1
        check.skipped_by_reason[error.reason.split(":")[0].split(" (")[0]] += 1
        if len(check.examples) < examples:
            check.examples.append(error)

    for events in good_rows(path, options, skipped):
        check.good_rows += 1
        for timestamp, _key, _event in events:
            check.events += 1
            check.first_ms = timestamp if check.first_ms is None else min(check.first_ms, timestamp)
            check.last_ms = timestamp if check.last_ms is None else max(check.last_ms, timestamp)
    return check


def stream_replay(
    path: Path, options: ReplayOptions, reorder: int = REORDER_EVENTS
) -> Iterator[Encoded]:
    """The file's good events in time order, as the JSON Kafka gets, holding at most
    ``reorder`` of them (encoded: a tenth of a dict's memory): a file out of order by more
    than that comes out as it is beyond (its stragglers arrive late)."""
    waiting: list[tuple[int, int, str, bytes]] = []
    serial = 0  # keeps equal timestamps in file order
    for events in good_rows(path, replace(options, on_error="skip"), lambda _error: None):
        for timestamp, key, event in events:  # the bad rows were reported by the check
            # a copy: orjson's own result keeps a 4 KB allocation whatever its length
            encoded = memoryview(orjson.dumps(event)).tobytes()
            heapq.heappush(waiting, (timestamp, serial, key, encoded))
            serial += 1
            if len(waiting) > reorder:
                earliest = heapq.heappop(waiting)
                yield earliest[0], earliest[2], earliest[3]
    while waiting:
        earliest = heapq.heappop(waiting)
        yield earliest[0], earliest[2], earliest[3]


def plan_replay(path: Path, options: ReplayOptions) -> ReplayPlan:
    """Read and validate the whole file, then order its events by timestamp (stable); in
    memory, for the backtest and tests. ``lambdawatch replay`` streams instead."""
    plan = ReplayPlan()
    for events in good_rows(path, options, plan.skipped.append):
        plan.rows += 1
        plan.events.extend(events)
    plan.rows += len(plan.skipped)
    plan.events.sort(key=lambda event: event[0])
    return plan


def paced(
    events: Iterable[tuple[int, str, T]],
    speed: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[str, T]]:
    """Yield (key, event) in order; with ``speed`` wait so event gaps shrink by that factor."""
    first: int | None = None
    started = clock()
    for timestamp, key, event in events:
        if first is None:
            first, started = timestamp, clock()
        if speed:
            due = started + (timestamp - first) / 1000 / speed
            delay = due - clock()
            if delay > 0:
                sleep(delay)
        yield key, event


def late_warning(
    check: ReplayCheck, watermarks: dict[str, datetime], backtest_hint: str
) -> str | None:
    """What to tell before sending a file whose events are older than a live query's
    watermark: those events will be late dead letters for it, not scored."""
    if check.first_ms is None or check.last_ms is None:
        return None
    marks_ms = {query: int(mark.timestamp() * 1000) for query, mark in watermarks.items()}
    behind = sorted(query for query, mark in marks_ms.items() if check.first_ms <= mark)
    if not behind:
        return None
    marks = ", ".join(f"{q} ({iso_utc(marks_ms[q])})" for q in behind)
    everything = all(check.last_ms <= marks_ms[q] for q in behind)
    share = "all of its events are" if everything else "its events before those are"
    return (
        f"the file starts at {iso_utc(check.first_ms)}, behind the live watermark of {marks}: "
        f"{share} late for those queries and go to the dead-letter topic (reason late), not "
        f"to their windows. To score history, run: {backtest_hint}"
    )


def summary(check: ReplayCheck, sent: int, seconds: float) -> list[str]:
    """What a replay did, for the operator: rows read, events sent and their rate, the time
    span, and the skipped rows counted by reason."""
    lines = [f"read {check.rows:,} rows, sent {sent:,} events in {seconds:.1f} s "
             f"({sent / seconds if seconds > 0 else 0:,.0f} events/s)"]  # fmt: skip
    if check.first_ms is not None and check.last_ms is not None:
        lines.append(f"time span {iso_utc(check.first_ms)} → {iso_utc(check.last_ms)}")
    lines.append(
        f"skipped {check.skipped} malformed rows"
        + "".join(f"; {n} × {kind}" for kind, n in check.skipped_by_reason.most_common())
    )
    return lines
