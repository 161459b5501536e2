"""The ``lambdawatch`` command line: run the local stack and operate the platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lambdawatch.secrets import ensure_secrets_file
from lambdawatch.settings import ConfigError, Settings, load_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Inspect and validate config.json and .env.")
app.add_typer(config_app, name="config")
console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
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


@app.command()
def up(only: ComponentsOption = None) -> None:
    """Start the local stack (idempotent) and wait until every component is healthy."""
    from lambdawatch.stack.local import LocalStack

    settings = _settings()
    if settings.stack_mode == "distributed":
        console.print("STACK_MODE=distributed: nothing to start locally; checking endpoints.")
        status()
        return
    stack = LocalStack(settings)
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


@app.command()
def down() -> None:
    """Stop everything ``up`` started (and only that)."""
    from lambdawatch.stack.local import LocalStack

    LocalStack(_settings()).down()
    console.print("local stack stopped")


@app.command()
def status() -> None:
    """Components, health, pid, port and memory."""
    from lambdawatch.stack.local import LocalStack

    stack = LocalStack(_settings())
    if not _print_status(stack):
        raise typer.Exit(1)


def _print_status(stack: object) -> bool:
    from lambdawatch.stack.local import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title="lambdawatch local stack")
    for column in ("component", "state", "health", "pid", "port", "memory"):
        table.add_column(column)
    rows = stack.status()
    for row in rows:
        health = "[green]ok[/green]" if row.healthy else f"[red]{row.detail}[/red]"
        table.add_row(
            row.name,
            row.state,
            health,
            str(row.pid or "-"),
            str(row.port),
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


@app.command("fetch-jars")
def fetch_jars() -> None:
    """Resolve the JVM artifacts (Kafka) from Maven Central into the local cache."""
    from lambdawatch.stack.kafka_node import resolve_classpath

    settings = _settings()
    libs = resolve_classpath(settings.root / "jvm" / "kafka" / "pom.xml")
    console.print(f"Kafka classpath: {libs} ({len(list(libs.glob('*.jar')))} jars)")


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


if __name__ == "__main__":
    app()
