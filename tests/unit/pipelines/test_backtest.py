"""``lambdawatch backtest``: a detector run over a file directly, with one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from generators.replay import ReplayOptions, plan_replay
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.ops.cli import app
from lambdawatch.pipelines.backtest import (
    BacktestError,
    BacktestOptions,
    Judges,
    backtest,
    event_frame,
    options_from_cli,
    spark_verdicts,
)
from lambdawatch.pipelines.backtest_verdicts import (
    OUTPUT_COLUMNS,
    RESULT_COLUMNS,
    verdicts_of,
    write_output,
)
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, score_samples

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _csv(path: Path, rows: int = 900, spike_at: int = 700) -> Path:
    values = 20 + np.random.default_rng(1).normal(0, 1, rows)
    values[spike_at] += 25
    frame = pd.DataFrame(
        {
            "when": [(T0 + timedelta(minutes=5 * i)).isoformat() for i in range(rows)],
            "reading": values,
            "box": ["a" if i % 2 else "b" for i in range(rows)],
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_every_sample_is_scored_exactly_as_the_model_scores_it(tmp_path: Path) -> None:
    path = _csv(tmp_path / "boiler.csv")
    options = options_from_cli("metric_scores", "when=timestamp", "metric=temp", None, "reading")
    scores = backtest(path, options, load_settings())
    assert list(scores.columns) == list(RESULT_COLUMNS)
    assert len(scores) == 900
    assert set(scores["entity"]) == {"boiler"}  # the file name, as replay names it
    assert set(scores["metric"]) == {"temp"}
    assert (scores["window_start"] == scores["window_end"]).all()
    source = pd.read_csv(path, float_precision="round_trip")
    stamps = pd.to_datetime(source["when"]).astype("int64").to_numpy() / 1e9
    model, _ = score_samples(
        SeriesState(ScoringParams.from_config()), stamps, source["reading"].to_numpy()
    )
    np.testing.assert_array_equal(scores["score"].to_numpy(), model.score)
    assert scores.loc[700, "severity"] != "SAFE"
    assert set(scores["severity"]) <= {"SAFE", "WARN", "ERROR"}


def test_an_entity_column_makes_one_series_per_entity(tmp_path: Path) -> None:
    path = _csv(tmp_path / "boilers.csv")
    options = options_from_cli("metric_scores", "box=entity,when=timestamp,reading=value", None,
                               None, None)  # fmt: skip
    scores = backtest(path, options, load_settings())
    assert scores.groupby("entity").size().to_dict() == {"a": 450, "b": 450}
    assert set(scores["metric"]) == {"reading"}


def test_the_output_file_has_the_backtest_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "boiler.csv", rows=50, spike_at=10)
    scores = backtest(path, BacktestOptions(replay=ReplayOptions(value_column="reading")),
                      load_settings())  # fmt: skip
    write_output(verdicts_of(scores), tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv", float_precision="round_trip")
    assert list(written.columns) == list(OUTPUT_COLUMNS)
    assert written.loc[0, "window_start"] == "2026-03-02T00:00:00.000Z"
    np.testing.assert_array_equal(written["score"], scores["score"])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("nope", None, None, None, None), "'nope'"),
        (("metric_scores", "reading=colour", None, None, None), "'colour'"),
        (("metric_scores", "reading", None, None, None), "'reading'"),
        (("metric_scores", None, "value=3", None, None), "'value'"),
        (("metric_scores", "box=entity", "entity=x", None, None), "entity"),
    ],
)
def test_a_bad_option_names_its_field(args: tuple, field: str) -> None:
    with pytest.raises(BacktestError, match=field):
        options_from_cli(*args)


def test_the_cli_says_a_bad_row_in_one_line_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,value\n2026-03-02T00:00:00Z,1\n2026-03-02T00:05:00Z,lots\n")
    result = CliRunner().invoke(app, ["backtest", str(path)])
    assert result.exit_code == 1
    assert "line 3" in result.output
    assert "'value' is not a number" in result.output
    assert "Traceback" not in result.output


def test_the_cli_writes_the_output(tmp_path: Path) -> None:
    path = _csv(tmp_path / "boiler.csv", rows=400, spike_at=350)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app, ["backtest", str(path), "--time-column", "when", "--value-column", "reading",
              "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 400
    assert "boiler" in result.output


def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    path = _csv(tmp_path / "boiler.csv", rows=50, spike_at=10)
    out = tmp_path / "missing" / "scores.csv"
    result = CliRunner().invoke(
        app, ["backtest", str(path), "--value-column", "reading", "--output", str(out)]
    )
    assert result.exit_code == 1
    assert f"--output {out}" in result.output
    assert "Traceback" not in result.output


# A two-column per-millisecond CPU file and, by hand, its 500 ms windows against mean 50, σ 5
# (config.json: WARN beyond 1 σ, ERROR beyond 2 σ, both sides).
CPU_FILE = """time_ms,cpu
1767225600000,50
1767225600100,52
1767225600499,48
1767225600500,58
1767225600900,62
1767225600900,62
1767225601000,80
1767225601499,70
1767225601700,44
1767225602600,49
"""
CPU_REFERENCE = [  # window start (ms after the first), mean, z, severity
    (0, 50.0, 0.0, "SAFE"),  # 50, 52, 48
    (500, 60.0, 2.0, "WARN"),  # 58, 62 (the re-sent 62 counts once): exactly 2 σ is not beyond
    (1000, 75.0, 5.0, "ERROR"),  # 80, 70
    (1500, 44.0, 1.2, "WARN"),  # below the mean counts too
    (2500, 49.0, 0.2, "SAFE"),  # and no row for the empty window between
]


# the sigmas the hand-computed references were worked out with (a given normal is judged as
# the fallback is)
REFERENCE_SIGMAS = {
    "MODELS__CPU_ANOMALY__FALLBACK_WARN_SIGMA": "1.0",
    "MODELS__CPU_ANOMALY__FALLBACK_ERROR_SIGMA": "2.0",
}


def reference_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in REFERENCE_SIGMAS.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_cpu_windows_of_a_two_column_file_match_the_hand_computed_reference(
    tmp_path: Path, spark: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cpu.csv"
    path.write_text(CPU_FILE)
    options = options_from_cli("cpu_anomalies", None, None, None, "cpu", 50.0, 5.0)
    windows = backtest(path, options, reference_settings(monkeypatch))
    assert list(windows.columns) == list(RESULT_COLUMNS)
    first = pd.Timestamp(1767225600000, unit="ms", tz="UTC")
    millis = pd.Timedelta(milliseconds=1)
    found = [
        (int((row.window_start - first) / millis), round(row.value, 9), round(row.score, 9),
         row.severity)
        for row in windows.itertuples()
    ]  # fmt: skip
    assert found == CPU_REFERENCE
    assert ((windows["window_end"] - windows["window_start"]) == 500 * millis).all()
    assert set(windows["detector"]) == {"cpu_anomalies"}
    assert set(windows["entity"]) == {"cpu"}  # the file's name
    assert set(windows["metric"]) == {"cpu_usage"}
    assert set(windows["expected"]) == {50.0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cpu_anomalies", None, None, None, "cpu", 50.0, None), "go together"),
        (("cpu_anomalies", None, None, None, "cpu", 50.0, 0.0), "--normal-stddev: 0.0"),
        (("metric_scores", None, None, None, "v", 50.0, 5.0), "metric_scores has no baseline"),
        (("cpu_anomalies", "x=colour", None, None, None), "'colour'"),
    ],
)
def test_a_bad_baseline_option_is_one_line(args: tuple, message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        options_from_cli(*args)


def test_silence_finds_each_gap_of_a_file_up_to_the_stream_s_watermark(tmp_path: Path) -> None:
    # a server reporting every 250 ms (config.json's cadence), silent from 2.0 s to 4.0 s, then
    # reporting to 40 s: the watermark (30 s behind) has passed that gap's deadline
    stamps = [*range(0, 2001, 250), *range(4000, 40001, 250)]
    path = tmp_path / "box.csv"
    path.write_text("t_ms,cpu_usage\n" + "".join(f"{1767225600000 + t},5\n" for t in stamps))
    gaps = backtest(path, options_from_cli("silence", None, None, None, None), load_settings())
    first = pd.Timestamp(1767225600000, unit="ms", tz="UTC")
    assert gaps[["entity", "metric", "value", "score", "severity"]].values.tolist() == [
        ["box", "server:reports_missing", 8.0, 8 / 3, "ERROR"]  # 2 s of 250 ms ticks missed
    ]
    assert gaps.loc[0, "window_start"] == first + pd.Timedelta(milliseconds=2250)
    assert gaps.loc[0, "window_end"] == first + pd.Timedelta(milliseconds=4000)


IP_FILE = (
    "timestamp,src_ip,unq_dst_ip,allow,drop,frequency,pkts_sent,pkts_received,bytesin,bytesout,"
    "unq_dst_port\n"
    "2026-01-01T10:05:00Z,198.18.0.9,1,1,0,1,1,1,105,1,1\n"
    "2026-01-01T10:06:00Z,198.18.0.9,1,1,0,1,1,1,120,1,1\n"
    "2026-01-01T10:07:00Z,198.18.0.9,1,1,0,1,1,1,150,1,1\n"
    "2026-01-01T10:08:00Z,198.18.0.9,1,1,0,1,1,1,80,1,1\n"
)


def test_forecast_deviations_judges_each_sample_by_its_hour_s_forecast(
    tmp_path: Path, spark: SparkSession
) -> None:
    """Interval 90–110 around 100 (half-width 10): SAFE inside, WARN outside, ERROR beyond
    2 half-widths above (config.json's direction); far below stays WARN."""
    path = tmp_path / "fw.csv"
    path.write_text(IP_FILE)
    options = options_from_cli("forecast_deviations", None, None, None, None)
    hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
    judges = Judges(forecasts=[("198.18.0.9", "bytesin", hour, 100.0, 90.0, 110.0, "run-7")])
    events = [e for _ms, _key, e in plan_replay(path, options.replay).events]
    judged = spark_verdicts(spark, event_frame(spark, events, "ip"), options, load_settings(),
                            judges).orderBy("window_start").collect()  # fmt: skip
    assert [(r["metric"], r["value"], r["score"], r["severity"]) for r in judged] == [
        ("bytesin", 105.0, 0.5, "SAFE"),
        ("bytesin", 120.0, 2.0, "WARN"),  # exactly 2 half-widths is not beyond
        ("bytesin", 150.0, 5.0, "ERROR"),
        ("bytesin", 80.0, 2.0, "WARN"),
    ]  # the features without a forecast are not judged
    assert {r["model_version"] for r in judged} == {"run-7"}


def test_cdn_clusters_judges_every_event_by_the_model_s_threshold(
    tmp_path: Path, spark: SparkSession
) -> None:
    from pyspark.ml import Pipeline

    from lambdawatch.core.model_registry import RegisteredModel
    from spark_apps.detectors.cdn_kmeans import assign_clusters, kmeans_pipeline

    rng = np.random.default_rng(3)
    header = "timestamp,edge_id,requests,bytes_sent,cache_hit_ratio,latency_p50_ms,"
    header += "latency_p95_ms,status_4xx,status_5xx,origin_errors\n"
    rows = []
    for i in range(60):
        latency = 40 + rng.normal(0, 2) + (400 if i == 50 else 0)  # one far off
        rows.append(f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z,edge-{i % 3},100,5000,0.9,"
                    f"{latency / 2:.3f},{latency:.3f},1,0,0\n")  # fmt: skip
    path = tmp_path / "cdn.csv"
    path.write_text(header + "".join(rows))
    settings = load_settings()
    options = options_from_cli("cdn_clusters", None, None, None, None)
    events = event_frame(
        spark, [e for _ms, _k, e in plan_replay(path, options.replay).events], "cdn"
    )
    config = settings.models.kmeans
    pipeline: Pipeline = kmeans_pipeline(config.features, 2, 20, 1)
    model = pipeline.fit(events.where("latency_p95_ms < 200"))  # trained on ordinary history
    distances = sorted(r["distance"] for r in assign_clusters(model, events).collect())
    threshold = distances[-3]  # two events beyond it
    judges = Judges(cdn_model=(RegisteredModel("cdn_kmeans", "v9", "/nowhere", threshold), model))
    judged = spark_verdicts(spark, events, options, settings, judges).toPandas()
    assert len(judged) == 60  # one row per event
    assert set(judged["model_version"]) == {"v9"}
    beyond = judged["value"] > threshold
    assert (judged.loc[~beyond, "severity"] == "SAFE").all()
    assert beyond.sum() == 2
    ratio = judged["value"] / threshold
    errors = beyond & (ratio > config.error_threshold_factor)
    assert errors.sum() == 1  # the far-off event
    assert (judged.loc[errors, "severity"] == "ERROR").all()
    assert (judged.loc[beyond & ~errors, "severity"] == "WARN").all()


def test_a_detector_that_judges_by_the_database_says_so_when_it_is_not_reachable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fw.csv"
    path.write_text(IP_FILE)
    unreachable = load_settings().model_copy(update={"postgres_host": "127.0.0.1",
                                                     "postgres_port": 9})  # fmt: skip
    options = options_from_cli("forecast_deviations", None, None, None, None)
    with pytest.raises(BacktestError, match="judges by the forecasts in ip_forecasts; PostgreSQL"):
        backtest(path, options, unreachable)
    with pytest.raises(
        BacktestError, match="--source: silence reads server, ip, cdn, not 'metric'"
    ):
        options_from_cli("silence", None, None, None, None, source="metric")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a FILE, or --from and --to for archived history"),
        (["--from", "2026-01-01"], "give a FILE, or --from and --to"),
        (["--from", "yesterday", "--to", "2026-01-01"], "--from: Invalid isoformat string"),
        (["--from", "2026-01-02", "--to", "2026-01-01"], "--from 2026-01-02T00:00:00+00:00 is "
                                                         "not before --to"),
    ],
)  # fmt: skip
def test_a_bad_history_span_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["backtest", "--detector", "cpu_anomalies", *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_history_not_archived_yet_is_one_line(tmp_path: Path, spark: SparkSession) -> None:
    from lambdawatch.pipelines.backtest import archived_backtest

    settings = load_settings(history_dir=tmp_path)
    options = options_from_cli("silence", None, None, None, None, source="cdn")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    archived = archived_backtest(options, settings, start, start + timedelta(hours=1))
    with pytest.raises(BacktestError, match=r"no cdn events archived under .*archive_raw_events"):
        archived.__enter__()


def test_replay_names_the_backtest_of_the_source_s_detector() -> None:
    from lambdawatch.ops.cli import _backtest_hint

    assert _backtest_hint(Path("box.csv"), "server") == (
        "lambdawatch backtest box.csv --detector cpu_anomalies"
    )
    assert _backtest_hint(Path("m.csv"), "metric").endswith("--detector metric_scores")
    assert _backtest_hint(Path("w.csv"), "weather") == "lambdawatch backtest w.csv"
