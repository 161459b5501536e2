"""The end-to-end tests share one demo run on the session's stack."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from generators.anomalies import schedule_episodes
from generators.server import KINDS, SLOT_MS, SOURCE, inventory
from lambdawatch.core.settings import Settings
from lambdawatch.ops.demo import report_rows, run_demo
from lambdawatch.ops.stack.local import LocalStack

DEMO_MINUTES = 4.0  # the forecast (started with the feed) is ready after about two
# The feed is not extended for the models to judge (bench/demo measures that, on a fresh
# stack): these tests judge each detector only from when it was ready.
FEED_EXTENSION_CAP = timedelta(0)
# Generator slots are 20 minutes per entity on the wall clock and a detector can judge only
# what happens once it is ready (baselines, model, forecast), so whether a four-minute feed
# holds an episode to judge depends on when it runs. Every slot holds an episode, and the seed
# is chosen (below) so that some fall where the demo can judge them. Detection quality proper
# is bench/detection_quality.
ANOMALY_RATE = 1.0
JUDGED_OUTAGES = 2  # outages wholly inside the feed, ended before the stream's horizon
FED_CPU_EPISODES = 2  # CPU episodes inside the feed, for the backtest of the feed's span
HORIZON_MARGIN = timedelta(minutes=1.5)  # the demo judges up to a minute before the feed ends
START_MARGIN = timedelta(seconds=30)  # silence needs a server's earlier events


def seed_with_episodes_to_judge(settings: Settings, feed_start: datetime) -> int:
    """The first seed, from the configured one, whose server schedule puts ``JUDGED_OUTAGES``
    outages and ``FED_CPU_EPISODES`` CPU episodes where a demo starting at ``feed_start`` can
    judge them. Only where the generators put anomalies is chosen; detectors never see labels.
    """
    fleet = inventory(settings.generators.servers, settings.generators.seed)
    ids = [server.server_id for server in fleet]
    start = feed_start + START_MARGIN
    end = feed_start + timedelta(minutes=DEMO_MINUTES) - HORIZON_MARGIN
    start_ms, end_ms = (int(moment.timestamp() * 1000) for moment in (start, end))
    for seed in range(settings.generators.seed, settings.generators.seed + 10_000):
        episodes = schedule_episodes(
            SOURCE, ids, KINDS, start_ms, end_ms, SLOT_MS, ANOMALY_RATE, seed
        )
        inside = [e for e in episodes if start_ms <= e.start_ms and e.end_ms <= end_ms]
        outages = sum(e.kind == "outage" for e in inside)
        cpu = sum(e.kind in {"cpu_spike", "stuck_at_100"} for e in inside)
        if outages >= JUDGED_OUTAGES and cpu >= FED_CPU_EPISODES:
            return seed
    raise AssertionError(f"no seed puts episodes inside the demo's feed from {feed_start}")


@pytest.fixture(scope="session")
def demo_report(
    airflow_stack: LocalStack,
    superset_stack: LocalStack,
    settings: Settings,
    pytestconfig: pytest.Config,
) -> Any:
    """``lambdawatch demo`` minus ``up``: the speed layer joins the session's stack first.

    Its progress and report go to the terminal as they come, not captured: the demo is the
    suite's longest step, and its timings are what to read when the suite gets slower.
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def show(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    # The speed layer starts at the topics' ends, as on a fresh stack: what the earlier tests
    # left in them is not the demo's, and its first micro-batches drained it for minutes. The
    # setting counts because its queries have no checkpoint yet on this stack (every earlier
    # test runs the speed layer on checkpoints of its own).
    from_the_end = LocalStack(
        settings.model_copy(update={"speed_layer_starting_offsets": "latest"}),
        airflow_stack.secrets,
    )
    started = time.monotonic()
    # each change of what its start waits on (which query): what to read when it gets slower
    from_the_end.up(
        ["speed-layer"],
        on_event=lambda _message: None,
        on_waiting=lambda _name, reason: show(
            f"[demo] {time.monotonic() - started:4.0f} s: {reason}"
        ),
    )
    show(f"[demo] speed layer healthy in {time.monotonic() - started:.0f} s")
    seed = seed_with_episodes_to_judge(settings, datetime.now(UTC))
    demo_settings = settings.model_copy(
        update={"generators": settings.generators.model_copy(update={"seed": seed})}
    )
    started = time.monotonic()
    report = run_demo(
        demo_settings,
        airflow_stack.secrets,
        minutes=DEMO_MINUTES,
        anomaly_rate=ANOMALY_RATE,
        history_hours=72,
        history_ips=2,
        say=lambda message: show(f"[demo {time.monotonic() - started:4.0f} s] {message}"),
        dag_timeout=900,
        feed_extension_cap=FEED_EXTENSION_CAP,
    )
    show(f"[demo {time.monotonic() - started:4.0f} s] done; generator seed {seed}")
    show("\n".join(f"  {what}: {value}" for what, value in report_rows(report)))
    return report
