"""The demo as a user meets it: seconds from ``lambdawatch demo`` to the first anomaly on the
Anomalies dashboard, and the peak memory of the whole stack while it runs.

One isolated stack. It is brought up and down once first, so the measured run is on a warm
machine (environments built, jars cached, databases initialised), as the goal says. Then the
clock starts, the stack comes up and the demo runs in a thread while this process polls the
"Latest anomalies" chart through Superset's chart-data API (what the dashboard itself runs)
for an anomaly detected after the start, and samples the memory (PSS) of every component's
process tree each second. Once the demo has ended it lists the dashboard charts that return no
row: what a user would find empty.

Goals (issue 5/6): first anomaly visible <= 3 minutes; peak memory <= 8 GB.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from bench.common import write_result
from lambdawatch.core.settings import load_settings
from lambdawatch.ops.demo import DemoReport, report_rows, run_demo
from lambdawatch.ops.stack.isolation import isolated_environment
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.ops.superset_api import SupersetApiError, SupersetClient

CHART = "Latest anomalies"


def _first_new_anomaly(client: SupersetClient, chart_id: int, since: datetime) -> bool:
    try:
        results = client.chart_data(chart_id)
    except (SupersetApiError, OSError):
        return False
    for result in results:
        for row in result.get("data", []):
            started = row.get("window_start")
            if started is None:
                continue
            when = (
                datetime.fromtimestamp(started / 1000, UTC)
                if isinstance(started, int | float)
                else datetime.fromisoformat(str(started)).replace(tzinfo=UTC)
            )
            if when >= since:
                return True
    return False


def charts_without_data(client: SupersetClient) -> list[str]:
    """Every dashboard chart whose saved query returns no row now (``dashboard/chart``): what
    a user opening the dashboards after the demo would see empty."""
    empty = []
    for dashboard in client.dashboards():
        for chart in client.dashboard_charts(dashboard["id"]):
            rows = sum(result.get("rowcount", 0) for result in client.chart_data(chart["id"]))
            if not rows:
                empty.append(f"{dashboard['slug']}/{chart['slice_name']}")
    return sorted(empty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="demo feed duration")
    args = parser.parse_args()
    console = Console()
    with isolated_environment(prefix="lambdawatch-bench-demo-"):
        settings = load_settings()
        stack = LocalStack(settings)
        try:
            with console.status("warming up: first start initialises every database"):
                stack.up(on_event=lambda _m: None)
                stack.down()
            peak = {"bytes": 0, "by_component": {}}
            done = threading.Event()

            def sample_memory() -> None:
                while not done.is_set():
                    rows = stack.status()
                    total = sum(row.rss_bytes for row in rows)
                    if total > peak["bytes"]:
                        peak["bytes"] = total
                        peak["by_component"] = {row.name: row.rss_bytes for row in rows}
                    time.sleep(1.0)

            outcome: dict[str, Any] = {}

            def demo() -> None:
                try:
                    stack.up(on_event=lambda _m: None)
                    outcome["up_seconds"] = time.monotonic() - started
                    outcome["report"] = run_demo(
                        settings, stack.secrets, args.minutes, 0.1, 72, say=console.print
                    )
                    outcome["demo_seconds"] = time.monotonic() - started
                except Exception as error:  # reported, not raised: the bench writes what it saw
                    outcome["error"] = repr(error)

            since = datetime.now(UTC)
            started = time.monotonic()
            sampler = threading.Thread(target=sample_memory, daemon=True)
            sampler.start()
            runner = threading.Thread(target=demo)
            runner.start()
            first_anomaly_s = None
            client = SupersetClient.from_settings(settings, stack.secrets)
            chart_id = None
            while runner.is_alive() or first_anomaly_s is None:
                if chart_id is None and "up_seconds" in outcome:
                    charts = {c["slice_name"]: c["id"] for c in client.charts()}
                    chart_id = charts[CHART]
                if chart_id is not None and _first_new_anomaly(client, chart_id, since):
                    first_anomaly_s = time.monotonic() - started
                    console.print(f"first anomaly on the dashboard after {first_anomaly_s:.0f} s")
                    break
                if not runner.is_alive():
                    break
                time.sleep(2)
            runner.join()
            done.set()
            empty_charts = charts_without_data(client) if "report" in outcome else None
        finally:
            stack.down()
    report: DemoReport | None = outcome.get("report")
    payload = {
        "goals": {"first_anomaly_seconds": "<= 180", "peak_memory_gib": "<= 8"},
        "demo_minutes": args.minutes,
        "up_seconds_warm": round(outcome.get("up_seconds", float("nan")), 1),
        "first_anomaly_seconds": None if first_anomaly_s is None else round(first_anomaly_s, 1),
        "peak_memory_gib": round(peak["bytes"] / 2**30, 2),
        "peak_memory_by_component_mib": {
            name: round(value / 2**20) for name, value in peak["by_component"].items()
        },
        "demo_error": outcome.get("error"),
        "demo_seconds": round(outcome.get("demo_seconds", float("nan")), 1),
        "charts_without_data_after": empty_charts,
        "demo_report": [[what, str(value)] for what, value in report_rows(report)]
        if report
        else None,
        "goals_met": {
            "first_anomaly": first_anomaly_s is not None and first_anomaly_s <= 180,
            "memory": peak["bytes"] <= 8 * 2**30,
        },
    }
    path = write_result("demo", payload)
    console.print(
        f"first anomaly after {payload['first_anomaly_seconds']} s; peak memory "
        f"{payload['peak_memory_gib']} GiB → {path}"
    )


if __name__ == "__main__":
    main()
