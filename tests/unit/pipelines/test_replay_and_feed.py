"""CSV replay parsing and live-feed planning: pure functions, small literal inputs."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from generators.registry import make_generator
from generators.replay import (
    OptionError,
    ReplayCheck,
    ReplayError,
    ReplayOptions,
    TimeUnit,
    check_replay,
    column_time_unit,
    late_warning,
    paced,
    parse_time,
    plan_replay,
    replay_options,
    stream_replay,
    summary,
)
from lambdawatch.core.settings import load_settings
from lambdawatch.pipelines.live_feed import FeedPlan, plan_feed, run_feed

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T01:00:00+01:00", T0),
        ("2026-01-01 00:00:00", T0),  # naive means UTC
        ("1767225600", T0),  # epoch seconds
        ("1767225600000", T0),  # epoch milliseconds
        ("1767225600.5", T0 + 500),
        ("1767225600000000", T0),  # epoch microseconds
    ],
)
def test_parse_time_accepts_common_formats(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [("1767225600000", "ms", T0), ("1767225600", "s", T0), ("1767225600000000", "us", T0),
     ("5000", "ms", 5000)],
)  # fmt: skip
def test_a_given_unit_wins_over_the_size(text: str, unit: TimeUnit, expected: int) -> None:
    assert parse_time(text, unit) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("yesterday", "Invalid"), ("nan", "not a timestamp"),
     ("2026-13-01T00:00:00", "month"), ("1e20", "out of range"), ("-5", "out of range"),
     ("99999999999999999", "out of range")],
)  # fmt: skip
def test_parse_time_rejects_garbage_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text)


@pytest.mark.parametrize(
    ("column", "requested", "unit"),
    [("created_ms", None, "ms"), ("EventMillis", None, "ms"), ("time", None, None),
     ("created_ms", "s", "s")],
)  # fmt: skip
def test_a_milliseconds_column_is_read_as_milliseconds(
    column: str, requested: TimeUnit | None, unit: str | None
) -> None:
    assert column_time_unit(column, requested) == unit


BAD_BYTES = (
    b"timestamp,v\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:01Z,\xff2\n"
    b"1e20,4\n2026-01-01T00:00:03Z,5\n"
)


@pytest.mark.parametrize(
    ("options", "line", "reason"),
    [
        (ReplayOptions(), 3, "column 'v' has a byte 0xff that is not utf-8"),
        (ReplayOptions(encoding="latin-1"), 3, "column 'v' is not a number: 'ÿ2'"),
        (ReplayOptions(), 4, "bad timestamp in 'timestamp': 1e20 is out of range"),
    ],
)
def test_bad_bytes_and_times_are_row_errors_never_tracebacks(
    tmp_path: Path, options: ReplayOptions, line: int, reason: str
) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes(BAD_BYTES)
    skipping = plan_replay(path, replace(options, on_error="skip"))
    assert any(e.line == line and e.reason.startswith(reason) for e in skipping.skipped), [
        str(e) for e in skipping.skipped
    ]
    assert [e["value"] for _, _, e in skipping.events] == [1.0, 5.0]
    with pytest.raises(ReplayError, match=r"line 3: "):
        plan_replay(path, options)


def test_an_unknown_encoding_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="line 1: unknown encoding 'klingon'"):
        plan_replay(_csv(tmp_path, "timestamp,v\n"), ReplayOptions(encoding="klingon"))


def test_a_millis_column_is_milliseconds_even_when_small(tmp_path: Path) -> None:
    path = _csv(tmp_path, "t_ms,cpu\n1000,1\n1500,2\n")
    plan = plan_replay(path, ReplayOptions(time_column="t_ms"))
    assert [e["timestamp"] for _, _, e in plan.events] == [
        "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:01.500Z",
    ]  # fmt: skip


def _csv(tmp_path: Path, text: str, name: str = "host-a.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_metrics_mode_sorts_by_time_and_names_entity_after_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, "time,cpu,mem\n2026-01-01T00:00:02Z,3,30\n2026-01-01T00:00:01Z,1,10\n")
    plan = plan_replay(path, ReplayOptions())
    assert [(e["metric"], e["value"]) for _, _, e in plan.events] == [
        ("cpu", 1.0),
        ("mem", 10.0),
        ("cpu", 3.0),
        ("mem", 30.0),
    ]
    first = plan.events[0][2]
    assert first["entity"] == "host-a"
    assert first["timestamp"] == "2026-01-01T00:00:01.000Z"
    assert first["event_id"] == f"metric:host-a:cpu:{T0 + 1000}"
    assert {key for _, key, _ in plan.events} == {"host-a"}


def test_value_and_entity_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "ts,host,load,other\n1767225600,web-1,0.5,x\n1767225601,web-2,0.7,y\n")
    plan = plan_replay(path, ReplayOptions(value_column="load", entity_column="host"))
    assert [(e["entity"], e["value"]) for _, _, e in plan.events] == [
        ("web-1", 0.5),
        ("web-2", 0.7),
    ]


IP_HEADER = "timestamp,src_ip,unq_dst_ip,allow,drop,frequency,pkts_sent,pkts_received,bytesin,"
IP_HEADER += "bytesout,unq_dst_port,note\n"


def test_a_source_fixes_the_events_shape_with_typed_fields(tmp_path: Path) -> None:
    path = _csv(tmp_path, IP_HEADER + "2026-01-01T00:00:00Z,198.18.0.1,3,12,0,5,9,8,700,80,2,x\n")
    plan = plan_replay(path, replay_options("ip"))
    key, event = plan.events[0][1], plan.events[0][2]
    assert key == "198.18.0.1"
    assert event == {
        "event_id": f"ip:198.18.0.1:{T0}",  # derived as the generators derive it
        "src_ip": "198.18.0.1", "unq_dst_ip": 3, "allow": 12, "drop": 0, "frequency": 5,
        "pkts_sent": 9, "pkts_received": 8, "bytesin": 700, "bytesout": 80, "unq_dst_port": 2,
        "timestamp": "2026-01-01T00:00:00.000Z",
    }  # fmt: skip  # the column no field is named after ("note") is not sent


def test_a_two_column_cpu_file_is_a_server_event_with_its_optional_fields_absent(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path, "time_ms,cpu\n1767225600250,41.5\n")
    plan = plan_replay(path, replay_options("server", value_column="cpu"))
    assert plan.events[0][2] == {
        "event_id": f"server:host-a:{T0 + 250}",
        "server_id": "host-a",  # the file's name, as for metrics
        "cpu_usage": 41.5,
        "timestamp": "2026-01-01T00:00:00.250Z",
    }
    with_set = replay_options("server", "cpu=cpu_usage", "server_id=web-1,datacenter=DC-9")
    event = plan_replay(path, with_set).events[0][2]
    assert (event["server_id"], event["datacenter"]) == ("web-1", "DC-9")


@pytest.mark.parametrize(
    ("source", "text", "mapping", "message"),
    [
        ("server", "t,load\n1767225600,1\n", None,
         "line 1: a server event needs 'cpu_usage': no column of that name"),
        ("server", "t,cpu_usage\n1767225600,\n", None,
         "line 2: column 'cpu_usage' is empty; a server event needs it"),
        ("server", "t,cpu_usage\n1767225600,high\n", None,
         "line 2: column 'cpu_usage' \\(cpu_usage\\): could not convert"),
        ("server", "t,cpu_usage,severity_level\n1767225600,5,2.5\n", None,
         "line 2: column 'severity_level' \\(severity_level\\): not a whole number: '2.5'"),
        ("weather", "t,temp\n1767225600,1\n", "tmp=temperature",
         "line 1: value column 'tmp' not in header"),
        ("weather", "t,temperature\n1767225600,1\n", "x=lat",
         "line 1: column 'x' \\(for lat\\) not in header"),
    ],
)  # fmt: skip
def test_a_shaped_row_that_cannot_be_an_event_says_why(
    tmp_path: Path, source: str, text: str, mapping: str | None, message: str
) -> None:
    with pytest.raises(ReplayError, match=message):
        plan_replay(_csv(tmp_path, text), replay_options(source, mapping))


BAD = (
    "timestamp,cpu\n"
    "2026-01-01T00:00:00Z,1\n"
    "not-a-time,2\n"
    "2026-01-01T00:00:02Z,abc\n"
    "2026-01-01T00:00:03Z\n"
    "2026-01-01T00:00:04Z,5\n"
)


def test_bad_rows_stop_with_their_line_number(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"line 3: bad timestamp"):
        plan_replay(_csv(tmp_path, BAD), ReplayOptions(on_error="stop"))


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    plan = plan_replay(_csv(tmp_path, BAD), ReplayOptions(on_error="skip"))
    assert plan.rows == 5
    assert [e["value"] for _, _, e in plan.events] == [1.0, 5.0]
    assert [(error.line, error.reason.split(":")[0]) for error in plan.skipped] == [
        (3, "bad timestamp in 'timestamp'"),
        (4, "column 'cpu' is not a number"),
        (5, "expected 2 columns"),
    ]


def test_unknown_columns_are_reported(tmp_path: Path) -> None:
    path = _csv(tmp_path, "timestamp,cpu\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ReplayError, match="value column 'mem' not in header"):
        plan_replay(path, ReplayOptions(value_column="mem"))


def test_pacing_waits_for_event_gaps_divided_by_speed(tmp_path: Path) -> None:
    path = _csv(tmp_path, "timestamp,v\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:10Z,2\n")
    plan = plan_replay(path, ReplayOptions())
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    sent = list(paced(plan.events, speed=5.0, clock=lambda: now[0], sleep=sleep))
    assert len(sent) == 2
    assert slept == [pytest.approx(2.0)]
    assert list(paced(plan.events, speed=None, clock=lambda: 0.0, sleep=sleep)) == sent


def test_feed_plan_ends_at_now_and_never_in_the_future() -> None:
    plan = plan_feed(natural_rate=10.0, rate=1000.0, duration_s=60, now_ms=T0)
    assert plan.speed == 100.0
    assert plan.start_ms == T0 - 60 * 1000 * 100
    assert plan.target_ms(30, T0) == T0 - 30 * 1000 * 100
    assert plan.target_ms(120, T0) == T0
    live = plan_feed(natural_rate=10.0, rate=None, duration_s=60, now_ms=T0)
    assert (live.start_ms, live.speed) == (T0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        plan_feed(natural_rate=10.0, rate=0, duration_s=60, now_ms=T0)


class RecordingProducer:
    """Keeps what was sent, and when by the feed's clock: this test is about pacing only."""

    client = "recording"
    failures = 0

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.sent: list[tuple[float, dict[str, object]]] = []

    def send_many(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]]
    ) -> int:
        batch = [(self.clock[0], orjson.loads(value)) for _key, value, _partition in records]
        self.sent += batch
        return len(batch)

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        self.send_many(topic, [(key, value, partition)])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("tick_s", [0.5, 0.05])
def test_live_feed_sends_each_event_within_a_tick_of_its_timestamp(tick_s: float) -> None:
    now = [T0 / 1000]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    producer = RecordingProducer(now)
    plan = FeedPlan(T0, 1.0, 3.0)
    run_feed(load_settings(), "server", producer, plan, clock=lambda: now[0], sleep=sleep,
             tick_s=tick_s)  # fmt: skip
    sent = [(at, e) for at, e in producer.sent if "server_id" in e]  # events, not labels
    stamped = [datetime.fromisoformat(str(e["timestamp"])).timestamp() for _at, e in sent]
    lags = [at - stamp for (at, _e), stamp in zip(sent, stamped, strict=True)]
    assert min(lags) > 0
    assert max(lags) <= tick_s + 1e-6, "an event waited longer than a tick"
    # cut into ticks, the feed sends exactly what one generation of the same span gives
    events = [e for _at, e in sent]
    last_ms = round(max(stamped) * 1000)
    whole = make_generator("server", load_settings()).generate(T0, last_ms + 1).events
    assert sorted(orjson.dumps(e) for e in events) == sorted(orjson.dumps(e) for e in whole)


