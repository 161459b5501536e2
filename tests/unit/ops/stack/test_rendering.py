"""Pure rendering of service configs: what supervisord, Kafka and Redis are told to do."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from lambdawatch.core.db import discover_migrations
from lambdawatch.core.secrets import load_secrets
from lambdawatch.core.settings import load_settings
from lambdawatch.ops.stack.kafka_node import render_server_properties
from lambdawatch.ops.stack.local import INFRASTRUCTURE, LocalStack, infrastructure, start_waves
from lambdawatch.ops.stack.redis_node import render_redis_conf
from lambdawatch.ops.stack.supervisor import ProgramSpec, SupervisorPaths, render_supervisord_conf

ROOT = Path(__file__).resolve().parents[4]


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_supervisord_conf_declares_each_program_without_autostart(tmp_path: Path) -> None:
    programs = [
        ProgramSpec(
            name="postgres",
            command=["/usr/bin/postgres", "-c", "unix_socket_directories="],
            directory=tmp_path,
            user="postgres",
            stop_signal="INT",
        ),
        ProgramSpec(name="redis", command=["redis-server", "a b.conf"], directory=tmp_path),
    ]
    parsed = _parse(render_supervisord_conf(SupervisorPaths(tmp_path), programs))
    assert parsed["unix_http_server"]["file"] == str(tmp_path / "run" / "supervisor.sock")
    postgres = parsed["program:postgres"]
    assert postgres["autostart"] == "false"
    assert postgres["user"] == "postgres"
    assert postgres["stopsignal"] == "INT"
    assert postgres["stdout_logfile"] == str(tmp_path / "log" / "postgres.log")
    assert shlex.split(parsed["program:redis"]["command"]) == ["redis-server", "a b.conf"]
    assert "user" not in parsed["program:redis"]


def test_supervisord_conf_escapes_percent_and_quotes_in_environment(tmp_path: Path) -> None:
    program = ProgramSpec(
        name="x",
        command=["echo", "100%"],
        directory=tmp_path,
        environment={"A": 'say "hi" 50%'},
    )
    section = _parse(render_supervisord_conf(SupervisorPaths(tmp_path), [program]))["program:x"]
    assert section["command"] == "echo 100%%"  # supervisord expands %(...)s, so % is doubled
    assert section["environment"] == 'A="say \\"hi\\" 50%%"'


def test_kafka_properties_are_kraft_combined_and_never_auto_create(tmp_path: Path) -> None:
    text = render_server_properties(1, "127.0.0.1", 9092, 9093, tmp_path / "data")
    properties = dict(line.split("=", 1) for line in text.splitlines())
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["log.dirs"] == str(tmp_path / "data")


def test_a_cluster_node_votes_with_the_others_and_replicates_kafka_s_own_topics(
    tmp_path: Path,
) -> None:
    voters = [(1, 9093), (2, 9193), (3, 9293)]
    text = render_server_properties(2, "127.0.0.1", 9192, 9193, tmp_path / "data", voters)
    properties = dict(line.split("=", 1) for line in text.splitlines())
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    )
    assert "controller.quorum.bootstrap.servers" not in properties  # a static quorum
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    for topic in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert properties[f"{topic}.replication.factor"] == "3"
    assert properties["transaction.state.log.min.isr"] == "2"


def test_the_cluster_profile_starts_kafka_and_spark_before_the_speed_layer(
    tmp_path: Path,
) -> None:
    settings = load_settings(stack_profile="cluster")
    stack = LocalStack(settings, load_secrets(tmp_path / "secrets.env"))
    stack_names = [[c.name for c in wave] for wave in start_waves(stack.components)]
    first = set(stack_names[0])
    assert {"kafka-1", "kafka-2", "kafka-3", "spark-master"} <= first  # a quorum starts at once
    assert "kafka" not in {name for wave in stack_names for name in wave}
    speed_layer_wave = next(i for i, w in enumerate(stack_names) if "speed-layer" in w)
    workers_wave = next(i for i, w in enumerate(stack_names) if "spark-worker-1" in w)
    assert workers_wave < speed_layer_wave
    assert infrastructure(settings) == (
        "postgres", "redis", "kafka-1", "kafka-2", "kafka-3",
        "spark-master", "spark-worker-1", "spark-worker-2",
    )  # fmt: skip
    assert infrastructure(load_settings()) == INFRASTRUCTURE


def test_redis_conf_persists_with_aof(tmp_path: Path) -> None:
    lines = dict(
        line.split(" ", 1)
        for line in render_redis_conf("127.0.0.1", 6380, tmp_path, "pw-1").splitlines()
    )
    assert lines["appendonly"] == "yes"
    assert lines["appendfsync"] == "everysec"
    assert lines["bind"] == "127.0.0.1"
    assert lines["daemonize"] == "no"
    assert lines["requirepass"] == '"pw-1"'


def test_shipped_migrations_are_ordered_and_named(tmp_path: Path) -> None:
    migrations = discover_migrations(ROOT / "sql")
    assert migrations, "sql/ holds no migrations"
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["001_a.sql", "create_b.sql"], "migration names must look like"),
        (["001_a.sql", "001_b.sql"], "two migrations share a number"),
    ],
)
def test_bad_migration_sets_are_rejected(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ValueError, match=message):
        discover_migrations(tmp_path)


def test_every_speed_layer_query_has_a_checkpoint_version() -> None:
    from lambdawatch.core.catalog import QUERY_VERSIONS, SPEED_LAYER_QUERIES

    assert set(QUERY_VERSIONS) == set(SPEED_LAYER_QUERIES)
    assert all(isinstance(v, int) and v >= 1 for v in QUERY_VERSIONS.values())


def test_start_waves_follow_dependencies() -> None:
    from lambdawatch.ops.stack.local import Component, start_waves

    def component(name: str, *deps: str) -> Component:
        return Component(
            name=name, port=1, program=lambda: None, health=lambda: None, depends_on=deps
        )  # type: ignore[arg-type, return-value]

    waves = start_waves([component("speed", "kafka", "pg"), component("pg"), component("kafka")])
    assert [[c.name for c in wave] for wave in waves] == [["pg", "kafka"], ["speed"]]
    only = start_waves([component("speed", "kafka", "pg")])  # deps not selected: assumed up
    assert [[c.name for c in wave] for wave in only] == [["speed"]]
    with pytest.raises(ValueError, match="dependency cycle"):
        start_waves([component("a", "b"), component("b", "a")])


def test_kraft_cluster_ids_never_look_like_options() -> None:
    """The storage tool parses ``--cluster-id -abc`` as an option; 1 random id in 64 began so."""
    from lambdawatch.ops.stack.kafka_node import new_cluster_id

    ids = [new_cluster_id() for _ in range(3000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)


def test_failure_excerpt_shows_the_cause_before_the_noise() -> None:
    from lambdawatch.ops.stack.local import failure_excerpt

    log = "\n".join(
        [
            "26/11/24 06:39:24 WARN NativeCodeLoader: Unable to load native-hadoop library",
            "26/11/24 06:40:01 ERROR MicroBatchExecution: Query cdn_clusters terminated with error",
            "psycopg_pool.PoolTimeout: couldn't get a connection after 30.00 sec",
            *[f"plan line {i}" for i in range(40)],
            "INFO py4j.clientserver Closing down clientserver connection",
        ]
    )
    excerpt = failure_excerpt(log)
    assert "ERROR MicroBatchExecution: Query cdn_clusters terminated" in excerpt
    assert "PoolTimeout" in excerpt
    assert excerpt.rstrip().endswith("Closing down clientserver connection")
    assert "plan line 20" not in excerpt  # neither the cause's context nor the tail

    quiet = "\n".join(f"line {i}" for i in range(30))
    assert failure_excerpt(quiet) == "\n".join(f"line {i}" for i in range(15, 30))
    # an error older than the window belongs to an earlier run of the program
    earlier = "\n".join(["Traceback (most recent call last):", *quiet.splitlines()])
    assert "Traceback" not in failure_excerpt(earlier, window=20)


@pytest.mark.parametrize("offsets", ["earliest", "latest"])
def test_the_speed_layer_program_starts_where_settings_say(tmp_path: Path, offsets: str) -> None:
    settings = load_settings(speed_layer_starting_offsets=offsets)
    stack = LocalStack(settings, load_secrets(tmp_path / "secrets.env"))
    program = next(c for c in stack.components if c.name == "speed-layer").program()
    assert program.environment["SPEED_LAYER_STARTING_OFFSETS"] == offsets
