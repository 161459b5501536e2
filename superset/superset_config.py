"""Superset configuration for lambdawatch, the same file in local mode and docker-compose.

Everything secret or deployment-specific comes from the environment, which ``lambdawatch up``
(local) or the compose file (distributed) sets; a missing variable fails at start with its name.
"""

from __future__ import annotations

import os


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: Superset needs it (see lambdawatch's .env)")
    return value


SECRET_KEY = _required("SUPERSET_SECRET_KEY")
SQLALCHEMY_DATABASE_URI = _required("SUPERSET_METADATA_URL")

# Caches: Redis when one is given (docker-compose), else in-process (one gunicorn worker).
_redis = os.environ.get("SUPERSET_CACHE_REDIS_URL")


def _cache(prefix: str, timeout: int) -> dict[str, object]:
    if _redis:
        return {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": _redis,
            "CACHE_KEY_PREFIX": f"superset_{prefix}_",
            "CACHE_DEFAULT_TIMEOUT": timeout,
        }
    return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": timeout}


CACHE_CONFIG = _cache("meta", 300)
# Short: dashboards refresh every minute or so, and the data is live.
DATA_CACHE_CONFIG = _cache("data", 30)
FILTER_STATE_CACHE_CONFIG = _cache("filter", 86400)
EXPLORE_FORM_DATA_CACHE_CONFIG = _cache("explore", 86400)

ROW_LIMIT = 50_000
SUPERSET_WEBSERVER_TIMEOUT = 120
# Render every chart of a dashboard, not only those scrolled into view: an operator's wall
# screen and the browser tests both expect the whole dashboard.
FEATURE_FLAGS = {"DASHBOARD_VIRTUALIZATION": False}
# Plain HTTP on loopback in local mode; put a TLS proxy in front in a real deployment.
TALISMAN_ENABLED = os.environ.get("SUPERSET_TALISMAN_ENABLED", "false").lower() == "true"
SESSION_COOKIE_SECURE = False
# "Last day" means the 24 hours up to now, not up to midnight: these dashboards are live.
DEFAULT_RELATIVE_START_TIME = "now"
DEFAULT_RELATIVE_END_TIME = "now"

# Sub-hour time grains as PostgreSQL's date_bin: Superset's own expressions for them compute
# date_trunc plus a numeric floor(extract(minute)) per row, about three times slower on a day
# of CDN events (bench/dashboards). Buckets start on the hour, as Superset's do. The origin is
# typed: Superset's SQL parser (sqlglot) unquotes an untyped one.
TIME_GRAIN_ADDON_EXPRESSIONS = {
    "postgresql": {
        grain: f"date_bin(INTERVAL '{minutes} minutes', {{col}}, "
        "TIMESTAMPTZ '2000-01-01 00:00:00+00')"
        for grain, minutes in (("PT5M", 5), ("PT10M", 10), ("PT15M", 15), ("PT30M", 30))
    }
}

# SQL Lab runs any SQL the reader role may: off unless the deployment switches it on
# (``superset_sql_lab`` in lambdawatch's settings). Off, its pages and API answer 403 for
# everyone, admins included; dashboards and charts are unaffected.
SQL_LAB_ENABLED = os.environ.get("LAMBDAWATCH_SQL_LAB", "false").lower() == "true"
SQL_LAB_PATHS = ("/sqllab", "/api/v1/sqllab", "/superset/sqllab", "/superset/sql_json")


def FLASK_APP_MUTATOR(app):  # noqa: N802 - the name Superset looks for
    if SQL_LAB_ENABLED:
        return

    from flask import abort, request

    @app.before_request
    def refuse_sql_lab():
        if request.path.startswith(SQL_LAB_PATHS):
            abort(403, description="SQL Lab is off in this deployment (superset_sql_lab)")