def test_a_stopped_live_feed_ends_after_the_batch_in_flight() -> None:
    now = [T0 / 1000]
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= T0 / 1000 + 1.0:
            stop.set()

    producer = RecordingProducer(now)
    run_feed(load_settings(), "server", producer, FeedPlan(T0, 1.0, 60.0),
             clock=lambda: now[0], sleep=sleep, stop=stop)  # fmt: skip
    stamped = [datetime.fromisoformat(str(e["timestamp"])).timestamp()
               for _at, e in producer.sent if "server_id" in e]  # fmt: skip
    assert stamped
    assert max(stamped) < T0 / 1000 + 1.5  # not the plan's 60 s


def test_the_summary_counts_rows_events_span_and_skips_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes(BAD_BYTES)
    check = check_replay(path, ReplayOptions(on_error="skip"))
    assert (check.rows, check.events, check.skipped) == (4, 2, 2)
    lines = summary(check, sent=2, seconds=2.0)
    assert lines[0] == "read 4 rows, sent 2 events in 2.0 s (1 events/s)"
    assert lines[1] == "time span 2026-01-01T00:00:00.000Z → 2026-01-01T00:00:03.000Z"
    assert lines[2] == (
        "skipped 2 malformed rows; 1 × column 'v' has a byte 0xff that is not utf-8; "
        "1 × bad timestamp in 'timestamp'"
    )


