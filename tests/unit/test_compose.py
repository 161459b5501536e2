"""docker-compose.yml, checked where no Docker engine runs: against the compose specification's
JSON schema, and against the code, which must find in each container what it reads locally.

The environment a container gets is computed as compose would (interpolation from an env file
that ``lambdawatch secrets`` generates), then loaded through the same settings and secrets
objects, and compared with what the local stack gives its own processes.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from check_jsonschema import builtin_schemas

from lambdawatch.core.secrets import GENERATORS, Secrets, ensure_secrets_file, secrets_for
from lambdawatch.core.settings import Settings, load_settings
from lambdawatch.ops.cli import SERVICE_NAMES, app
from lambdawatch.ops.health import SERVICES as PROBES
from lambdawatch.ops.stack.airflow_node import airflow_environment
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.ops.stack.superset_node import superset_environment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
RAW = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved, variables not yet
SERVICES: dict[str, Any] = RAW["services"]
ONE_SHOT = {name for name, spec in SERVICES.items() if spec.get("restart") == "no"}
DEFAULT_PROFILE = {name for name, spec in SERVICES.items() if not spec.get("profiles")}
LAMBDAWATCH_SERVICES = (
    "lambdawatch-init",
    "speed-layer",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
AIRFLOW_SERVICES = tuple(name for name in LAMBDAWATCH_SERVICES if name.startswith("airflow"))
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


class MissingVariableError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$`` → ``$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = env.get(name, "")
        if op == ":?" and not given:
            raise MissingVariableError(f"required variable {name} is missing a value: {arg}")
        if op == ":-" and not given:
            return str(arg)
        return given

    parts = value.split("$$")
    return "$".join(VARIABLE.sub(replace, part) for part in parts)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What ``lambdawatch secrets --output var/compose.env`` writes."""
    path = ensure_secrets_file(tmp_path_factory.mktemp("compose") / "compose.env")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


@pytest.fixture(scope="module")
def compose(env_file: dict[str, str]) -> dict[str, Any]:
    return interpolate(RAW, env_file)  # type: ignore[no-any-return]


