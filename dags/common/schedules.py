"""The DAGs' schedules: rendered from config.json by ``lambdawatch prepare``; do not edit."""

from __future__ import annotations

SCHEDULES: dict[str, str | None] = {
    "feed_events": "*/5 * * * *",
    "archive_hot_store": "@hourly",
    "forecast_ip_traffic": "asset",
    "baseline_stats": "@hourly",
    "retrain_cdn_kmeans": "@daily",
    "archive_raw_events": "@hourly",
    "apply_retention": "@daily",
}
