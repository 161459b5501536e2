"""InitialDag's steps: each idempotent, so triggering InitialDag twice is harmless."""

from __future__ import annotations

import json

from lambdawatch.core import db
from lambdawatch.core.airflow_api import AirflowClient
from lambdawatch.core.hot_store import ensure_ip_series, open_hot_store, redis_client
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings, load_settings

# The DAGs InitialDag unpauses once the platform they write to exists.
SCHEDULED_DAGS = (
    "feed_events",
    "archive_hot_store",
    "baseline_stats",
    "forecast_ip_traffic",
    "retrain_cdn_kmeans",
    "archive_raw_events",
    "apply_retention",
)
# DAGs without a schedule that users trigger from a form: unpaused too, so a run starts at once.
ON_DEMAND_DAGS = ("backtest",)


SCHEDULES_MODULE = "dags/common/schedules.py"


def render_schedules(settings: Settings) -> str:
    """``dags/common/schedules.py``: config.json's schedules as a literal, so importing a DAG
    file reads no file (Airflow parses DAG files every few seconds)."""
    schedules = settings.schedules.model_dump()
    body = "".join(
        f"    {json.dumps(dag_id)}: {'None' if value is None else json.dumps(value)},\n"
        for dag_id, value in schedules.items()
    )
    return (
        '"""The DAGs\' schedules: rendered from config.json by ``lambdawatch prepare``; do not '
        'edit."""\n\nfrom __future__ import annotations\n\n'
        f"SCHEDULES: dict[str, str | None] = {{\n{body}}}\n"
    )


def write_schedules(settings: Settings) -> bool:
    """Render the schedules module into the checkout; True when it changed."""
    path = settings.root / SCHEDULES_MODULE
    text = render_schedules(settings)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def validate_configuration() -> dict[str, int]:
    """Load config.json and .env through the one settings model; ``ConfigError`` names fields."""
    settings = load_settings()
    return {
        "topics": len(settings.topics),
        "ips": len(settings.ips.resolved_addresses),
        "features": len(settings.ips.features),
    }


def create_topics(settings: Settings) -> dict[str, str]:
    """Every topic of config.json with its partitions and retention; returns topic → action."""
    admin = admin_client(settings.kafka_bootstrap)
    try:
        changes = ensure_topics(admin, settings.kafka_topics)
        return {change.name: change.action for change in changes}
    finally:
        admin.close()


def create_hot_store_series(settings: Settings) -> dict[str, int]:
    """One series per IP × feature with labels and retention (existing ones are kept)."""
    client = redis_client(settings)
    try:
        store = open_hot_store(client, settings)
        created = ensure_ip_series(store, settings)
    finally:
        client.close()
    expected = len(settings.ips.resolved_addresses) * len(settings.ips.features)
    return {"created": created, "series": expected}


def check_schema(settings: Settings, secrets: Secrets | None = None) -> list[str]:
    """That every migration in ``sql/`` is applied; returns their versions. Airflow's tasks run
    as the batch role, which cannot change the schema: the owner applies migrations at
    ``lambdawatch prepare`` (compose: the init service) and ``lambdawatch up``."""
    with db.connect(settings, secrets) as conn:
        pending = db.pending_migrations(conn, settings.root / "sql")
    if pending:
        raise RuntimeError(
            f"migrations not applied yet: {', '.join(pending)}; run `lambdawatch prepare` "
            "(docker-compose: the init service) as the database owner"
        )
    return [migration.version for migration in db.discover_migrations(settings.root / "sql")]


def unpause_scheduled_dags(settings: Settings, secrets: Secrets | None = None) -> list[str]:
    """Let the scheduled DAGs run now that their topics, keys and tables exist, and the
    on-demand ones start when triggered."""
    secrets = secrets or secrets_for(settings)
    client = AirflowClient.from_settings(settings, secrets)
    known = set(client.dag_ids())
    unpaused = []
    for dag_id in (*SCHEDULED_DAGS, *ON_DEMAND_DAGS):
        if dag_id in known:
            client.set_paused(dag_id, paused=False)
            unpaused.append(dag_id)
    return unpaused
