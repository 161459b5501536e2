"""Names of the speed layer's streaming queries (no PySpark import: health checks read it)."""

from __future__ import annotations

SPEED_LAYER_QUERIES = (
    "dead_letters",
    "server_status",
    "cpu_anomalies",
    "ip_averages",
    "ip_windows",
    "weather_derived",
)

# Bump a query's version whenever its stateful operators change (aggregation keys, windows,
# de-duplication): Spark refuses to restore state into a different plan, so a new version
# gets a new checkpoint directory and reprocesses from the earliest retained offsets, which
# the idempotent sinks absorb.
QUERY_VERSIONS = {
    "dead_letters": 1,
    "server_status": 2,
    "cpu_anomalies": 2,
    "ip_averages": 1,
    "ip_windows": 2,
    "weather_derived": 1,
}
