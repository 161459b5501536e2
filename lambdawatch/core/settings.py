"""One validated settings object for every lambdawatch process.

Precedence, lowest first: ``config.json`` (platform layout and models) < ``.env`` (non-secret
endpoints and ports) < the process environment. Secrets live apart, in an untracked file that
``lambdawatch.core.secrets`` generates on first run. A bad value fails at load with its field path.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lambdawatch.core.config_model import (
    DeadLettersConfig,
    GeneratorsConfig,
    HotStoreConfig,
    IncidentsConfig,
    IpConfig,
    ModelsConfig,
    RetentionConfig,
    SchedulesConfig,
    TopicConfig,
    TopicRole,
)

Port = Annotated[int, Field(ge=1, le=65535)]
CONFIG_FIELDS = (
    "topics",
    "ips",
    "hot_store",
    "schedules",
    "models",
    "generators",
    "dead_letters",
    "retention",
)
# What a dead letter holds besides its raw bytes (reason, coordinates, hash), and what a Kafka
# record costs besides its key and value (batch and record headers), with room to spare.
DEAD_LETTER_ENVELOPE_BYTES = 4096
KAFKA_RECORD_OVERHEAD_BYTES = 1024
REQUIRED_TOPIC_ROLES = get_args(TopicRole)  # every role must have a topic


def project_root() -> Path:
    """The checkout holding config.json: ``LAMBDAWATCH_ROOT``, else the package's parent."""
    explicit = os.environ.get("LAMBDAWATCH_ROOT")
    if explicit:
        return Path(explicit).resolve()
    return Path(__file__).resolve().parents[2]


