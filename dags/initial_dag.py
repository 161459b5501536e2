"""InitialDag: create everything the platform writes to. Manual only; safe to trigger twice."""

from __future__ import annotations

from airflow.sdk import dag, task

from common.defaults import DEFAULT_ARGS, START_DATE


@dag(
    dag_id="InitialDag",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # manual only, so active from the start: trigger and go
    default_args=DEFAULT_ARGS,
    tags=["lambdawatch", "setup"],
    doc_md="""
Validates `config.json` and `.env`, creates the Kafka topics (partitions, retention), the
hot-store series per IP × feature (labels, retention), checks that the PostgreSQL schema is
current (the database owner applies migrations at `lambdawatch prepare`/`up`; tasks run as the
batch role, which cannot change it), then unpauses the scheduled DAGs. Every step is idempotent:
triggering it again changes nothing that exists.
""",
)
def initial_dag() -> None:
    @task
    def validate_config() -> dict[str, int]:
        from lambdawatch.pipelines.platform_init import validate_configuration

        return validate_configuration()

    @task
    def create_topics() -> dict[str, str]:
        from common.defaults import settings
        from lambdawatch.pipelines.platform_init import create_topics

        return create_topics(settings())

    @task
    def create_hot_store_series() -> dict[str, int]:
        from common.defaults import settings
        from lambdawatch.pipelines.platform_init import create_hot_store_series

        return create_hot_store_series(settings())

    @task
    def check_schema() -> list[str]:
        from common.defaults import settings
        from lambdawatch.pipelines.platform_init import check_schema

        return check_schema(settings())

    @task
    def unpause_scheduled_dags() -> list[str]:
        from common.defaults import settings
        from lambdawatch.pipelines.platform_init import unpause_scheduled_dags

        return unpause_scheduled_dags(settings())

    validated = validate_config()
    created = [create_topics(), create_hot_store_series(), check_schema()]
    validated >> created
    created >> unpause_scheduled_dags()


initial_dag()
