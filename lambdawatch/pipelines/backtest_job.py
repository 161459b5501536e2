"""backtest, as a Spark application (``spark-submit``; the ``backtest`` DAG submits it): a
detector over archived history, recorded in ``backtest_runs`` under the given run id and
judged against the ``ground_truth`` episodes of the span, where there are any.

The last stdout line is the run's JSON summary (the submitting task's XCom).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from lambdawatch.core.settings import load_settings
from lambdawatch.pipelines.backtest import (
    DETECTORS,
    BacktestRun,
    archive_history,
    archived_backtest,
    history_span,
    labelled,
    options_from_cli,
    record_backtest,
    run_parameters,
)
from spark_apps.jobs.common import print_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detector", choices=DETECTORS, required=True)
    parser.add_argument("--from", dest="start", required=True, help="ISO-8601 or epoch")
    parser.add_argument("--to", dest="end", required=True, help="ISO-8601 or epoch (exclusive)")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--source", default=None, help="silence: server | ip | cdn")
    parser.add_argument("--normal-mean", type=float, default=None)
    parser.add_argument("--normal-stddev", type=float, default=None)
    args = parser.parse_args(argv)

    from spark_apps.session import build_session  # noqa: PLC0415 - after the arguments

    settings = load_settings()
    options = options_from_cli(args.detector, None, None, None, None, args.normal_mean,
                               args.normal_stddev, args.source)  # fmt: skip
    start, end = history_span(args.start, args.end)
    spark = build_session("lambdawatch-backtest", settings, with_kafka=False)  # the submit's
    try:
        began = datetime.now(UTC)
        with archived_backtest(options, settings, start, end) as verdicts:
            history = archive_history(options, start, end)
            run = BacktestRun(args.run_id, args.detector, history,
                              run_parameters(options, settings), began)  # fmt: skip
            judgement = labelled(verdicts, options, settings, span=(start, end))
            findings = record_backtest(settings, run, verdicts, judgement)
    finally:
        spark.stop()
    summary = {
        "run_id": run.run_id,
        "judged": verdicts.judged,
        "recorded": findings,
        "warn": verdicts.warn,
        "error": verdicts.error,
        "judged_against": judgement.row() if judgement else None,
    }
    print_summary(summary)


if __name__ == "__main__":
    main()