class ConfigError(Exception):
    """Raised when config.json, .env or the environment holds an invalid value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Settings(BaseSettings):
    """Everything a lambdawatch process needs to know, validated once."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    # --- .env: where things run -------------------------------------------------------------
    stack_mode: Literal["local", "distributed"] = "local"
    var_dir: Path | None = Field(default=None, validation_alias="LAMBDAWATCH_VAR_DIR")
    bind_host: str = "127.0.0.1"
    service_user: str = "postgres"

    # "cluster" (``lambdawatch up --profile cluster``): the distributed topology on one machine,
    # three Kafka nodes (broker + controller each) and a Spark standalone master with two workers
    stack_profile: Literal["single", "cluster"] = "single"
    kafka_bootstrap_servers: str | None = None
    kafka_port: Port = 19092
    kafka_controller_port: Port = 19093
    kafka_port_2: Port = 19192  # the cluster profile's second and third nodes
    kafka_controller_port_2: Port = 19193
    kafka_port_3: Port = 19292
    kafka_controller_port_3: Port = 19293
    spark_master_port: Port = 17077  # the cluster profile's standalone master
    spark_master_ui_port: Port = 18090
    spark_worker_ui_port_1: Port = 18091
    spark_worker_ui_port_2: Port = 18092
    kafka_heap_mb: Annotated[int, Field(ge=128, le=65536)] = 512
    # Overrides every topic's replication factor (config.json) for a cluster with more brokers.
    kafka_replication_factor: Annotated[int, Field(ge=1, le=16)] | None = None
    # ... and their min.insync.replicas (2 for three replicas: one broker may be lost).
    kafka_min_insync_replicas: Annotated[int, Field(ge=1, le=16)] | None = None

    postgres_host: str = "127.0.0.1"
    postgres_port: Port = 15432
    postgres_db: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")] = "lambdawatch"
    postgres_user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")] = "lambdawatch"

    redis_host: str = "127.0.0.1"
    redis_port: Port = 16379
    redis_db: Annotated[int, Field(ge=0, le=15)] = 0

    spark_master: str = "local[*]"
    spark_ui_port: Port = 14040
    # Partitions of the speed layer's state and shuffles. Its micro-batches are small and each
    # partition is one more task and state commit per stateful operator per trigger, so about
    # the cores it has (fixed per checkpoint: a new value applies to new query versions).
    speed_layer_partitions: Annotated[int, Field(ge=1, le=1024)] = 2
    # On a spark:// master, the cores the always-on speed layer may hold (spark.cores.max), so
    # batch jobs submitted beside it still get executors.
    speed_layer_cores: Annotated[int, Field(ge=1, le=4096)] = 2
    # Where a speed-layer query without a checkpoint starts reading its topics: "earliest"
    # judges what they already hold (nothing is skipped); "latest" only what arrives after.
    speed_layer_starting_offsets: Literal["earliest", "latest"] = "earliest"
    # The address executors reach a driver at (a container's service name in docker-compose);
    # default: BIND_HOST, which is right for local mode.
    spark_driver_host: str | None = None
    models_dir: Path | None = None  # trained models; shared storage in distributed mode
    history_dir: Path | None = None  # the raw-event archive; shared storage likewise
    spark_python: Path | None = None  # interpreter with PySpark; default .venv/bin/python
    airflow_port: Port = 18080
    airflow_log_server_port: Port = 18793
    airflow_trigger_log_server_port: Port = 18794
    airflow_url: str | None = None
    airflow_venv: Path | None = None  # default .venv-airflow beside config.json
    airflow_admin_user: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "admin"
    superset_port: Port = 18088
    superset_url: str | None = None
    superset_venv: Path | None = None  # default .venv-superset beside config.json
    superset_admin_user: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "admin"
    superset_workers: Annotated[int, Field(ge=1, le=16)] = 1
    # Superset's reader role: every statement it runs on the platform database is cut off
    # after this long, and SQL Lab (arbitrary SQL) stays off unless switched on here.
    superset_statement_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 30
    superset_sql_lab: bool = False

    normal_mean: Annotated[float, Field(ge=0, le=100)] = 45.0
    normal_stddev: Annotated[float, Field(gt=0)] = 12.0
    openweather_api_key: SecretStr | None = None
    openweather_url: str = "https://api.openweathermap.org/data/2.5/weather"
    openweather_calls_per_minute: Annotated[int, Field(ge=1, le=60)] = 50

    # --- config.json: what the platform does ---------------------------------------------------
    topics: list[TopicConfig]
    ips: IpConfig = IpConfig()
    hot_store: HotStoreConfig = HotStoreConfig()
    schedules: SchedulesConfig = SchedulesConfig()
    models: ModelsConfig = ModelsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    generators: GeneratorsConfig = GeneratorsConfig()
    dead_letters: DeadLettersConfig = DeadLettersConfig()
    retention: RetentionConfig = RetentionConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        json_path = settings_cls.model_config.get("json_file")
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            JsonConfigSettingsSource(settings_cls, json_file=json_path),
        )

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        roles = [topic.role for topic in self.topics]
        problems = []
        for role in REQUIRED_TOPIC_ROLES:
            if role not in roles:
                problems.append(f"topics: no topic with role {role!r}")
        seen: set[str] = set()
        for index, topic in enumerate(self.topics):
            if topic.role in seen:
                problems.append(f"topics[{index}].role: duplicate role {topic.role!r}")
            seen.add(topic.role)
        names = [topic.name for topic in self.topics]
        for index, name in enumerate(names):
            if names.index(name) != index:
                problems.append(f"topics[{index}].name: duplicate topic name {name!r}")
        if "dead_letters" in roles:
            largest = self.dead_letter_max_bytes
            index = roles.index("dead_letters")
            if largest > self.topics[index].max_message_bytes:
                problems.append(
                    f"topics[{index}].max_message_bytes: {self.topics[index].max_message_bytes} "
                    f"is below the largest dead letter ({largest} bytes for "
                    f"dead_letters.max_raw_bytes={self.dead_letters.max_raw_bytes})"
                )
        default_replicas, default_quorum = self.replication_defaults
        for index, topic in enumerate(self.topics):
            replicas = default_replicas or topic.replication_factor
            quorum = default_quorum or topic.min_insync_replicas
            if quorum > replicas:
                problems.append(
                    f"KAFKA_MIN_INSYNC_REPLICAS: {quorum} exceeds topics[{index}]'s "
                    f"replication factor {replicas}"
                )
                break
        if "ip_events" in roles:
            partitions = self.topic("ip_events").partitions
            for ip, partition in self.ips.partition_map.items():
                if partition >= partitions:
                    problems.append(
                        f"ips.partition_map.{ip}: partition {partition} does not exist "
                        f"(topic ip_events has {partitions})"
                    )
        if self.stack_mode == "local":
            ports = {
                "KAFKA_PORT": self.kafka_port,
                "KAFKA_CONTROLLER_PORT": self.kafka_controller_port,
                "POSTGRES_PORT": self.postgres_port,
                "REDIS_PORT": self.redis_port,
                "AIRFLOW_PORT": self.airflow_port,
                "AIRFLOW_LOG_SERVER_PORT": self.airflow_log_server_port,
                "AIRFLOW_TRIGGER_LOG_SERVER_PORT": self.airflow_trigger_log_server_port,
                "SUPERSET_PORT": self.superset_port,
                "SPARK_UI_PORT": self.spark_ui_port,
            }
            if self.stack_profile == "cluster":
                ports |= {
                    "KAFKA_PORT_2": self.kafka_port_2,
                    "KAFKA_CONTROLLER_PORT_2": self.kafka_controller_port_2,
                    "KAFKA_PORT_3": self.kafka_port_3,
                    "KAFKA_CONTROLLER_PORT_3": self.kafka_controller_port_3,
                    "SPARK_MASTER_PORT": self.spark_master_port,
                    "SPARK_MASTER_UI_PORT": self.spark_master_ui_port,
                    "SPARK_WORKER_UI_PORT_1": self.spark_worker_ui_port_1,
                    "SPARK_WORKER_UI_PORT_2": self.spark_worker_ui_port_2,
                }
            by_port: dict[int, str] = {}
            for name, port in ports.items():
                if port in by_port:
                    problems.append(f"{name}: port {port} is already used by {by_port[port]}")
                by_port[port] = name
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived values ------------------------------------------------------------------------
    @cached_property
    def root(self) -> Path:
        return project_root()

    @cached_property
    def var_path(self) -> Path:
        """All local state (data directories, logs, secrets, checkpoints) lives under here."""
        return (self.var_dir or self.root / "var").resolve()

    @cached_property
    def kafka_nodes(self) -> list[tuple[int, int, int]]:
        """The local Kafka nodes: (node id, broker port, controller port); three in the
        cluster profile."""
        nodes = [(1, self.kafka_port, self.kafka_controller_port)]
        if self.stack_profile == "cluster":
            nodes += [
                (2, self.kafka_port_2, self.kafka_controller_port_2),
                (3, self.kafka_port_3, self.kafka_controller_port_3),
            ]
        return nodes

    @cached_property
    def kafka_bootstrap(self) -> str:
        """Every node, so a client finds the cluster whichever node is down."""
        return self.kafka_bootstrap_servers or ",".join(
            f"{self.bind_host}:{port}" for _, port, _ in self.kafka_nodes
        )

    @cached_property
    def spark_master_url(self) -> str:
        """Where Spark applications are submitted: ``SPARK_MASTER``, or in the cluster profile
        (when that is left at local) its standalone master."""
        if self.stack_profile == "cluster" and self.spark_master.startswith("local"):
            return f"spark://{self.bind_host}:{self.spark_master_port}"
        return self.spark_master

    @cached_property
    def driver_host(self) -> str:
        return self.spark_driver_host or self.bind_host

    @cached_property
    def spark_is_local(self) -> bool:
        return self.spark_master_url.startswith("local")

    @cached_property
    def airflow_base_url(self) -> str:
        return (self.airflow_url or f"http://{self.bind_host}:{self.airflow_port}").rstrip("/")

    @cached_property
    def airflow_venv_path(self) -> Path:
        """Airflow's own environment (its pins conflict with Superset's, so it stands apart)."""
        return (self.airflow_venv or self.root / ".venv-airflow").resolve()

    @cached_property
    def superset_base_url(self) -> str:
        return (self.superset_url or f"http://{self.bind_host}:{self.superset_port}").rstrip("/")

    @cached_property
    def superset_venv_path(self) -> Path:
        """Superset's own environment (its pins conflict with Airflow's)."""
        return (self.superset_venv or self.root / ".venv-superset").resolve()

    @cached_property
    def models_path(self) -> Path:
        return (self.models_dir or self.var_path / "models").resolve()

    @cached_property
    def history_path(self) -> Path:
        """The raw-event archive (Parquet per source and hour of arrival), for backtests."""
        return (self.history_dir or self.var_path / "history").resolve()

    @cached_property
    def spark_python_path(self) -> Path:
        """The interpreter that runs PySpark drivers and workers (spark-submit lives beside it)."""
        return self.spark_python or self.root / ".venv" / "bin" / "python"

    @property
    def replication_defaults(self) -> tuple[int | None, int | None]:
        """(replicas, write quorum) every topic gets: KAFKA_REPLICATION_FACTOR and
        KAFKA_MIN_INSYNC_REPLICAS, else 3 and 2 in the cluster profile, else config.json's."""
        cluster = self.stack_profile == "cluster"
        return (
            self.kafka_replication_factor or (3 if cluster else None),
            self.kafka_min_insync_replicas or (2 if cluster else None),
        )

    @cached_property
    def kafka_topics(self) -> list[TopicConfig]:
        """The topics to create: config.json's, with KAFKA_REPLICATION_FACTOR and
        KAFKA_MIN_INSYNC_REPLICAS applied (validated together: the quorum within the replicas)."""
        update: dict[str, int] = {}
        replicas, quorum = self.replication_defaults
        if replicas is not None:
            update["replication_factor"] = replicas
        if quorum is not None:
            update["min_insync_replicas"] = quorum
        if not update:
            return list(self.topics)
        return [TopicConfig(**{**topic.model_dump(), **update}) for topic in self.topics]

    @property
    def dead_letter_max_bytes(self) -> int:
        """The largest record a dead letter can be: its base64 raw bytes, envelope and headers."""
        base64_bytes = 4 * ((self.dead_letters.max_raw_bytes + 2) // 3)
        return base64_bytes + DEAD_LETTER_ENVELOPE_BYTES + KAFKA_RECORD_OVERHEAD_BYTES

    def record_limit(self, topic_name: str) -> int:
        """The largest key plus value a record for ``topic_name`` may have (its headers aside)."""
        for topic in self.topics:
            if topic.name == topic_name:
                return topic.max_message_bytes - KAFKA_RECORD_OVERHEAD_BYTES
        raise KeyError(f"no topic named {topic_name!r}")

    def producer_max_request_bytes(self, *topic_names: str) -> int:
        """``max.request.size`` for a producer writing to these topics: the largest of their
        ``max.message.bytes``, since each record is held to its own topic's limit."""
        return max(
            topic.max_message_bytes
            for topic in self.topics
            if not topic_names or topic.name in topic_names
        )

    def topic(self, role: str) -> TopicConfig:
        for topic in self.topics:
            if topic.role == role:
                return topic
        raise KeyError(f"no topic with role {role!r}")

    @cached_property
    def ip_partitions(self) -> dict[str, int]:
        """IP → partition of the IP events topic (explicit pins win, the rest round-robin)."""
        return self.ips.partition_for(self.topic("ip_events").partitions)


def _location(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "<root>"
    head, *rest = loc
    is_env_field = head in Settings.model_fields and head not in CONFIG_FIELDS
    text = str(head).upper() if is_env_field else str(head)
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _reason(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    simple = {
        "greater_than_equal": "must be >= {ge}",
        "greater_than": "must be > {gt}",
        "less_than_equal": "must be <= {le}",
        "less_than": "must be < {lt}",
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "string_pattern_mismatch": "must match {pattern}",
        "literal_error": "must be one of {expected}",
    }
    if kind in simple:
        return simple[kind].format(**ctx)
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"{error['msg'].lower()} (got {error.get('input')!r})"
    return str(error["msg"])


def describe_errors(exc: ValidationError) -> list[str]:
    """Turn pydantic errors into ``field.path[2].name: reason`` lines a user can act on."""
    problems = []
    for error in exc.errors(include_url=False):
        if error["type"] == "value_error" and not error["loc"]:
            problems.extend(str(error["ctx"]["error"]).split("; "))
            continue
        problems.append(f"{_location(error['loc'])}: {_reason(error)}")
    return problems


def load_settings(
    config_path: Path | None = None,
    env_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate settings; raise ``ConfigError`` naming every bad field."""
    root = project_root()
    config_file = Path(config_path or os.environ.get("LAMBDAWATCH_CONFIG") or root / "config.json")
    env_file = Path(env_path or os.environ.get("LAMBDAWATCH_ENV_FILE") or root / ".env")
    if not config_file.is_file():
        raise ConfigError([f"config file not found: {config_file}"])

    class _Bound(Settings):
        model_config = SettingsConfigDict(json_file=config_file, env_file=env_file)

    try:
        return _Bound(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    except ValueError as exc:  # malformed JSON in config.json
        raise ConfigError([f"{config_file.name}: {exc}"]) from None
