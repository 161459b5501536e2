"""Dashboard chart queries at 30 days of retained data, next to the same queries at one day.

One isolated stack (PostgreSQL, Redis, Superset with the platform's dashboards imported). The
serving tables are filled day by day, as a running platform would fill them, at the densities
config.json implies scaled by ``--scale`` (1.0, the default: 50 servers' CPU windows every
500 ms, about 8.6 M rows a day). A table gets only the days its ``retention.days`` keeps, as a
running platform would hold them (``rt_cpu_windows``: today and the 7 days before, about 69 M
rows), and apply_retention runs once the days are in, so the platform's own rule has the last
word. A rollup the speed layer refreshes beside a table (``rt_cdn_cluster_minutes``) is
refreshed per day by the same database function. Each day gets its daily partition, as
apply_retention would have made it, and the fill
ends with a VACUUM ANALYZE, as autovacuum keeps a running platform's tables. Every chart of
every dashboard is then run through Superset's chart-data API (``force``: no cache),
``--rounds`` times: first with one day of data (the reference, same run), then with ``--days``
days.

Goal (issue 19): p95 of the chart queries at 30 days <= 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from bench.common import running_stack, write_result
from lambdawatch.core import db
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import TABLES
from lambdawatch.ops.superset_api import SupersetClient
from lambdawatch.pipelines.retention import apply_retention

GOAL_P95_S = 1.0

# One day of each table, from generate_series: %(day)s is the day's start; %(n)s a count from
# the scale. Values are plausible, not realistic: the queries' cost is in the rows.
DAY_FILL = {
    "rt_cpu_windows": """
        INSERT INTO rt_cpu_windows
        SELECT 'srv-' || s, t, t + interval '500 milliseconds', 45 + 10 * random(), 2, 2,
               45, 12, 3 * random(), CASE WHEN random() < 0.002 THEN 'ERROR'
               WHEN random() < 0.02 THEN 'WARN' ELSE 'SAFE' END
        FROM generate_series(1, %(servers)s) s,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '500 milliseconds',
                             interval '500 milliseconds') t""",
    "rt_server_status": """
        INSERT INTO rt_server_status
        SELECT t, t + interval '1 minute', 'FR', 'France', 'Paris', 'dc-' || d,
               (ARRAY['Green', 'Yellow', 'Red'])[c], v, (random() * 20)::int,
               (random() * 500)::int, t + interval '1 minute'
        FROM generate_series(1, 10) d, generate_series(1, 3) c, generate_series(1, 3) v,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '1 minute',
                             interval '1 minute') t""",
    "rt_cdn_clusters": """
        INSERT INTO rt_cdn_clusters
        SELECT 'edge-' || e, t, 'pop-' || (e %% 8), 'eu', md5(e || t::text), e %% 5,
               random(), 0.9, random() < 0.01, 'v1'
        FROM generate_series(1, %(edges)s) e,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '10 seconds',
                             interval '10 seconds') t""",
    "rt_ip_windows": """
        INSERT INTO rt_ip_windows
        SELECT t, t + interval '1 minute', '10.0.0.' || i, f, 1, 100 * random(),
               100 * random()
        FROM generate_series(1, %(ips)s) i,
             unnest(ARRAY['bytesin', 'bytesout', 'pkts_sent', 'pkts_received']) f,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '1 minute',
                             interval '1 minute') t""",
    "ip_history": """
        INSERT INTO ip_history
        SELECT '10.0.0.' || i, f, t, 100 * random()
        FROM generate_series(1, %(ips)s) i,
             unnest(ARRAY['bytesin', 'bytesout', 'pkts_sent', 'pkts_received']) f,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '1 minute',
                             interval '1 minute') t""",
    "rt_weather": """
        INSERT INTO rt_weather
        SELECT 'city-' || c, t, 48, 2, 10 + 5 * random(), 9 + 5 * random(), random(),
               md5(c || t::text)
        FROM generate_series(1, 12) c,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '1 minute',
                             interval '1 minute') t""",
    "speed_layer_progress": """
        INSERT INTO speed_layer_progress
        SELECT 'query_' || q, (extract(epoch FROM t) / 2)::bigint, 'topic-' || q, t,
               (random() * 500)::int, 250 * random(), 1000 * random(), (random() * 10)::int,
               (random() * 900)::int, t - interval '2 seconds', 0, 0
        FROM generate_series(1, 11) q,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '1 second',
                             %(progress_every)s::interval) t""",
    "anomalies": """
        INSERT INTO anomalies
        SELECT (ARRAY['cpu_anomalies', 'ip_forecast', 'cdn_kmeans'])[1 + a %% 3], 'srv-' || a,
               'cpu', t, t + interval '500 milliseconds', 90, 45, 0.9,
               CASE WHEN a %% 4 = 0 THEN 'ERROR' ELSE 'WARN' END, 'v1', t + interval '1 second'
        FROM generate_series(1, 20) a,
             generate_series(%(day)s, %(day)s + interval '1 day' - interval '5 minutes',
                             interval '5 minutes') t""",
}


# Rollups the speed layer refreshes after writing a table: filled the same way, per day.
ROLLUPS = {"rt_cdn_clusters": ("rt_cdn_cluster_minutes", db.refresh_cdn_cluster_minutes)}


def densities(scale: float) -> dict[str, Any]:
    """config.json's densities (50 servers, 40 CDN edges, a progress row per query every 2 s)
    times ``scale``; the IP tables at 50 IPs × 4 features per minute times ``scale``."""
    return {
        "servers": max(1, round(50 * scale)),
        "edges": max(1, round(40 * scale)),
        "ips": max(1, round(50 * scale)),
        "progress_every": f"{max(2, round(2 / scale))} seconds",
    }


def make_day_partitions(conn: Any, day: datetime) -> None:
    """The day's partition of every partitioned table (what apply_retention makes ahead)."""
    for relation in TABLES.values():
        if relation.partitioned_by_day:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {relation.name}_p{day:%Y%m%d} PARTITION OF "
                f"{relation.name} FOR VALUES FROM ('{day.isoformat()}') "
                f"TO ('{(day + timedelta(days=1)).isoformat()}')"
            )


