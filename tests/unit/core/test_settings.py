"""Settings: the shipped config loads; each kind of mistake fails naming its field."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambdawatch.core.kafka_admin import topic_configs
from lambdawatch.core.secrets import GENERATORS, ensure_secrets_file, load_secrets, secrets_for
from lambdawatch.core.settings import (
    KAFKA_RECORD_OVERHEAD_BYTES,
    ConfigError,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[3]
BASE_CONFIG = json.loads((ROOT / "config.json").read_text())

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests read only their own files: drop any variable a shell or the session
    stack fixture exported (ports, var dir), or it would override the .env under test."""
    names = {name.upper() for name in Settings.model_fields}
    names |= {"LAMBDAWATCH_VAR_DIR", "LAMBDAWATCH_CONFIG", "LAMBDAWATCH_ENV_FILE"}
    for variable in list(os.environ):
        if variable.upper() in names or "__" in variable:
            monkeypatch.delenv(variable)


def _write(tmp_path: Path, config: dict[str, Any], env: str = "") -> tuple[Path, Path]:
    config_path, env_path = tmp_path / "config.json", tmp_path / ".env"
    config_path.write_text(json.dumps(config))
    env_path.write_text(env)
    return config_path, env_path


def _mutated(mutation: Mutation) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    mutation(config)
    return config


def _set(path: str, value: Any) -> Mutation:
    def apply(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _drop_topic(role: str) -> Mutation:
    def apply(config: dict[str, Any]) -> None:
        config["topics"] = [t for t in config["topics"] if t["role"] != role]

    return apply


def test_shipped_config_and_env_load() -> None:
    settings = load_settings(ROOT / "config.json", ROOT / ".env")
    assert settings.topic("ip_events").partitions == 8
    assert len(settings.ips.resolved_addresses) == settings.ips.count
    assert settings.kafka_bootstrap == f"127.0.0.1:{settings.kafka_port}"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_set("topics.2.partitions", 0), "topics[2].partitions: must be >= 1"),
        (_set("topics.0.name", "bad name!"), "topics[0].name: must match"),
        (_set("topics.1.role", "nonsense"), "topics[1].role: must be one of"),
        (_set("topics.3.retention_ms", "a week"), "topics[3].retention_ms: input should be"),
        (_drop_topic("dead_letters"), "topics: no topic with role 'dead_letters'"),
        (_set("topics.1.name", "ip-events"), "topics[1].name: duplicate topic name 'ip-events'"),
        (_set("ips.cidr", "300.1.0.0/16"), "ips.cidr: not a CIDR network"),
        (_set("ips.addresses.1", "not-an-ip"), "ips.addresses: item 1 is not an IP address"),
        (_set("ips.features", ["unq_dst_ip", "colour"]), "ips.features: unknown feature(s)"),
        (
            _set("ips.partition_map", {"198.18.0.10": 8}),
            "ips.partition_map.198.18.0.10: partition 8 does not exist",
        ),
        (_set("ips.partition_map", {"203.0.113.9": 0}), "ips: partition_map names IPs"),
        (
            _set("hot_store.key_template", "ts:{ip}"),
            "hot_store.key_template: must contain {feature}",
        ),
        (_set("schedules.feed_events", "every 5 minutes"), "schedules.feed_events: not a cron"),
        (_set("models.kmeans.k", 1), "models.kmeans.k: must be >= 2"),
        (
            _set("models.cpu_anomaly.error_sigma", 0.5),
            "models.cpu_anomaly: error_sigma must be greater than warn_sigma",
        ),
        (_set("models.prophet.interval_width", 1.5), "models.prophet.interval_width: must be < 1"),
        (_set("generators.colour", "blue"), "generators.colour: unknown field"),
        (_set("topics.0.max_message_bytes", 100), "topics[0].max_message_bytes: must be >= 16384"),
        (_set("dead_letters.max_raw_bytes", 10), "dead_letters.max_raw_bytes: must be >= 1024"),
        (
            _set("dead_letters.max_raw_bytes", 1_000_000),
            "topics[12].max_message_bytes: 1048576 is below the largest dead letter",
        ),
        (_set("tpoics", []), "tpoics: unknown field"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, mutation: Mutation, expected: str) -> None:
    config_path, env_path = _write(tmp_path, _mutated(mutation))
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path, env_path)
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("KAFKA_PORT=abc\n", "KAFKA_PORT: input should be a valid integer"),
        ("REDIS_PORT=70000\n", "REDIS_PORT: must be <= 65535"),
        ("STACK_MODE=cloud\n", "STACK_MODE: must be one of"),
        ("NORMAL_STDDEV=0\n", "NORMAL_STDDEV: must be > 0"),
        ("POSTGRES_DB=Bad-Name\n", "POSTGRES_DB: must match"),
        ("REDIS_PORT=19092\n", "REDIS_PORT: port 19092 is already used by KAFKA_PORT"),
        ("KAFAK_PORT=1\n", "kafak_port: unknown field"),
    ],
)
def test_invalid_env_names_the_variable(tmp_path: Path, env: str, expected: str) -> None:
    config_path, env_path = _write(tmp_path, BASE_CONFIG, env)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path, env_path)
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )


