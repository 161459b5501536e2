"""The ``lambdawatch`` command line: run the local stack and operate the platform."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lambdawatch.core.secrets import Secrets, ensure_secrets_file, secrets_for
from lambdawatch.core.settings import ConfigError, Settings, load_settings

# Options `replay` and `backtest` share: they read a file the same way.
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="COLUMN=FIELD,… (metric: timestamp, value, entity; other sources: their event's "
        "fields); repeatable.",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="FIELD=VALUE,… (metric: entity, metric; other sources: their event's fields); "
        "repeatable.",
    ),
]
TimeColumnOption = Annotated[
    str | None, typer.Option(help="Timestamp column (auto-detected); as --map COLUMN=timestamp.")
]
ValueColumnOption = Annotated[
    str | None,
    typer.Option(
        help="The one value column (metric: value, server: cpu_usage, weather: temperature)."
    ),
]
SourceOption = Annotated[
    str, typer.Option(help="metric | server | ip | cdn | weather: the events' shape.")
]
app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Inspect and validate config.json and .env.")
app.add_typer(config_app, name="config")
dashboards_app = typer.Typer(help="Superset dashboards as code (superset/).")
app.add_typer(dashboards_app, name="dashboards")
incidents_app = typer.Typer(
    help="Incidents: anomalies grouped into what to act on.", no_args_is_help=True
)
app.add_typer(incidents_app, name="incidents")
console = Console()
# What ``lambdawatch check`` probes (lambdawatch.ops.health.SERVICES, kept import-free here).
SERVICE_NAMES = ("postgres", "redis", "kafka", "airflow", "superset", "speed-layer")
errors = Console(stderr=True)


PROFILE_FILE = "stack_profile"  # under var/: the profile the last ``up`` started


def _settings() -> Settings:
    """The settings; in the stack profile ``up --profile`` last chose, unless STACK_PROFILE
    says otherwise (so ``status``, ``down`` and the rest see the stack that runs)."""
    try:
        settings = load_settings()
        remembered = settings.var_path / PROFILE_FILE
        if "STACK_PROFILE" not in os.environ and remembered.exists():
            profile = remembered.read_text().strip()
            if profile != settings.stack_profile:
                os.environ["STACK_PROFILE"] = profile
                settings = load_settings()
        return settings
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _secrets(settings: Settings) -> Secrets:
    """The secrets for these settings; a missing one (distributed mode) exits 2, named."""
    try:
        return secrets_for(settings)
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


ComponentsOption = Annotated[
    list[str] | None,
    typer.Option("--only", help="Start only these components (repeatable)."),
]


ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="single (default), or cluster: three Kafka nodes (RF 3), a Spark standalone "
        "master and two workers, jobs submitted to spark://. Remembered for later commands.",
    ),
]


@app.command()
def up(only: ComponentsOption = None, profile: ProfileOption = None) -> None:
    """Start the local stack (idempotent) and wait until every component is healthy."""
    from lambdawatch.ops.stack.local import LocalStack

    if profile is not None:
        os.environ["STACK_PROFILE"] = profile
    settings = _settings()
    if settings.stack_mode == "distributed":
        console.print("STACK_MODE=distributed: nothing to start locally; checking endpoints.")
        status(only)
        return
    remembered = settings.var_path / PROFILE_FILE
    running = remembered.read_text().strip() if remembered.exists() else "single"
    stack = LocalStack(settings)
    if running != settings.stack_profile and stack.supervisor.is_running():
        errors.print(
            f"[red]the stack runs the {running} profile; `lambdawatch down` first to start "
            f"the {settings.stack_profile} one[/red]"
        )
        raise typer.Exit(2)
    settings.var_path.mkdir(parents=True, exist_ok=True)
    remembered.write_text(settings.stack_profile + "\n")
    unknown = sorted(set(only or []) - {c.name for c in stack.components})
    if unknown:
        errors.print(f"[red]unknown component(s): {', '.join(unknown)}[/red]")
        raise typer.Exit(2)
    try:
        with console.status("starting the local stack…"):
            stack.up(only, on_event=lambda message: console.print(f"  [green]✓[/green] {message}"))
    except (RuntimeError, FileNotFoundError) as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"State and logs: {settings.var_path}  (secrets: {settings.var_path}/secrets.env)"
    )
    _print_status(stack)
    if only is None or any(name.startswith("airflow") for name in only):
        password = stack.secrets.airflow_admin_password.get_secret_value()
        console.print(
            f"Airflow UI: {settings.airflow_base_url}  "
            f"(login {settings.airflow_admin_user} / {password}; trigger InitialDag first)"
        )
    if only is None or "superset" in only:
        password = stack.secrets.superset_admin_password.get_secret_value()
        console.print(
            f"Superset:   {settings.superset_base_url}  "
            f"(login {settings.superset_admin_user} / {password})"
        )


@app.command()
def demo(
    minutes: Annotated[float, typer.Option(help="How long to feed events live.")] = 3.0,
    anomaly_rate: Annotated[
        float,
        typer.Option(
            help="Share of generator slots with an injected anomaly (slots are 20-30 minutes "
            "per entity, so a few minutes need a high rate to show every kind)."
        ),
    ] = 0.3,
    history_hours: Annotated[
        int, typer.Option(help="Hours of hourly IP history to seed for the forecast.")
    ] = 72,
) -> None:
    """Start the stack, trigger InitialDag, feed anomalies live, run the batch DAGs, report."""
    from lambdawatch.ops.demo import report_rows, run_demo
    from lambdawatch.ops.stack.local import LocalStack

    settings = _settings()
    if not 0 <= anomaly_rate <= 1:
        errors.print("[red]--anomaly-rate must be between 0 and 1[/red]")
        raise typer.Exit(2)
    stack = LocalStack(settings)
    try:
        with console.status("starting the local stack…"):
            stack.up(on_event=lambda message: console.print(f"  [green]✓[/green] {message}"))
        with console.status("demo running…") as status:
            report = run_demo(
                settings,
                stack.secrets,
                minutes,
                anomaly_rate,
                history_hours,
                say=lambda message: console.print(f"[bold]→[/bold] {message}"),
                on_feed=lambda source, counts: status.update(
                    f"feeding: {source} {sum(counts.events.values()):,} events"
                ),
            )
    except (RuntimeError, FileNotFoundError, TimeoutError) as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = Table(title="lambdawatch demo")
    table.add_column("what")
    table.add_column("result")
    for what, value in report_rows(report):
        table.add_row(what, str(value))
    console.print(table)
    console.print(
        f"Logins: Airflow {settings.airflow_admin_user} / "
        f"{stack.secrets.airflow_admin_password.get_secret_value()}, Superset "
        f"{settings.superset_admin_user} / "
        f"{stack.secrets.superset_admin_password.get_secret_value()}. "
        "The stack keeps running: `lambdawatch down` stops it."
    )


@app.command()
def down() -> None:
    """Stop everything ``up`` started (and only that)."""
    from lambdawatch.ops.stack.local import LocalStack

    LocalStack(_settings()).down()
    console.print("local stack stopped")


@app.command()
def status(only: ComponentsOption = None) -> None:
    """Components, health, pid, port and memory; exit 1 if a (selected) component is unhealthy."""
    from lambdawatch.ops.stack.local import LocalStack

    settings = _settings()
    if settings.stack_mode == "distributed":
        if not _print_endpoints(settings, only):
            raise typer.Exit(1)
        return
    stack = LocalStack(settings)
    if not _print_status(stack, only):
        raise typer.Exit(1)


def _print_endpoints(settings: Settings, only: list[str] | None = None) -> bool:
    """Distributed mode: probe each service where the settings say it is."""
    from lambdawatch.ops.health import check_service

    secrets = _secrets(settings)
    table = Table(title="lambdawatch services (STACK_MODE=distributed)")
    table.add_column("service")
    table.add_column("health")
    healthy = True
    for name in SERVICE_NAMES:
        if only and name not in only:
            continue
        problem = check_service(name, settings, secrets)
        healthy = healthy and problem is None
        table.add_row(name, "[green]ok[/green]" if problem is None else f"[red]{problem}[/red]")
    console.print(table)
    return healthy


def _print_status(stack: object, only: list[str] | None = None) -> bool:
    from lambdawatch.ops.stack.local import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title="lambdawatch local stack")
    for column in ("component", "state", "health", "pid", "port", "memory"):
        table.add_column(column)
    rows = [row for row in stack.status() if not only or row.name in only]
    for row in rows:
        health = "[green]ok[/green]" if row.healthy else f"[red]{row.detail}[/red]"
        if row.notice:
            health += f"\n[yellow]{escape(row.notice)}[/yellow]"
        table.add_row(
            row.name,
            row.state,
            health,
            str(row.pid or "-"),
            str(row.port or "-"),
            _human_bytes(row.rss_bytes) if row.rss_bytes else "-",
        )
    console.print(table)
    return all(row.healthy for row in rows)


@app.command()
def secrets(
    output: Annotated[
        Path | None, typer.Option(help="Where to write (default: var/secrets.env).")
    ] = None,
) -> None:
    """Generate the untracked secrets file (keeps existing values, adds missing ones)."""
    settings = _settings()
    path = ensure_secrets_file(output or settings.var_path / "secrets.env")
    console.print(f"secrets in {path} (mode 600, not tracked by git)")
    console.print(f"docker-compose reads them with: docker compose --env-file {path} up -d")


@app.command()
def prepare() -> None:
    """Create the databases, roles and platform schema (the compose init service runs this;
    ``up`` does the same in local mode). Idempotent."""
    from lambdawatch.ops.stack.databases import prepare_databases
    from lambdawatch.pipelines.platform_init import SCHEDULES_MODULE, write_schedules

    settings = _settings()
    if write_schedules(settings):
        console.print(f"schedules rendered from config.json into {SCHEDULES_MODULE}")
    applied = prepare_databases(settings, _secrets(settings))
    console.print(
        f"databases ready at {settings.postgres_host}:{settings.postgres_port}; "
        f"migrations applied now: {', '.join(applied) or 'none (up to date)'}"
    )


@app.command("airflow-login")
def airflow_login() -> None:
    """Write Airflow's admin login file from the secrets (the compose airflow-init runs this;
    ``up`` does it in local mode)."""
    from lambdawatch.ops.stack.airflow_node import write_password_file

    settings = _settings()
    path = write_password_file(settings, _secrets(settings))
    console.print(f"Airflow login for {settings.airflow_admin_user} written to {path}")


@app.command("spark-connection")
def spark_connection_json() -> None:
    """Airflow's spark_default connection as the settings describe the Spark master, as JSON
    for `airflow connections add spark_default --conn-json` (the compose airflow-init runs
    this; ``up`` creates it through Airflow's API in local mode)."""
    from lambdawatch.pipelines.spark_jobs import spark_connection

    fields = spark_connection(_settings())
    fields.pop("connection_id")
    print(json.dumps(fields))  # machine-read: no rich markup


@app.command()
def check(
    service: Annotated[str, typer.Argument(help="One of: " + ", ".join(SERVICE_NAMES))],
) -> None:
    """Probe one service at the configured endpoints; exit 1 with the reason if unhealthy."""
    from lambdawatch.ops.health import check_service

    settings = _settings()
    if service not in SERVICE_NAMES:
        errors.print(f"[red]unknown service {service!r}; expected one of {SERVICE_NAMES}[/red]")
        raise typer.Exit(2)
    problem = check_service(service, settings, _secrets(settings))
    if problem:
        errors.print(problem)
        raise typer.Exit(1)
    console.print(f"{service}: ok")


@app.command()
def feed(
    source: Annotated[str, typer.Option(help="ip | server | cdn | weather")],
    rate: Annotated[
        float | None, typer.Option(help="Events/s (simulated clock runs faster; ends at now).")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 60.0,
    max_rate: Annotated[bool, typer.Option("--max-rate", help="Send as fast as possible.")] = False,
    client: Annotated[str, typer.Option(help="kafka-python | confluent")] = "kafka-python",
    hot_store: Annotated[bool, typer.Option(help="Also write IP features to Redis.")] = True,
) -> None:
    """Run a generator live into Kafka (and, for IP events, the hot store)."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from generators.registry import SOURCES, entities_per_interval, make_generator
    from lambdawatch.core.db import connect
    from lambdawatch.core.hot_store import open_hot_store, redis_client
    from lambdawatch.core.producers import make_producer
    from lambdawatch.pipelines.live_feed import plan_feed, run_feed, run_live_weather

    settings = _settings()
    if source not in SOURCES:
        errors.print(f"[red]--source must be one of {', '.join(SOURCES)}[/red]")
        raise typer.Exit(2)
    generator = make_generator(source, settings)
    natural = entities_per_interval(source, settings) * 1000 / generator.interval_ms
    plan = plan_feed(natural, rate, duration, int(time.time() * 1000), max_rate=max_rate)
    producer = make_producer(settings.kafka_bootstrap, client)  # type: ignore[arg-type]
    store = (
        open_hot_store(redis_client(settings), settings) if hot_store and source == "ip" else None
    )
    columns = (
        TextColumn(f"[bold]{source}[/bold]"),
        BarColumn(),
        TextColumn("{task.fields[sent]:>10,} events"),
        TextColumn("{task.fields[rate]:>9,.0f} ev/s"),
        TextColumn("{task.fields[labels]:>5} labels"),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
    )
    with connect(settings) as conn, Progress(*columns, console=console) as progress:
        task = progress.add_task(source, total=duration, sent=0, rate=0.0, labels=0, errors=0)

        def report(counts, elapsed: float) -> None:
            sent = sum(counts.events.values())
            progress.update(
                task,
                completed=min(elapsed, duration),
                sent=sent,
                rate=sent / elapsed if elapsed else 0.0,
                labels=counts.labels,
                errors=producer.failures,
            )

        try:
            if source == "weather" and settings.openweather_api_key is not None:
                from generators.openweather import OpenWeatherPoller

                poller = OpenWeatherPoller(
                    settings.openweather_api_key.get_secret_value(),
                    settings.openweather_url,
                    settings.openweather_calls_per_minute,
                )
                console.print(f"live weather from {settings.openweather_url}")
                totals = run_live_weather(settings, producer, poller, duration, on_progress=report)
                if poller.stats.failures:
                    console.print(
                        f"OpenWeatherMap trouble (counted, not fatal): {poller.stats.failures}"
                    )
            else:
                totals = run_feed(settings, source, producer, plan, store, conn, on_progress=report)
        finally:
            producer.close()
    console.print(
        f"sent {sum(totals.events.values()):,} {source} events, {totals.labels} anomaly labels, "
        f"{totals.hot_samples:,} hot-store samples"
    )


def _live_watermarks(settings: Settings, topic: str) -> dict[str, Any]:
    """The speed layer's watermarks for ``topic``; none when PostgreSQL is not reachable."""
    from lambdawatch.core import db
    from lambdawatch.core.pipeline_health import live_watermarks

    try:
        with db.connect(settings, _secrets(settings)) as conn:
            return live_watermarks(conn, topic)
    except Exception:  # a warning's lookup must never stop a replay
        return {}


def _backtest_hint(file: Path, source: str) -> str:
    from lambdawatch.core.catalog import DETECTOR_SOURCES

    # the detector that reads this source by default (weather: none)
    detector = next((d for d, sources in DETECTOR_SOURCES.items() if sources[0] == source), None)
    return f"lambdawatch backtest {file}" + (f" --detector {detector}" if detector else "")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header.")],
    source: SourceOption = "metric",
    topic: Annotated[
        str | None, typer.Option(help="Target topic (default: the source's topic).")
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Entity name (default: file name).")] = None,
    entity_column: Annotated[
        str | None, typer.Option(help="Take the entity from a column.")
    ] = None,
    time_column: TimeColumnOption = None,
    value_column: ValueColumnOption = None,
    speed: Annotated[float, typer.Option(help="Replay at real time × speed.")] = 1.0,
    max_rate: Annotated[bool, typer.Option("--max-rate", help="Send as fast as possible.")] = False,
    on_error: Annotated[str, typer.Option(help="skip | stop on a malformed row.")] = "stop",
    client: Annotated[str, typer.Option(help="kafka-python | confluent")] = "kafka-python",
    encoding: Annotated[str, typer.Option(help="The file's text encoding.")] = "utf-8",
    time_unit: Annotated[
        str | None, typer.Option(help="s | ms | us of epoch numbers (default: told by size).")
    ] = None,
    map_: MapOption = None,
    set_: SetOption = None,
) -> None:
    """Stream a CSV into Kafka in timestamp order, as events of --source (generic metrics by
    default)."""
    from kafka.errors import KafkaError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from generators.replay import (
        MILLIS_PER_UNIT,
        SEND_BUFFER_MB,
        OptionError,
        ReplayError,
        check_replay,
        late_warning,
        paced,
        replay_options,
        stream_replay,
        summary,
    )
    from lambdawatch.core.events import SCHEMAS
    from lambdawatch.core.kafka_admin import topic_names
    from lambdawatch.core.producers import make_producer

    settings = _settings()
    if on_error not in {"skip", "stop"}:
        errors.print("[red]--on-error must be skip or stop[/red]")
        raise typer.Exit(2)
    if speed <= 0:
        errors.print("[red]--speed must be positive[/red]")
        raise typer.Exit(2)
    if time_unit is not None and time_unit not in MILLIS_PER_UNIT:
        errors.print(f"[red]--time-unit must be one of {', '.join(MILLIS_PER_UNIT)}[/red]")
        raise typer.Exit(2)
    try:
        options = replay_options(
            source,
            map_,
            set_,
            time_column,
            value_column,
            entity_column,
            entity,
            on_error=on_error,
            encoding=encoding,
            time_unit=time_unit,
        )
    except OptionError as exc:
        errors.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        check = check_replay(file, options)  # the whole file, before anything is sent
    except ReplayError as exc:
        errors.print(
            f"[red]{file}: {exc} (nothing was sent; --on-error skip skips such rows)[/red]"
        )
        raise typer.Exit(1) from None
    target = topic or settings.topic(SCHEMAS[options.source].topic_role).name
    try:
        existing = topic_names(settings.kafka_bootstrap, timeout_s=10)
    except KafkaError as exc:
        errors.print(f"[red]cannot list Kafka's topics at {settings.kafka_bootstrap}: {exc}[/red]",
                     soft_wrap=True)  # fmt: skip
        raise typer.Exit(1) from None
    if target not in existing:
        errors.print(
            f"[red]topic {target!r} does not exist (nothing was sent); topics: "
            f"{', '.join(sorted(t for t in existing if not t.startswith('_')))}[/red]",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    warning = late_warning(check, _live_watermarks(settings, target), _backtest_hint(file, source))
    if warning:
        console.print(f"[yellow]warning: {warning}[/yellow]", soft_wrap=True)
    producer = make_producer(settings.kafka_bootstrap, client, SEND_BUFFER_MB)  # type: ignore[arg-type]
    columns = (
        TextColumn(f"[bold]{file.name}[/bold] → {target}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    began = time.monotonic()
    sent = 0
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("replay", total=check.events)
            events = stream_replay(file, options)
            for key, encoded in paced(events, None if max_rate else speed):
                producer.send(target, key.encode(), encoded, None)
                sent += 1
                if sent % 1000 == 0:
                    progress.update(task, completed=sent)
            producer.flush()
            progress.update(task, completed=sent)
    finally:
        producer.close()
    if producer.failures:
        errors.print(f"[red]{producer.failures} deliveries failed[/red]")
        raise typer.Exit(1)
    console.print(f"replayed {file.name} to {target}")
    for line in summary(check, sent, time.monotonic() - began):
        console.print(f"  {line}")
    for problem in check.examples:
        console.print(f"  skipped {problem}")


@app.command()
def backtest(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="CSV with a header (or --from/--to)."),
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Archived history from (ISO-8601 or epoch).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="… to (exclusive).")] = None,
    detector: Annotated[str, typer.Option(help="The detector to run.")] = "metric_scores",
    map_: MapOption = None,
    set_: SetOption = None,
    time_column: TimeColumnOption = None,
    value_column: ValueColumnOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Write every scored sample or window to this CSV.")
    ] = None,
    normal_mean: Annotated[
        float | None, typer.Option(help="cpu_anomalies: the normal mean for every server.")
    ] = None,
    normal_stddev: Annotated[
        float | None, typer.Option(help="cpu_anomalies: the normal σ for every server.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="silence: server | ip | cdn (default: server).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Record under this id (default: a new one); replaces it.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CSV of labelled episodes (start,end[,entity][,kind]): precision, recall and "
            "time to detect. Archived history is judged by ground_truth without it.",
        ),
    ] = None,
) -> None:
    """Run a speed-layer detector over a CSV, or over archived history (--from/--to), directly:
    the same code and verdicts as the stream. Events are the detector's source's (metric_scores:
    metric, cpu_anomalies: server, forecast_deviations: ip, cdn_clusters: cdn, silence:
    --source). A file's metric_scores, cpu_anomalies and silence need no service;
    forecast_deviations and cdn_clusters judge by the forecasts and model in PostgreSQL."""
    import uuid
    from contextlib import ExitStack
    from datetime import UTC, datetime

    from generators.replay import ReplayError
    from lambdawatch.pipelines.backtest import (
        BacktestError,
        BacktestRun,
        archive_history,
        archived_backtest,
        history_span,
        labelled,
        options_from_cli,
        record_backtest,
        run_parameters,
    )
    from lambdawatch.pipelines.backtest import (
        backtest as run_backtest,
    )
    from lambdawatch.pipelines.backtest_verdicts import verdicts_of, write_output

    settings = _settings()
    where = str(file) if file else "history"
    with ExitStack() as scratch:  # archived verdicts live on disk until the run is recorded
        try:
            if (file is None) == (from_ is None or to is None) or (file and (from_ or to)):
                raise BacktestError("give a FILE, or --from and --to for archived history")
            options = options_from_cli(
                detector, map_, set_, time_column, value_column, normal_mean, normal_stddev,
                source,
            )  # fmt: skip
            started = datetime.now(UTC)
            span = None
            if file is not None:
                verdicts = verdicts_of(run_backtest(file, options, settings))
                history = str(file.resolve())
            else:
                span = history_span(from_ or "", to or "")
                verdicts = scratch.enter_context(archived_backtest(options, settings, *span))
                history = archive_history(options, *span)
            judgement = labelled(verdicts, options, settings, labels, span)
        except (BacktestError, ReplayError) as exc:
            errors.print(f"[red]{where}: {exc}[/red]", soft_wrap=True)
            raise typer.Exit(1) from None
        written = None
        if output:
            try:
                written = write_output(verdicts, output)
            except OSError as exc:
                errors.print(f"[red]--output {output}: {exc.strerror or exc}[/red]", soft_wrap=True)
                raise typer.Exit(1) from None
        table = Table("entity", "metric", "rows", "WARN", "ERROR", "highest score")
        for row in verdicts.series.itertuples(index=False):
            table.add_row(
                str(row.entity), str(row.metric), f"{row.judged:,}", str(row.warn),
                str(row.error), f"{row.highest_score:.3f}",
            )  # fmt: skip
        console.print(table)
        if written is not None:
            console.print(f"{written:,} rows written to {output}")
        if judgement is not None:
            console.print(_judgement_line(judgement.row()))
        run = BacktestRun(
            run_id or uuid.uuid4().hex, detector, history, run_parameters(options, settings),
            started,
        )  # fmt: skip
        findings = record_backtest(settings, run, verdicts, judgement)
    if findings is None:
        console.print("PostgreSQL is not reachable: the run is not recorded in backtest_runs")
    else:
        console.print(f"recorded as backtest run {run.run_id} ({findings:,} WARN or ERROR)")


def _judgement_line(row: dict[str, Any]) -> str:
    """A run's judgement in one line; "n/a" where nothing could be judged."""

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    ttd = row["median_time_to_detect_s"]
    return (
        f"against {row['labels']}: {row['detected']}/{row['episodes']} episodes found; "
        f"WARN-or-ERROR precision {share(row['precision'])}, recall {share(row['recall'])}; "
        f"ERROR precision {share(row['error_precision'])}, recall {share(row['error_recall'])}; "
        f"median time to detect {'n/a' if ttd is None else f'{ttd:g} s'}"
    )


@app.command("fetch-jars")
def fetch_jars() -> None:
    """Resolve the JVM artifacts (Kafka) from Maven Central into the local cache."""
    from lambdawatch.ops.stack.kafka_node import resolve_classpath

    settings = _settings()
    libs = resolve_classpath(settings.root / "jvm" / "kafka" / "pom.xml")
    console.print(f"Kafka classpath: {libs} ({len(list(libs.glob('*.jar')))} jars)")


@dashboards_app.command("render")
def dashboards_render(
    output: Annotated[
        Path | None, typer.Option(help="Asset folder (default: superset/ in the project).")
    ] = None,
) -> None:
    """Render the dashboards declared in lambdawatch.ops.dashboards to Superset's YAML."""
    from lambdawatch.ops.dashboards import write

    root = output or _settings().root / "superset"
    written = write(root)
    console.print(f"{len(written)} asset files in {root}; `lambdawatch up` imports them")


@dashboards_app.command("import")
def dashboards_import() -> None:
    """Import superset/ into the running stack's Superset now (also done by ``up``)."""
    from lambdawatch.ops.stack import superset_node

    settings = _settings()
    secrets = _secrets(settings)
    with console.status("importing dashboards…"):
        superset_node.provision(settings, secrets, force=True)
    console.print(f"imported; dashboards at {settings.superset_base_url}/dashboard/list/")


IncidentId = Annotated[str, typer.Argument(help="The incident's id, or a unique prefix of it.")]


def _with_incidents(work: Any) -> Any:
    """Run ``work(conn)`` on the database; a missing incident, a refused act or an unreachable
    database exits 1 with one line."""
    import psycopg

    from lambdawatch.core import db
    from lambdawatch.pipelines.incidents import IncidentError

    settings = _settings()
    try:
        with db.connect(settings, _secrets(settings)) as conn:
            return work(conn)
    except IncidentError as exc:
        errors.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        errors.print(f"[red]cannot reach PostgreSQL: {escape(first)}[/red]")
        raise typer.Exit(1) from None


@incidents_app.command("list")
def incidents_list(
    state: Annotated[
        str | None, typer.Option(help="open | acknowledged | resolved (default: all).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """Incidents, active first; says so when there are none."""
    from lambdawatch.pipelines.incidents import list_incidents

    rows = _with_incidents(lambda conn: list_incidents(conn, state, limit))
    if not rows:
        console.print("no incidents" + (f" {state}" if state else ""))
        return
    table = Table(title="incidents")
    for column in ("id", "state", "severity", "scope", "last seen", "findings", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["incident_id"][:8],
            row["state"],
            row["severity"],
            row["scope"],
            f"{row['last_seen']:%Y-%m-%d %H:%M:%S}",
            str(row["members"]),
            escape(row["summary"]),
        )
    console.print(table)


@incidents_app.command("show")
def incidents_show(incident_id: IncidentId) -> None:
    """An incident, its strongest findings and its history."""
    from lambdawatch.pipelines.incidents import incident_details

    incident = _with_incidents(lambda conn: incident_details(conn, incident_id))
    console.print(f"[bold]{incident['incident_id']}[/bold]  {escape(incident['summary'])}")
    for name in ("state", "severity", "scope", "first_seen", "last_seen", "resolved_by"):
        console.print(f"  {name}: {incident[name]}")
    console.print(f"  entities: {', '.join(incident['entities'])}")
    console.print(f"  detectors: {', '.join(incident['detectors'])}")
    if incident["false_positive"]:
        console.print(f"  false positive: {escape(incident['feedback'] or '(no reason given)')}")
    findings = Table(title=f"findings ({incident['members']}; strongest first)")
    for column in ("detector", "entity", "metric", "window", "value", "expected", "score", "sev"):
        findings.add_column(column)
    for f in incident["findings"]:
        findings.add_row(
            f["detector"],
            f["entity"],
            f["metric"],
            f"{f['window_start']:%Y-%m-%d %H:%M:%S}",
            *(f"{f[k]:.4g}" if f[k] is not None else "-" for k in ("value", "expected", "score")),
            f["severity"],
        )
    console.print(findings)
    for t in incident["transitions"]:
        note = f" ({escape(t['note'])})" if t["note"] else ""
        console.print(f"  {t['at']:%Y-%m-%d %H:%M:%S} {t['transition']} by {t['by_whom']}{note}")


def _act(
    incident_id: str, action: Any, reason: str | None = None, suppress_for: str | None = None
) -> None:
    from datetime import UTC, datetime

    from lambdawatch.pipelines.incidents import act_on_incident, parse_duration

    def act(conn: Any) -> Any:
        muted = parse_duration(suppress_for) if suppress_for is not None else None
        return act_on_incident(conn, incident_id, action, datetime.now(UTC), reason, muted)

    incident = _with_incidents(act)
    summary = escape(incident["summary"])
    console.print(f"{incident['incident_id']} is {incident['state']}: {summary}")


@incidents_app.command("ack")
def incidents_ack(incident_id: IncidentId) -> None:
    """Acknowledge an open incident: someone is on it."""
    _act(incident_id, "acknowledged")


@incidents_app.command("resolve")
def incidents_resolve(incident_id: IncidentId) -> None:
    """Resolve an incident now; new findings open a new one."""
    _act(incident_id, "resolved")


@incidents_app.command("false-positive")
def incidents_false_positive(
    incident_id: IncidentId,
    reason: Annotated[str | None, typer.Option(help="Why it was not an incident.")] = None,
    suppress_for: Annotated[
        str | None,
        typer.Option(
            help="Also mute anomalies like its findings for this long (90s, 30m, 2h, 7d): "
            "kept and flagged, but in no incident."
        ),
    ] = None,
) -> None:
    """Mark an incident a false positive (any state): it is resolved and kept, flagged, and
    its span is left out of the next baseline, model and forecast training."""
    _act(incident_id, "false positive", reason, suppress_for)


@config_app.command("check")
def config_check() -> None:
    """Validate config.json and .env; exit 2 naming every bad field."""
    settings = _settings()
    console.print(
        f"config ok: {len(settings.topics)} topics, {len(settings.ips.resolved_addresses)} IPs, "
        f"Kafka at {settings.kafka_bootstrap}"
    )


@config_app.command("show")
def config_show() -> None:
    """Print the resolved settings (secrets excluded), including the IP→partition map."""
    settings = _settings()
    data = settings.model_dump(mode="json", exclude={"openweather_api_key"})
    data["ip_partitions"] = settings.ip_partitions
    console.print_json(json.dumps(data))


def main() -> None:
    """The ``lambdawatch`` command: a setting or secret missing or invalid (one a step reads
    late, e.g. a container not given it) is a one-line error and exit 2, not a traceback."""
    try:
        app()
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