def retained(settings: Settings, table: str, age_days: int) -> bool:
    """Whether a day ``age_days`` before today is still in ``table`` under config.json's
    retention (a table without one keeps every day): ``lambdawatch_apply_retention`` drops a
    day once its end is at or before today − ``keep_days``, so it keeps ages 0 to keep_days.
    Only spares the fill the rows retention would drop; apply_retention itself runs after."""
    keep = settings.retention.days.get(table)
    return keep is None or age_days <= keep


def fill_days(
    settings: Settings, secrets: Secrets, today: datetime, days: list[datetime], scale: float
) -> dict[str, int]:
    """Each day's rows in every table that still retains it, a transaction per day; the rows
    written per table."""
    written: dict[str, int] = dict.fromkeys([*DAY_FILL, *(r for r, _ in ROLLUPS.values())], 0)
    with db.connect(settings, secrets, role="owner") as conn:
        for day in days:
            age_days = (today - day).days
            with conn.transaction():
                make_day_partitions(conn, day)
                for table, statement in DAY_FILL.items():
                    if not retained(settings, table, age_days):
                        continue
                    cursor = conn.execute(statement, {"day": day, **densities(scale)})
                    written[table] += cursor.rowcount
                    if table in ROLLUPS:
                        rollup, refresh = ROLLUPS[table]
                        last = day + timedelta(days=1) - timedelta(microseconds=1)
                        written[rollup] += refresh(conn, day, last)
        # What autovacuum does behind a running platform's steady inserts: statistics, and the
        # visibility map that lets index-only scans skip the heap. Done here, after a bulk
        # fill, so that it does not run during the timed rounds.
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return written


def chart_timings(client: SupersetClient, rounds: int) -> dict[str, list[float]]:
    """Seconds per chart-data request (``force``: past Superset's cache), every chart of every
    dashboard, ``rounds`` times."""
    charts: dict[str, int] = {}
    for dashboard in client.dashboards():
        for chart in client.dashboard_charts(dashboard["id"]):
            charts[f"{dashboard['slug']}/{chart['slice_name']}"] = int(chart["id"])
    timings: dict[str, list[float]] = {name: [] for name in charts}
    for _ in range(rounds):
        for name, chart_id in charts.items():
            started = time.perf_counter()
            client.get(f"/chart/{chart_id}/data/", force="true")
            timings[name].append(time.perf_counter() - started)
    return timings


def summary(timings: dict[str, list[float]]) -> dict[str, Any]:
    every = sorted(t for values in timings.values() for t in values)
    p95 = every[min(len(every) - 1, int(0.95 * len(every)))]
    slowest = sorted(timings, key=lambda n: statistics.median(timings[n]), reverse=True)[:5]
    return {
        "requests": len(every),
        "p50_s": round(statistics.median(every), 3),
        "p95_s": round(p95, 3),
        "max_s": round(every[-1], 3),
        "slowest_median_s": {n: round(statistics.median(timings[n]), 3) for n in slowest},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0, help="of config.json's densities")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in range(args.days)]  # today first
    with running_stack(["postgres", "redis", "superset"]) as (settings, stack):
        apply_retention(settings, stack.secrets)  # today's and the next days' partitions
        client = SupersetClient.from_settings(settings, stack.secrets)
        started = time.perf_counter()
        written = fill_days(settings, stack.secrets, today, days[:1], args.scale)
        one_day = summary(chart_timings(client, args.rounds))
        console.print(f"1 day: {one_day}")
        more = fill_days(settings, stack.secrets, today, days[1:], args.scale)
        after_fill = apply_retention(settings, stack.secrets)  # 0 dropped: the fill kept its rule
        fill_s = time.perf_counter() - started
        rows = {table: written[table] + more[table] for table in written}
        at_days = summary(chart_timings(client, args.rounds))
        console.print(f"{args.days} days: {at_days}")
    path = write_result(
        "dashboards",
        {
            "days": args.days,
            "scale": args.scale,
            "densities": densities(args.scale),
            "rows": rows,
            "fill_seconds": round(fill_s, 1),
            "dropped_by_retention_after_fill": {
                r.table: {"partitions": r.partitions_dropped, "rows": r.rows_deleted}
                for r in after_fill
                if r.partitions_dropped or r.rows_deleted
            },
            "rounds": args.rounds,
            "one_day_reference": one_day,
            "at_retention": at_days,
            "p95_ratio_to_one_day": round(at_days["p95_s"] / one_day["p95_s"], 2),
            "goal_p95_s": GOAL_P95_S,
            "goal_met": at_days["p95_s"] <= GOAL_P95_S,
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
