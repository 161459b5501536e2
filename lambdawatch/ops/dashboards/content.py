"""The dashboards' content: every dataset (a view in ``sql/``) and every dashboard's charts.

To change a dashboard, edit it here, then ``lambdawatch dashboards render`` (the committed YAML
in ``superset/`` is checked against this by a unit test) and ``lambdawatch dashboards import``.
"""

from __future__ import annotations

from lambdawatch.ops.dashboards.model import (
    LAST_HOUR,
    WEEK_AND_NEXT_DAY,
    Chart,
    Dashboard,
    Dataset,
    line_chart,
)

DATASETS = {
    d.view: d
    for d in [
        Dataset(
            "v_ip_traffic",
            "Per-IP features: archived history and live windows next to the Prophet forecast.",
            "ts",
            {
                "actual": "AVG(actual)",
                "forecast": "AVG(forecast)",
                "forecast_lower": "AVG(forecast_lower)",
                "forecast_upper": "AVG(forecast_upper)",
            },
        ),
        Dataset(
            "v_ip_windows",
            "The speed layer's per-IP feature windows.",
            "window_start",
            {"total": "SUM(total)", "samples": "SUM(samples)"},
        ),
        Dataset(
            "v_ip_scans",
            "Destination fan-out beyond the forecast interval: scans.",
            "window_start",
            {"scans": "COUNT(*)"},
        ),
        Dataset(
            "v_server_status",
            "Server status messages per datacenter and 1-minute window.",
            "window_start",
            {"messages": "SUM(messages)"},
        ),
        Dataset(
            "v_cpu_windows",
            "CPU usage per server and window, with its baseline z-score.",
            "window_start",
            {"mean_cpu": "AVG(mean_cpu)"},
        ),
        Dataset(
            "v_anomalies",
            "Every detector's findings in one shape.",
            "window_start",
            {"anomalies": "COUNT(*)"},
        ),
        Dataset(
            "v_cdn_clusters",
            "CDN events with their KMeans cluster and distance to its centroid.",
            "ts",
            {
                "events": "COUNT(*)",
                "anomalous_edges": "COUNT(DISTINCT CASE WHEN anomalous THEN edge_id END)",
            },
        ),
        Dataset(
            "v_cdn_cluster_minutes",
            "CDN events per minute and KMeans cluster (a rollup the speed layer keeps beside the "
            "per-event rows).",
            "minute",
            {"events": "SUM(events)", "anomalous_events": "SUM(anomalous)"},
        ),
        Dataset(
            "v_models",
            "Every trained model version and whether it is promoted.",
            "created_at",
        ),
        Dataset(
            "v_stream_progress",
            "Speed-layer micro-batches per query and Kafka topic: throughput and lag.",
            "batch_ts",
            {
                "events_per_second": "SUM(input_rows_per_second)",
                "lag": "MAX(offsets_behind_latest)",
            },
        ),
        Dataset(
            "v_batch_runs",
            "Successful batch DAG runs.",
            "finished_at",
            {"last_success": "MAX(finished_at)", "runs": "COUNT(*)"},
        ),
        Dataset(
            "v_speed_layer_set_aside",
            "Per speed-layer query: records it could not write and set aside in the last week "
            "(dead letters or quarantine), zero when none.",
            None,
        ),
        Dataset(
            "v_late_events",
            "Per windowed speed-layer query and topic: events that arrived behind its watermark "
            "in the last day (counted by Spark; the events are in the dead-letter topic).",
            None,
        ),
        Dataset(
            "v_lost_records",
            "Per speed-layer query and topic: records Kafka's retention deleted before the "
            "query read them, in the last week (the layer was down longer than the topic keeps "
            "data).",
            None,
        ),
        Dataset(
            "v_backtest_runs",
            "One row per backtest: findings, and where labelled its precision, recall and median "
            "time to detect.",
            "finished_at",
        ),
        Dataset(
            "v_backtest_findings",
            "A backtest's findings beside the live anomalies of the same detector and span: "
            "found by both, by one, or at another severity.",
            "window_start",
            {"findings": "COUNT(*)"},
        ),
        Dataset(
            "v_backtest_episodes",
            "The labelled episodes a backtest was judged on, and when its first finding said so.",
            "start_ts",
        ),
        Dataset(
            "v_incidents",
            "Incidents: anomalies grouped per entity, and across a datacenter or PoP, with "
            "their state, severity, strongest finding and a one-line summary (time: when the "
            "platform opened it).",
            "opened_at",
            {"incidents": "COUNT(*)"},
        ),
        Dataset(
            "v_incident_members",
            "The findings each incident holds.",
            "window_start",
            {"findings": "COUNT(*)"},
        ),
        Dataset(
            "v_weather",
            "Per city and reading: temperature − feels-like beside the city's batch mean and σ "
            "(baseline_stats).",
            "ts",
            {
                "difference": "AVG(temperature_minus_feels_like)",
                "baseline_mean": "AVG(baseline_mean)",
                "baseline_lower": "AVG(baseline_lower)",
                "baseline_upper": "AVG(baseline_upper)",
                "readings": "COUNT(*)",
            },
        ),
        Dataset(
            "v_hot_store_stats",
            "The hot store's size over time, and how far behind the archive is.",
            "sampled_at",
            {
                "used_memory_mib": "MAX(used_memory_mib)",
                "series": "MAX(series)",
                "archive_lag_hours": "MAX(archive_lag_hours)",
            },
        ),
    ]
}


