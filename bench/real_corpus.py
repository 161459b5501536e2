"""Detection on real labelled series: the 18 development files of the NAB corpus, through the stack.

Each file is replayed with ``lambdawatch replay`` into the ``metrics`` topic of an isolated
stack; the speed layer's ``metric_scores`` query drains the topic (available-now trigger, cold
then warm, fresh checkpoints) next to a pass-through query on the same topic; the scores are
read back from the ``metric-scores`` topic, written in the corpus's results layout and judged
by the corpus's own scorer (``score.py``: normalised score per profile, threshold chosen per
profile). The same files are also scored by the direct path (``lambdawatch.pipelines.backtest``)
and the two must agree.

Leave-one-folder-out: for each of the corpus's three folders, the parameter set that scores
best on the other two (direct path, small grid) is used for that folder's files; the assembled
results are scored like the in-sample ones. The detector never reads the labels; this file
reads them only for the informational ``label`` column of the results layout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from bench.common import ROOT, running_stack, start_passthrough, write_result
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.pipelines.backtest import BacktestOptions, metric_samples
from spark_apps.detectors.metric_model import ScoringParams, SeriesState, score_samples

CORPUS = Path(os.environ.get("LAMBDAWATCH_REAL_CORPUS", ROOT.parent / "shared" / "realdata"))
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
REFERENCE = {  # the corpus README's table, measured with its scorer on these 18 files
    "ARTime": (67.1, 58.1, 72.7),
    "Numenta HTM": (61.3, 54.3, 66.2),
    "earthgecko Skyline": (34.7, 29.0, 37.8),
    "rolling z-score, trailing 1,000 rows": (11.9, 3.8, 16.4),
    "windowed Gaussian": (12.1, 4.8, 16.0),
}
GRID = {"average": (10, 20), "history": (1000, 2016), "rest": (75, 150)}
console = Console()


def corpus_files() -> list[str]:
    return sorted(json.loads((CORPUS / "labels.json").read_text()))


def write_results(detector: str, scores: dict[str, np.ndarray], out: Path) -> None:
    """``out/<detector>/<category>/<detector>_<file>.csv``, one row per data row, in order."""
    windows = json.loads((CORPUS / "labels.json").read_text())
    for rel, score in scores.items():
        category, name = rel.split("/")
        data = pd.read_csv(CORPUS / "data" / rel)
        stamps = pd.to_datetime(data["timestamp"])
        label = np.zeros(len(data), dtype=int)
        for start, end in windows[rel]:
            label[(stamps >= start) & (stamps <= end)] = 1
        folder = out / detector / category
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {"timestamp": data["timestamp"], "value": data["value"], "anomaly_score": score,
             "label": label}
        ).to_csv(folder / f"{detector}_{name}", index=False)  # fmt: skip


def judge(detector: str, results: Path, corpus: Path = CORPUS) -> dict[str, Any]:
    """The corpus's scorer on ``results/<detector>``: per profile, normalised score and
    threshold."""
    summary = results / f"{detector}-summary.json"
    subprocess.run(
        [sys.executable, str(CORPUS / "score.py"), detector, "--results-dir", str(results),
         "--data-dir", str(corpus / "data"), "--labels", str(corpus / "labels.json"),
         "--out-dir", str(results / "scores"), "--summary", str(summary)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    found = json.loads(summary.read_text())[detector]
    return {
        p: {k: found[p][k] for k in ("normalized", "threshold", "TP", "FP", "FN")} for p in PROFILES
    }


def direct_scores(params: ScoringParams, files: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """Every file scored by the model directly (the backtest's path); samples/s."""
    scores, samples, seconds = {}, 0, 0.0
    for rel in files:
        frame = metric_samples(CORPUS / "data" / rel, BacktestOptions())
        stamps = frame["timestamp"].astype("int64").to_numpy() / 1e9
        began = time.perf_counter()
        result, _state = score_samples(SeriesState(params), stamps, frame["value"].to_numpy())
        seconds += time.perf_counter() - began
        samples += len(frame)
        scores[rel] = result.score
    return scores, samples / seconds


def subset_corpus(folders: list[str], into: Path) -> Path:
    """A copy of the corpus with only ``folders`` (the scorer walks real directories)."""
    if not into.exists():
        for folder in folders:
            shutil.copytree(CORPUS / "data" / folder, into / "data" / folder)
        labels = json.loads((CORPUS / "labels.json").read_text())
        (into / "labels.json").write_text(
            json.dumps({k: v for k, v in labels.items() if k.split("/")[0] in folders})
        )
    return into


def leave_one_folder_out(base: ScoringParams, scratch: Path) -> dict[str, Any]:
    files = corpus_files()
    folders = sorted({rel.split("/")[0] for rel in files})
    candidates = [
        replace(base, **dict(zip(GRID, values, strict=True)))
        for values in itertools.product(*GRID.values())
    ]
    all_scores = []
    for index, params in enumerate(candidates):
        scores, _rate = direct_scores(params, files)
        all_scores.append(scores)
        write_results(f"grid{index}", scores, scratch / "grid")
    chosen: dict[str, dict[str, int]] = {}
    held_out: dict[str, np.ndarray] = {}
    for held in folders:
        train = [f for f in folders if f != held]
        corpus = subset_corpus(train, scratch / f"without-{held}")
        best, best_total = 0, -1e9
        for index in range(len(candidates)):
            results = scratch / f"without-{held}-results"
            source = scratch / "grid" / f"grid{index}"
            for folder in train:
                shutil.copytree(source / folder, results / f"grid{index}" / folder,
                                dirs_exist_ok=True)  # fmt: skip
            total = sum(r["normalized"] for r in judge(f"grid{index}", results, corpus).values())
            if total > best_total:
                best, best_total = index, total
        chosen[held] = {k: getattr(candidates[best], k) for k in GRID}
        held_out.update({rel: s for rel, s in all_scores[best].items() if rel.startswith(held)})
        console.print(f"  held out {held}: chose {chosen[held]}")
    write_results("heldout", held_out, scratch / "lofo")
    return {"grid": GRID, "chosen_per_held_out_folder": chosen,
            "scores": judge("heldout", scratch / "lofo")}  # fmt: skip


def replay_corpus(settings: Settings, files: list[str]) -> int:
    """``lambdawatch replay`` of every file into the metrics topic, as a user would."""
    sent = 0
    cli = str(Path(sys.executable).with_name("lambdawatch"))
    for rel in files:
        subprocess.run(
            [cli, "replay", str(CORPUS / "data" / rel),
             "--max-rate", "--client", "confluent"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        sent += len(pd.read_csv(CORPUS / "data" / rel))
    return sent


def read_scores(settings: Settings) -> dict[tuple[str, str], float]:
    """(entity, timestamp) → score from the metric-scores topic (later drains repeat them)."""
    topic = settings.topic("metric_scores").name
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        found: dict[tuple[str, str], float] = {}
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    body = json.loads(record.value)
                    key = (body["entity"], body["timestamp"][:19].replace("T", " "))
                    if found.setdefault(key, body["score"]) != body["score"]:
                        raise RuntimeError(f"two drains scored {key} differently")
        return found
    finally:
        consumer.close()


def drain(start: Any) -> float:
    began = time.perf_counter()
    query = start()
    query.awaitTermination()
    if query.exception():
        raise RuntimeError(str(query.exception()))
    return time.perf_counter() - began


def through_the_stack(files: list[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from spark_apps.speed_layer import SpeedLayer, speed_layer_session

    with running_stack(["postgres", "kafka"]) as (settings, stack):
        admin = admin_client(settings.kafka_bootstrap)
        ensure_topics(admin, settings.topics)
        admin.close()
        samples = replay_corpus(settings, files)
        spark = speed_layer_session(settings, "bench-real-corpus")
        spark.sparkContext.setLogLevel("ERROR")
        scratch = Path(tempfile.mkdtemp(prefix="bench-real-"))
        layers: list[SpeedLayer] = []

        def ours(checkpoint: str) -> Any:
            layer = SpeedLayer(spark, settings, stack.secrets, scratch / checkpoint,
                               trigger={"availableNow": True})  # fmt: skip
            layers.append(layer)
            return layer.start(("metric_scores",))[0]

        def passthrough(checkpoint: str) -> Any:
            return start_passthrough(spark, settings, str(scratch / checkpoint), "earliest",
                                     {"availableNow": True}, role="metrics")  # fmt: skip

        runs: dict[str, dict[str, Any]] = {}
        for name, state, start in [
            ("passthrough_reference", "cold", lambda: passthrough("pass-cold")),
            ("passthrough_reference", "warm", lambda: passthrough("pass-warm")),
            ("metric_scores", "cold", lambda: ours("scores-cold")),
            ("metric_scores", "warm", lambda: ours("scores-warm")),
        ]:
            seconds = drain(start)
            runs.setdefault(name, {})[state] = {
                "seconds": round(seconds, 2), "samples_per_s": round(samples / seconds),
            }  # fmt: skip
            console.print(f"  {name} ({state}): {runs[name][state]}")
        found = read_scores(settings)
        spark.stop()
        for layer in layers:
            layer.close()
    scores = {}
    for rel in files:
        data = pd.read_csv(CORPUS / "data" / rel)
        entity = Path(rel).stem
        scores[rel] = np.array([found[(entity, stamp[:19])] for stamp in data["timestamp"]])
    return scores, {"samples": samples, "queries": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-lofo", action="store_true", help="no leave-one-folder-out")
    args = parser.parse_args()
    if not (CORPUS / "score.py").exists():
        raise SystemExit(f"error: no corpus at {CORPUS} (set LAMBDAWATCH_REAL_CORPUS)")
    files = corpus_files()
    params = ScoringParams.from_config(load_settings().models.metric_scores)
    scratch = Path(tempfile.mkdtemp(prefix="bench-real-results-"))
    console.print(f"{len(files)} files; through the stack (replay → metrics → metric_scores)…")
    live, stack_runs = through_the_stack(files)
    direct, direct_rate = direct_scores(params, files)
    mismatched = [rel for rel in files if not np.array_equal(live[rel], direct[rel])]
    write_results("lambdawatch", live, scratch)
    in_sample = judge("lambdawatch", scratch)
    console.print(
        f"  through the stack: { {p: round(r['normalized'], 2) for p, r in in_sample.items()} }"
    )
    lofo = None if args.skip_lofo else leave_one_folder_out(params, scratch)
    runs = stack_runs["queries"]
    ratio = (
        runs["metric_scores"]["warm"]["samples_per_s"]
        / runs["passthrough_reference"]["warm"]["samples_per_s"]
    )
    ours = tuple(in_sample[p]["normalized"] for p in PROFILES)
    result = {
        "corpus": "NAB development part (18 files, 25 labelled windows)",
        "parameters": params.__dict__ | {"version": params.version},
        "through_the_stack": in_sample,
        "direct_path": {
            "identical_to_stack": not mismatched,
            "mismatched_files": mismatched,
            "samples_per_s": round(direct_rate),
        },
        "leave_one_folder_out": lofo,
        "throughput": stack_runs | {"warm_ratio_to_passthrough": round(ratio, 3)},
        "reference": {
            name: dict(zip(PROFILES, row, strict=True)) for name, row in REFERENCE.items()
        },
        "goals": {
            "above_artime_every_profile": all(
                o > r for o, r in zip(ours, REFERENCE["ARTime"], strict=True)
            ),
            "lofo_within_10_points": lofo is not None
            and all(
                abs(lofo["scores"][p]["normalized"] - in_sample[p]["normalized"]) <= 10
                for p in PROFILES
            ),
            "warm_ratio_at_least_0_5": ratio >= 0.5,
        },
    }
    path = write_result("real_corpus", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
