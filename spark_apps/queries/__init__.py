"""One module per streaming query of the speed layer: source → transforms and detectors → sink.

Each module's ``start(io)`` builds its query on a ``spark_apps.io.StreamIO`` and starts it.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.catalog import SPEED_LAYER_QUERIES
from lambdawatch.core.settings import Settings
from spark_apps.io import StreamIO
from spark_apps.queries import (
    cdn_clusters,
    cpu_anomalies,
    cpu_windows_store,
    dead_letters,
    forecast_deviations,
    incidents,
    ip_averages,
    ip_windows,
    metric_scores,
    server_status,
    silence,
    weather_derived,
)
from spark_apps.transforms.lateness import LateRule

STARTERS: dict[str, Callable[[StreamIO], StreamingQuery]] = {
    "cdn_clusters": cdn_clusters.start,
    "cpu_anomalies": cpu_anomalies.start,
    "cpu_windows_store": cpu_windows_store.start,
    "dead_letters": dead_letters.start,
    "forecast_deviations": forecast_deviations.start,
    "incidents": incidents.start,
    "ip_averages": ip_averages.start,
    "ip_windows": ip_windows.start,
    "metric_scores": metric_scores.start,
    "server_status": server_status.start,
    "silence": silence.start,
    "weather_derived": weather_derived.start,
}
assert set(STARTERS) == set(SPEED_LAYER_QUERIES), "the catalog names every query, once"

# The queries whose stateful operators drop rows behind their event-time watermark, and how
# (``spark_apps.transforms.lateness``). The others keep no event-time state (``silence`` and
# ``metric_scores`` hand every row to their own state functions).
LATE_RULES: dict[str, Callable[[Settings], LateRule]] = {
    "cpu_anomalies": cpu_anomalies.late_rule,
    "ip_windows": ip_windows.late_rule,
    "server_status": server_status.late_rule,
}