def test_malformed_json_is_reported(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text('{"topics": [')
    with pytest.raises(ConfigError, match=r"config\.json"):
        load_settings(config_path, tmp_path / ".env")


def test_environment_overrides_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path, env_path = _write(tmp_path, BASE_CONFIG, "REDIS_PORT=16000\n")
    assert load_settings(config_path, env_path).redis_port == 16000
    monkeypatch.setenv("REDIS_PORT", "16001")
    monkeypatch.setenv("MODELS__KMEANS__K", "7")
    settings = load_settings(config_path, env_path)
    assert settings.redis_port == 16001
    assert settings.models.kmeans.k == 7


def test_ip_partition_map_is_deterministic_balanced_and_honours_pins(tmp_path: Path) -> None:
    config_path, env_path = _write(tmp_path, BASE_CONFIG)
    first = load_settings(config_path, env_path).ip_partitions
    second = load_settings(config_path, env_path).ip_partitions
    assert first == second
    partitions = BASE_CONFIG["topics"][0]["partitions"]
    for ip, partition in BASE_CONFIG["ips"]["partition_map"].items():
        assert first[ip] == partition
    counts = [list(first.values()).count(p) for p in range(partitions)]
    assert max(counts) - min(counts) <= len(BASE_CONFIG["ips"]["partition_map"]) + 1
    assert len(first) == BASE_CONFIG["ips"]["count"]


def test_secrets_generated_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secrets.env"
    first = load_secrets(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "*" in str(first.postgres_password)  # never printed in clear
    second = load_secrets(path)
    assert first.postgres_password.get_secret_value() == second.postgres_password.get_secret_value()
    assert (
        first.superset_secret_key.get_secret_value() != first.airflow_jwt_secret.get_secret_value()
    )


def test_secrets_file_gains_missing_keys_and_keeps_existing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("POSTGRES_PASSWORD=kept-value\n")
    ensure_secrets_file(path)
    text = path.read_text()
    assert "POSTGRES_PASSWORD=kept-value" in text
    for key in GENERATORS:
        assert f"{key}=" in text


def test_distributed_mode_takes_secrets_from_the_environment_and_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in GENERATORS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LAMBDAWATCH_VAR_DIR", str(tmp_path))
    settings = load_settings(stack_mode="distributed")
    monkeypatch.setenv("POSTGRES_PASSWORD", "from-the-deployment")
    given_one = secrets_for(settings)  # a container holds only the secrets it uses
    assert given_one.postgres_password.get_secret_value() == "from-the-deployment"
    with pytest.raises(ConfigError) as error:
        given_one.airflow_fernet_key.get_secret_value()  # named when a step reads it
    assert "AIRFLOW_FERNET_KEY: is required" in str(error.value)
    assert "POSTGRES_PASSWORD" not in str(error.value)
    assert "from-the-deployment" not in repr(given_one)
    assert not (tmp_path / "secrets.env").exists()  # no per-container random passwords
    for key in GENERATORS:
        monkeypatch.setenv(key, f"{key.lower()}-value")
    assert secrets_for(settings).postgres_password.get_secret_value() == "postgres_password-value"
    local = load_settings()
    assert secrets_for(local).airflow_fernet_key.get_secret_value() == "airflow_fernet_key-value"
    assert (tmp_path / "secrets.env").exists()  # local mode generates the file on first use


def test_every_producer_and_topic_size_comes_from_config(tmp_path: Path) -> None:
    """Records are held to their own topic's limit; a producer is sized for the largest topic
    it writes; the largest dead letter fits the dead-letter topic."""
    config = json.loads(json.dumps(BASE_CONFIG))
    config["topics"][1]["max_message_bytes"] = 8 * 1024 * 1024
    settings = load_settings(*_write(tmp_path, config))
    events, dead = settings.topics[1], settings.topic("dead_letters")
    assert settings.record_limit(events.name) == 8 * 1024 * 1024 - KAFKA_RECORD_OVERHEAD_BYTES
    assert settings.record_limit(dead.name) == 1024 * 1024 - KAFKA_RECORD_OVERHEAD_BYTES
    assert settings.producer_max_request_bytes(dead.name) == 1024 * 1024
    assert settings.producer_max_request_bytes(dead.name, events.name) == 8 * 1024 * 1024
    assert settings.dead_letter_max_bytes <= dead.max_message_bytes
    assert topic_configs(events)["max.message.bytes"] == str(8 * 1024 * 1024)


def test_replication_factor_override_applies_to_every_topic() -> None:
    settings = load_settings(kafka_replication_factor=2)
    assert {topic.replication_factor for topic in settings.kafka_topics} == {2}
    assert [t.name for t in settings.kafka_topics] == [t.name for t in settings.topics]
    assert load_settings().kafka_topics == list(load_settings().topics)


def test_a_replicated_cluster_sets_every_topic_s_write_quorum() -> None:
    settings = load_settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    assert {(t.replication_factor, t.min_insync_replicas) for t in settings.kafka_topics} == {
        (3, 2)
    }
    assert {topic_configs(t)["min.insync.replicas"] for t in settings.kafka_topics} == {"2"}
    with pytest.raises(ConfigError, match="KAFKA_MIN_INSYNC_REPLICAS: 2 exceeds"):
        load_settings(kafka_min_insync_replicas=2)  # one replica cannot make a quorum of two


def test_the_cluster_profile_derives_three_nodes_a_standalone_master_and_rf_3() -> None:
    settings = load_settings(stack_profile="cluster")
    ports = [port for _, port, _ in settings.kafka_nodes]
    assert [node for node, _, _ in settings.kafka_nodes] == [1, 2, 3]
    assert settings.kafka_bootstrap == ",".join(f"{settings.bind_host}:{p}" for p in ports)
    assert settings.spark_master_url == f"spark://{settings.bind_host}:{settings.spark_master_port}"
    assert not settings.spark_is_local
    assert {(t.replication_factor, t.min_insync_replicas) for t in settings.kafka_topics} == {
        (3, 2)
    }
    given = load_settings(stack_profile="cluster", spark_master="spark://elsewhere:7077")
    assert given.spark_master_url == "spark://elsewhere:7077"  # an explicit master wins
    single = load_settings()
    assert single.kafka_bootstrap == f"{single.bind_host}:{single.kafka_port}"
    assert single.spark_master_url == "local[*]"


def test_the_cluster_profile_s_ports_must_not_collide() -> None:
    with pytest.raises(ConfigError, match="KAFKA_PORT_2: port 19092 is already used by KAFKA_PORT"):
        load_settings(stack_profile="cluster", kafka_port_2=19092)


def test_an_unknown_starting_offset_is_refused_by_its_variable() -> None:
    with pytest.raises(ConfigError, match="SPEED_LAYER_STARTING_OFFSETS: must be one of"):
        load_settings(speed_layer_starting_offsets="middle")