def container_loader(monkeypatch: pytest.MonkeyPatch, compose: dict[str, Any]) -> Any:
    """Settings and secrets as a service's container loads them (no .env in the image)."""
    names = {name.upper() for name in Settings.model_fields} | set(GENERATORS)
    names |= {
        "LAMBDAWATCH_VAR_DIR",
        "LAMBDAWATCH_CONFIG",
        "LAMBDAWATCH_ENV_FILE",
        "LAMBDAWATCH_ROOT",
    }
    for variable in list(os.environ):
        if variable.upper() in names or "__" in variable:
            monkeypatch.delenv(variable)

    def load(service: str) -> tuple[Settings, Any, dict[str, str]]:
        env = {
            key: str(value) for key, value in compose["services"][service]["environment"].items()
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(config_path=ROOT / "config.json", env_path=ROOT / "absent.env")
        return settings, secrets_for(settings), env

    return load


@pytest.fixture
def container_settings(monkeypatch: pytest.MonkeyPatch, compose: dict[str, Any]) -> Any:
    return container_loader(monkeypatch, compose)


# The secrets each container is given: only those it uses (least privilege).
SETUP = {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "SUPERSET_DB_PASSWORD"}
SETUP |= {"SPEED_LAYER_DB_PASSWORD", "BATCH_DB_PASSWORD"}
AIRFLOW = {"AIRFLOW_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_FERNET_KEY"}
AIRFLOW |= {"AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "BATCH_DB_PASSWORD", "REDIS_PASSWORD"}
SUPERSET = {"SUPERSET_SECRET_KEY", "SUPERSET_DB_PASSWORD", "SUPERSET_ADMIN_PASSWORD"}
SUPERSET |= {"REDIS_PASSWORD"}
SECRETS_GIVEN = {
    "lambdawatch-init": SETUP,
    "speed-layer": {"SPEED_LAYER_DB_PASSWORD", "INCIDENT_WEBHOOK_SECRET"},
    **dict.fromkeys(AIRFLOW_SERVICES, AIRFLOW),
    "superset-init": SUPERSET,
    "superset": SUPERSET,
    "redis": {"REDIS_PASSWORD"},
    "postgres": {"POSTGRES_PASSWORD"},
}


def every_secret(env_file: dict[str, str]) -> Secrets:
    return Secrets(**{key.lower(): value for key, value in env_file.items()})


def _container_port(service: str) -> set[int]:
    """Ports a service listens on inside the network (its published targets and listeners)."""
    spec = SERVICES[service]
    ports = {int(str(entry).rsplit(":", 1)[-1]) for entry in spec.get("ports", [])}
    for listener in str(spec.get("environment", {}).get("KAFKA_LISTENERS", "")).split(","):
        if listener:
            ports.add(int(listener.rsplit(":", 1)[-1]))
    command = [str(part) for part in spec.get("command", [])]
    for flag in ("--port", "--bind"):
        if flag in command:
            ports.add(int(command[command.index(flag) + 1].rsplit(":", 1)[-1]))
    return ports


def test_the_file_follows_the_compose_specification() -> None:
    schema_file = importlib.resources.files(builtin_schemas).joinpath("vendor/compose-spec.json")
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(RAW, schema)  # raises with the offending path


def test_missing_secrets_fail_with_the_variable_named_and_the_fix() -> None:
    with pytest.raises(MissingVariableError, match=r"POSTGRES_PASSWORD.*lambdawatch secrets"):
        interpolate(RAW, {})


def test_no_secret_is_written_in_the_file() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required == set(GENERATORS), "every generated secret, and only those, is required"
    secretive = re.compile(r"PASSWORD$|SECRET|FERNET|_KEY$")
    for name, spec in SERVICES.items():
        for key, value in (spec.get("environment") or {}).items():
            if secretive.search(key) or ("://" in str(value) and "@" in str(value)):
                assert "${" in str(value), f"{name}.{key} holds a literal secret"


def test_every_image_is_pinned_and_no_bitnami() -> None:
    for name, spec in SERVICES.items():
        image = spec["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image}"
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
        assert "bitnami" not in image
    for dockerfile in sorted((ROOT / "deploy").glob("*.Dockerfile")):
        bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        assert bases, dockerfile
        for base in bases:
            assert re.search(r":\d+\.\d+", base), (dockerfile, base)
            assert "bitnami" not in base
    core = (ROOT / "deploy" / "lambdawatch.Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*slim", core, re.MULTILINE)
    assert "openjdk-17" in core


def test_long_running_services_have_healthchecks_and_wait_for_healthy_dependencies() -> None:
    for name, spec in SERVICES.items():
        if name not in ONE_SHOT:
            assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in (spec.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition == {"condition": expected}, (name, dependency)


def test_state_lives_in_named_volumes_and_ports_bind_to_loopback(
    compose: dict[str, Any],
) -> None:
    declared = set(RAW["volumes"])
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert source in declared, f"{name}: {volume} is not a named volume"
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert interpolate(
        RAW, {**dict.fromkeys(GENERATORS, "x"), "LAMBDAWATCH_BIND_ADDRESS": "0.0.0.0"}
    )["services"]["superset"]["ports"] == ["0.0.0.0:8088:8088"]  # opt-in, not default


def _megabytes(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([MG])", text).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "G" else 1)


def test_the_always_on_services_fit_in_8_gib() -> None:
    limits = {}
    for name in DEFAULT_PROFILE - ONE_SHOT:
        memory = SERVICES[name].get("deploy", {}).get("resources", {}).get("limits", {})
        assert "memory" in memory, f"{name} has no memory limit"
        limits[name] = _megabytes(memory["memory"])
    assert sum(limits.values()) <= 8 * 1024, limits
    worker = SERVICES["spark-worker"]["command"]
    worker_memory = _megabytes(worker[worker.index("--memory") + 1].upper())
    assert worker_memory < limits["spark-worker"]  # executors fit inside the container


@pytest.mark.parametrize("service", LAMBDAWATCH_SERVICES)
def test_lambdawatch_processes_find_every_endpoint_they_read(
    service: str, container_settings: Any
) -> None:
    settings, secrets, _ = container_settings(service)
    assert settings.stack_mode == "distributed"
    assert str(settings.root) == "/opt/lambdawatch"
    for name in SECRETS_GIVEN[service]:  # present, none generated
        assert getattr(secrets, name.lower()).get_secret_value() == os.environ[name]
    endpoints = {
        "postgres": (settings.postgres_host, settings.postgres_port),
        "redis": (settings.redis_host, settings.redis_port),
        "spark-master": tuple(settings.spark_master.removeprefix("spark://").split(":")),
        "airflow-api-server": tuple(settings.airflow_base_url.split("//")[1].split(":")),
        "superset": tuple(settings.superset_base_url.split("//")[1].split(":")),
    }
    for broker in settings.kafka_bootstrap.split(","):
        host, port = broker.split(":")
        endpoints[host] = (host, port)
    for target, (host, port) in endpoints.items():
        assert host in SERVICES, f"{service}: {host} is not a service"
        assert int(port) in _container_port(host), f"{service}: nothing on {host}:{port}"
        del target


@pytest.mark.parametrize("service", ["speed-layer", "airflow-scheduler"])
def test_spark_drivers_are_reachable_by_the_executors(
    service: str, container_settings: Any
) -> None:
    settings, _, _ = container_settings(service)
    assert not settings.spark_is_local
    assert settings.driver_host == SERVICES[service]["hostname"]
    assert settings.bind_host == "0.0.0.0"
    shared = {str(v).split(":")[0] for v in SERVICES["spark-worker"]["volumes"]}
    mine = {str(v).split(":")[0] for v in SERVICES[service]["volumes"]}
    assert "lambdawatch-state" in shared & mine  # checkpoints and models where both see them
    assert str(settings.models_path).startswith("/var/lib/lambdawatch/")


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_containers_get_what_the_local_processes_get(
    service: str, container_settings: Any
) -> None:
    settings, secrets, env = container_settings(service)
    expected = airflow_environment(settings, secrets)
    expected.pop("PATH")  # the image's own
    assert {key: env.get(key) for key in expected} == expected


def test_superset_containers_get_what_the_local_process_gets(
    compose: dict[str, Any], container_settings: Any, env_file: dict[str, str]
) -> None:
    settings, _, _ = container_settings("lambdawatch-init")
    expected = superset_environment(settings, every_secret(env_file))
    for key in ("PATH", "SUPERSET_HOME", "SUPERSET_CONFIG_PATH"):  # the image's own layout
        expected.pop(key)
    for service in ("superset-init", "superset"):
        env = compose["services"][service]["environment"]
        assert {key: env.get(key) for key in expected} == expected, service
        assert env["SUPERSET_CONFIG_PATH"].endswith("/superset/superset_config.py")
    init = compose["services"]["superset-init"]["command"][0]
    assert f"--admin {settings.superset_admin_user}" in init


def test_the_same_entry_points_run_in_both_modes(
    container_settings: Any, env_file: dict[str, str]
) -> None:
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}  # type: ignore[union-attr]
    for name, spec in SERVICES.items():
        words = shlex.split(" ".join(str(part) for part in spec.get("command", [])))
        for index, word in enumerate(words):
            if word == "lambdawatch":
                assert words[index + 1] in commands, f"{name}: lambdawatch {words[index + 1]}"
        healthcheck = spec.get("healthcheck", {}).get("test", [])
        if "lambdawatch" in healthcheck:
            assert healthcheck[healthcheck.index("lambdawatch") + 1] in commands
    assert SERVICE_NAMES == PROBES  # `lambdawatch check` offers exactly what it can probe
    local_settings = load_settings(config_path=ROOT / "config.json")
    local = LocalStack(local_settings, every_secret(env_file))
    program = local._speed_layer_program()
    assert program.command[1:] == SERVICES["speed-layer"]["command"][1:]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_container_is_given_only_the_secrets_it_uses(
    service: str, compose: dict[str, Any], env_file: dict[str, str]
) -> None:
    """A secret counts as given when its value is anywhere in the container's environment or
    command (a URL embeds a password)."""
    spec = compose["services"][service]
    given = json.dumps([spec.get("environment", {}), spec.get("command", [])])
    secret_values = {name: value for name, value in env_file.items() if name in GENERATORS}
    assert {name for name, value in secret_values.items() if value in given} == SECRETS_GIVEN.get(
        service, set()
    )


REPLICATED_ENV = ROOT / "deploy" / "replicated.env"


def test_the_replicated_profile_runs_three_voting_nodes_and_replicates_every_topic(
    env_file: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/replicated.env: three broker+controller nodes, each a voter; Kafka's internal
    topics and ours at RF 3 with min.insync.replicas 2; clients bootstrap from every node."""
    lines = REPLICATED_ENV.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    replicated = dict(pairs)
    compose = interpolate(RAW, {**env_file, **replicated})
    profiles = set(replicated["COMPOSE_PROFILES"].split(","))
    nodes = {
        name: spec["environment"]
        for name, spec in compose["services"].items()
        if name.startswith("kafka-")
        and (not spec.get("profiles") or profiles & set(spec["profiles"]))
    }
    assert set(nodes) == {"kafka-1", "kafka-2", "kafka-3"}
    voters = {}
    for name, env in nodes.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        controller = next(
            int(listener.rsplit(":", 1)[1])
            for listener in env["KAFKA_LISTENERS"].split(",")
            if listener.startswith("CONTROLLER://")
        )
        voters[f"{env['KAFKA_NODE_ID']}@{name}:{controller}"] = name
        for key in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
            assert env[f"KAFKA_{key}_REPLICATION_FACTOR"] == "3", (name, key)
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    for env in nodes.values():  # one quorum, naming exactly these nodes
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == set(voters)
    assert len({env["KAFKA_NODE_ID"] for env in nodes.values()}) == 3
    for name in nodes:  # no node waits on another: a quorum forms only once two are up
        assert "depends_on" not in compose["services"][name] or name == "kafka-1"

    settings, _, _ = container_loader(monkeypatch, compose)("speed-layer")
    assert set(settings.kafka_bootstrap.split(",")) == {f"{n}:9092" for n in nodes}
    assert {(t.replication_factor, t.min_insync_replicas) for t in settings.kafka_topics} == {
        (3, 2)
    }