def test_streaming_sorts_within_its_window_and_keeps_ties_in_file_order(tmp_path: Path) -> None:
    # the values name the rows: a=1, b=2, ... in file order
    path = _csv(tmp_path, "t,v\n3,1\n1,2\n2,3\n1,4\n9,5\n5,6\n")
    options = ReplayOptions(time_unit="s")
    assert [orjson.loads(e)["value"] for _, _, e in stream_replay(path, options)] == [
        2, 4, 3, 1, 6, 5,
    ]  # fmt: skip
    # a window of one event cannot wait for the second 1: it comes after the 2, late
    assert [orjson.loads(e)["value"] for _, _, e in stream_replay(path, options, reorder=1)] == [
        2, 3, 4, 1, 6, 5,
    ]  # fmt: skip


def test_streaming_holds_a_bounded_number_of_rows(tmp_path: Path) -> None:
    rows = 200_000
    path = tmp_path / "big.csv"
    path.write_text("t,v\n" + "".join(f"{T0 // 1000 + i},{i % 97}.5\n" for i in range(rows)))
    tracemalloc.start()
    try:
        sent = sum(1 for _ in stream_replay(path, ReplayOptions(), reorder=1000))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent == rows
    whole = plan_replay(path, ReplayOptions())
    assert len(whole.events) == rows
    assert peak < 20 * 2**20  # the file's 200,000 events as dicts would take ~100 MB