DASHBOARDS = (
    Dashboard(
        "Incidents",
        "incidents",
        30,
        (
            (
                Chart(
                    "Open incidents",
                    DATASETS["v_incidents"],
                    "table",
                    columns=(
                        "last_seen",
                        "severity",
                        "state",
                        "summary",
                        "scope",
                        "entities",
                        "detectors",
                        "members",
                        "duration_minutes",
                        "incident_id",
                    ),
                    where="state <> 'resolved'",
                    time_range="No filter",
                    order_by=("last_seen", False),
                    row_limit=100,
                    width=12,
                ),
            ),
            (
                Chart(
                    "Incidents opened per minute",
                    DATASETS["v_incidents"],
                    "timeseries_bar",
                    metrics=("incidents",),
                    groupby=("severity",),
                    time_grain="PT1M",
                    options={"stack": "Stack"},
                ),
                Chart(
                    "Incidents by detector",
                    DATASETS["v_incidents"],
                    "pie",
                    metrics=("incidents",),
                    groupby=("strongest_detector",),
                ),
            ),
            (
                Chart(
                    "Members of open incidents",
                    DATASETS["v_incident_members"],
                    "table",
                    columns=(
                        "window_start",
                        "incident_id",
                        "entity",
                        "detector",
                        "metric",
                        "value",
                        "expected",
                        "score",
                        "severity",
                    ),
                    where="state <> 'resolved'",
                    time_range="No filter",
                    order_by=("window_start", False),
                    row_limit=200,
                    width=12,
                ),
            ),
        ),
        "What to act on first: open incidents (anomalies grouped per entity, and across a "
        "datacenter or PoP), when they opened, which detectors found them, and their findings. "
        "Act on one with `lambdawatch incidents ack | resolve | false-positive ID`.",
    ),
    Dashboard(
        "Network traffic",
        "network-traffic",
        60,
        (
            (
                line_chart(
                    "IP traffic: actual vs forecast",
                    DATASETS["v_ip_traffic"],
                    ("actual", "forecast", "forecast_lower", "forecast_upper"),
                    time_grain="PT1H",
                    time_range=WEEK_AND_NEXT_DAY,
                    where="feature = 'bytesin'",
                    width=12,
                ),
            ),
            (
                Chart(
                    "Top talkers (bytes out)",
                    DATASETS["v_ip_windows"],
                    "table",
                    metrics=("total",),
                    groupby=("ip",),
                    order_by=("total", False),
                    where="feature = 'bytesout'",
                    row_limit=10,
                ),
                line_chart(
                    "IP features per window",
                    DATASETS["v_ip_windows"],
                    ("total",),
                    groupby=("feature",),
                    time_grain="PT1M",
                    time_range=LAST_HOUR,
                    options={"logAxis": True},  # counts and byte totals on one axis
                ),
            ),
            (
                Chart(
                    "Scans detected",
                    DATASETS["v_ip_scans"],
                    "table",
                    columns=("window_start", "ip", "feature", "value", "expected", "severity"),
                    order_by=("window_start", False),
                    row_limit=100,
                    width=12,
                ),
            ),
        ),
        "Per-IP features over time with the Prophet forecast overlaid, top talkers, scans.",
    ),
    Dashboard(
        "Data center",
        "data-center",
        30,
        (
            (
                Chart(
                    "Servers by status",
                    DATASETS["v_server_status"],
                    "pie",
                    metrics=("messages",),
                    groupby=("status_color",),
                    width=4,
                ),
                Chart(
                    "Status by country and datacenter",
                    DATASETS["v_server_status"],
                    "bar",
                    metrics=("messages",),
                    x_axis="country_name",
                    groupby=("datacenter",),
                    width=8,
                    options={"stack": "Stack"},
                ),
            ),
            (
                Chart(
                    "Status over time",
                    DATASETS["v_server_status"],
                    "timeseries_bar",
                    metrics=("messages",),
                    groupby=("status_color",),
                    time_grain="PT5M",
                    width=12,
                    options={"stack": "Stack"},
                ),
            ),
            (
                Chart(
                    "CPU heat-map",
                    DATASETS["v_cpu_windows"],
                    "heatmap",
                    metrics=("mean_cpu",),
                    groupby=("server_id",),
                    # a minute per column: an hour reads; a day (8.6 M windows at 50 servers)
                    # is neither readable nor quick
                    time_range=LAST_HOUR,
                    width=12,
                    height=80,
                ),
            ),
        ),
        "Server status (the classic pie and bar views) and the CPU of every server.",
    ),
    Dashboard(
        "Anomalies",
        "anomalies",
        30,
        (
            (
                Chart(
                    "WARN/ERROR per detector",
                    DATASETS["v_anomalies"],
                    "timeseries_bar",
                    metrics=("anomalies",),
                    groupby=("detector", "severity"),
                    width=8,
                    options={"stack": "Stack"},
                ),
                Chart(
                    "Anomalies (last day)",
                    DATASETS["v_anomalies"],
                    "big_number",
                    metrics=("anomalies",),
                    width=4,
                ),
            ),
            (
                Chart(
                    "Latest anomalies",
                    DATASETS["v_anomalies"],
                    "table",
                    columns=(
                        "window_start",
                        "detector",
                        "entity",
                        "metric",
                        "value",
                        "expected",
                        "score",
                        "severity",
                        "model_version",
                    ),
                    order_by=("window_start", False),
                    row_limit=200,
                    width=12,
                    height=70,
                ),
            ),
        ),
        "Every detector's WARN and ERROR findings over time, and the latest ones in detail.",
    ),
    Dashboard(
        "CDN",
        "cdn",
        60,
        (
            (
                Chart(
                    "Cluster sizes over time",
                    DATASETS["v_cdn_cluster_minutes"],
                    "timeseries_bar",
                    metrics=("events",),
                    groupby=("cluster",),
                    time_grain="PT5M",
                    options={"stack": "Stack"},
                ),
                Chart(
                    "Distance to centroid (÷ threshold)",
                    DATASETS["v_cdn_clusters"],
                    "histogram",
                    columns=("distance_ratio",),
                ),
            ),
            (
                Chart(
                    "Edges anomalous now",
                    DATASETS["v_cdn_clusters"],
                    "table",
                    metrics=("events",),
                    groupby=("edge_id", "pop", "region"),
                    where="anomalous",
                    time_range=LAST_HOUR,
                    order_by=("events", False),
                    row_limit=50,
                ),
                Chart(
                    "Model versions",
                    DATASETS["v_models"],
                    "table",
                    columns=("model_name", "version", "promoted", "threshold", "created_at"),
                    time_range="No filter",
                    order_by=("created_at", False),
                    row_limit=20,
                ),
            ),
        ),
        "How the live KMeans model groups CDN edges, how far events sit from their centroid.",
    ),
    Dashboard(
        "Pipeline health",
        "pipeline-health",
        30,
        (
            (
                line_chart(
                    "Events/s per topic",
                    DATASETS["v_stream_progress"],
                    ("events_per_second",),
                    groupby=("source",),
                    time_range=LAST_HOUR,
                    where="query IN ('ip_averages', 'server_status', 'cdn_clusters', "
                    "'weather_derived', 'metric_scores')",
                ),
                line_chart(
                    "Speed-layer consumer lag",
                    DATASETS["v_stream_progress"],
                    ("lag",),
                    groupby=("query",),
                    time_range=LAST_HOUR,
                ),
            ),
            (
                Chart(
                    "Last successful run per DAG",
                    DATASETS["v_batch_runs"],
                    "table",
                    metrics=("last_success", "runs"),
                    groupby=("dag_id",),
                    time_range="No filter",
                    order_by=("last_success", False),
                ),
                line_chart(
                    "Hot-store memory (MiB)",
                    DATASETS["v_hot_store_stats"],
                    ("used_memory_mib",),
                    time_grain="PT5M",
                ),
            ),
            (
                Chart(
                    "Records set aside per query (last week)",
                    DATASETS["v_speed_layer_set_aside"],
                    "table",
                    columns=(
                        "query",
                        "records_set_aside",
                        "batches",
                        "last_at",
                        "last_disposition",
                        "last_error",
                    ),
                    time_range="No filter",
                    order_by=("records_set_aside", False),
                    row_limit=50,
                    width=7,
                ),
                Chart(
                    "Late events per query and topic (last day)",
                    DATASETS["v_late_events"],
                    "table",
                    columns=("query", "source", "late_events", "last_late_at", "watermark"),
                    time_range="No filter",
                    order_by=("late_events", False),
                    row_limit=50,
                    width=5,
                ),
            ),
            (
                line_chart(
                    "Oldest unarchived sample (hours behind)",
                    DATASETS["v_hot_store_stats"],
                    ("archive_lag_hours",),
                    time_grain="PT5M",
                    width=7,
                ),
                Chart(
                    "Records lost to retention per query and topic (last week)",
                    DATASETS["v_lost_records"],
                    "table",
                    columns=("query", "source", "lost_records", "last_lost_at"),
                    time_range="No filter",
                    order_by=("lost_records", False),
                    row_limit=50,
                    width=5,
                ),
            ),
        ),
        "Is data flowing: events/s and lag per topic, batch DAG freshness, hot-store size and "
        "how far behind its archive is, the "
        "records a query could not write and set aside (dead letters or quarantine), the "
        "events that arrived behind a windowed query's watermark (dead letters, reason late), "
        "and the records Kafka's retention deleted before the speed layer read them.",
    ),
    Dashboard(
        "Weather",
        "weather",
        60,
        (
            (
                line_chart(
                    "Temperature − feels-like per city",
                    DATASETS["v_weather"],
                    ("difference",),
                    groupby=("city",),
                    time_grain="PT5M",
                    width=12,
                ),
            ),
            (
                line_chart(
                    "Temperature − feels-like against its batch mean ± 2σ",
                    DATASETS["v_weather"],
                    ("difference", "baseline_mean", "baseline_lower", "baseline_upper"),
                    time_grain="PT5M",
                ),
                Chart(
                    "Latest readings against their baseline",
                    DATASETS["v_weather"],
                    "table",
                    columns=(
                        "ts",
                        "city",
                        "temperature",
                        "feels_like",
                        "temperature_minus_feels_like",
                        "baseline_mean",
                        "baseline_stddev",
                        "baseline_variance",
                        "z",
                    ),
                    order_by=("ts", False),
                    row_limit=100,
                ),
            ),
        ),
        "The weather speed layer: per city, temperature − feels-like as it streams in, beside "
        "its batch mean and variance from baseline_stats.",
    ),
    Dashboard(
        "Backtests",
        "backtests",
        60,
        (
            (
                Chart(
                    "Backtest runs",
                    DATASETS["v_backtest_runs"],
                    "table",
                    columns=(
                        "finished_at",
                        "run_id",
                        "detector",
                        "history",
                        "judged",
                        "warn",
                        "error",
                        "labels",
                        "episodes",
                        "detected",
                        "precision",
                        "recall",
                        "error_precision",
                        "error_recall",
                        "median_time_to_detect_s",
                    ),
                    time_range="No filter",
                    order_by=("finished_at", False),
                    row_limit=50,
                    width=12,
                ),
            ),
            (
                Chart(
                    "Backtest vs live findings per run",
                    DATASETS["v_backtest_findings"],
                    "bar",
                    metrics=("findings",),
                    x_axis="run_id",
                    groupby=("agreement",),
                    time_range="No filter",
                    options={"stack": "Stack"},
                ),
                Chart(
                    "Labelled episodes: time to detect",
                    DATASETS["v_backtest_episodes"],
                    "table",
                    columns=(
                        "run_id",
                        "entity",
                        "kind",
                        "start_ts",
                        "end_ts",
                        "detected",
                        "time_to_detect_s",
                        "first_error",
                    ),
                    time_range="No filter",
                    order_by=("start_ts", False),
                    row_limit=100,
                ),
            ),
            (
                Chart(
                    "Findings: backtest beside live",
                    DATASETS["v_backtest_findings"],
                    "table",
                    columns=(
                        "window_start",
                        "run_id",
                        "detector",
                        "entity",
                        "metric",
                        "backtest_severity",
                        "live_severity",
                        "agreement",
                    ),
                    time_range="No filter",
                    order_by=("window_start", False),
                    row_limit=200,
                    width=12,
                    height=70,
                ),
            ),
        ),
        "History through the same detectors: each backtest run, what it found beside what "
        "the live speed layer found over the same span, and where labelled, its precision, "
        "recall and time to detect.",
    ),
)