def test_map_and_set_name_the_fields_and_may_be_repeated(tmp_path: Path) -> None:
    path = _csv(tmp_path, "when,box,temp,fan\n2026-01-01T00:00:00Z,b-1,20.5,3\n")
    options = replay_options("metric", ["when=timestamp", "box=entity"], ["metric=boiler_temp"],
                             value_column="temp")  # fmt: skip
    plan = plan_replay(path, options)
    assert [(e["entity"], e["metric"], e["value"]) for _, _, e in plan.events] == [
        ("b-1", "boiler_temp", 20.5)
    ]
    assert plan.events[0][2]["event_id"] == f"metric:b-1:boiler_temp:{T0}"


@pytest.mark.parametrize(
    ("mapping", "constants", "message"),
    [
        ("when=time", None, "--map: field 'time' \\(from column 'when'\\) is not one of"),
        ("when", None, "--map: 'when' is not name=value"),
        (None, "colour=red", "--set: field 'colour' is not one of entity, metric"),
        ("box=entity", "entity=x", "entity is both mapped"),
    ],
)
def test_a_bad_map_or_set_is_one_line_naming_the_field(
    mapping: str | None, constants: str | None, message: str
) -> None:
    with pytest.raises(OptionError, match=message):
        replay_options("metric", mapping, constants)


def test_one_metric_name_for_several_columns_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, "t,a,b\n2026-01-01T00:00:00Z,1,2\n")
    with pytest.raises(ReplayError, match="line 1: one metric name for 2 value columns"):
        plan_replay(path, replay_options("metric", None, "metric=m"))


def test_a_file_older_than_a_live_watermark_is_announced_with_the_backtest_to_run() -> None:
    check = ReplayCheck(good_rows=2, events=2, first_ms=T0, last_ms=T0 + 60_000)
    mark = datetime.fromtimestamp((T0 + 30_000) / 1000, tz=UTC)
    warning = late_warning(check, {"cpu_anomalies": mark, "server_status": mark}, "HINT")
    assert warning == (
        "the file starts at 2026-01-01T00:00:00.000Z, behind the live watermark of "
        "cpu_anomalies (2026-01-01T00:00:30.000Z), server_status (2026-01-01T00:00:30.000Z): "
        "its events before those are late for those queries and go to the dead-letter topic "
        "(reason late), not to their windows. To score history, run: HINT"
    )
    later = datetime.fromtimestamp((T0 + 90_000) / 1000, tz=UTC)
    assert "all of its events are late" in (late_warning(check, {"q": later}, "H") or "")
    earlier = datetime.fromtimestamp((T0 - 1) / 1000, tz=UTC)
    assert late_warning(check, {"q": earlier}, "H") is None
    assert late_warning(check, {}, "H") is None
