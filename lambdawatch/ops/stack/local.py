"""Local mode: every service as a supervised local process with its state under ``var/``.

``up`` prepares what a first run needs (initdb, KRaft format, configs), starts the programs
under supervisord, waits until each answers a real health check, then runs post-start steps
(databases, migrations). ``down`` stops only the supervisord instance ``up`` started.
Components start in waves ordered by ``depends_on``; each wave is prepared (initdb, KRaft
format, Airflow's metadata migration) only once what it depends on is healthy.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lambdawatch.core import db
from lambdawatch.core.airflow_api import AirflowClient
from lambdawatch.core.catalog import SPEED_LAYER_QUERIES
from lambdawatch.core.secrets import Secrets, load_secrets
from lambdawatch.core.settings import Settings
from lambdawatch.ops.health import (
    check_airflow,
    check_kafka,
    check_postgres,
    check_redis,
    check_speed_layer,
    check_superset,
    speed_layer_notice,
)
from lambdawatch.ops.stack import (
    airflow_node,
    kafka_node,
    postgres,
    redis_node,
    spark_node,
    superset_node,
)
from lambdawatch.ops.stack.databases import prepare_platform_database
from lambdawatch.ops.stack.supervisor import ProgramSpec, Supervisor, SupervisorPaths
from lambdawatch.pipelines.spark_jobs import connection_action, spark_connection

HealthCheck = Callable[[], str | None]


@dataclass(frozen=True)
class Component:
    """A service of the local stack: how to prepare, run, probe and finish setting it up."""

    name: str
    port: int
    program: Callable[[], ProgramSpec]
    health: HealthCheck
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    start_timeout: float = 90.0
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    # what a healthy component wants an operator to know (None: nothing)
    notice: HealthCheck = lambda: None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str
    healthy: bool
    detail: str
    pid: int | None
    port: int
    rss_bytes: int
    notice: str | None = None


INFRASTRUCTURE = ("postgres", "redis", "kafka")  # the single profile's


def kafka_names(settings: Settings) -> tuple[str, ...]:
    """The Kafka components: ``kafka``, or ``kafka-1`` … ``kafka-3`` in the cluster profile."""
    if settings.stack_profile == "cluster":
        return tuple(f"kafka-{node}" for node, _, _ in settings.kafka_nodes)
    return ("kafka",)


def spark_names(settings: Settings) -> tuple[str, ...]:
    """The Spark standalone components (the cluster profile's only)."""
    if settings.stack_profile == "cluster":
        return (spark_node.MASTER, *spark_node.WORKERS)
    return ()


def infrastructure(settings: Settings) -> tuple[str, ...]:
    """What the speed layer and the batch jobs run on: databases, Kafka, Spark."""
    return ("postgres", "redis", *kafka_names(settings), *spark_names(settings))


AIRFLOW = tuple(airflow_node.AIRFLOW_PROGRAMS)


class LocalStack:
    """The services ``lambdawatch up`` runs on this machine, described from settings."""

    def __init__(self, settings: Settings, secrets: Secrets | None = None) -> None:
        self.settings = settings
        self.var = settings.var_path
        self.secrets = secrets or load_secrets(self.var / "secrets.env")
        self.supervisor = Supervisor(SupervisorPaths(self.var))
        self.service_user = postgres.run_as_user(settings.service_user)
        self.components = self._components()

    # --- component definitions ----------------------------------------------------------------
    def _components(self) -> list[Component]:
        s, pw = self.settings, self.secrets.postgres_password.get_secret_value()
        return [
            Component(
                name="postgres",
                port=s.postgres_port,
                program=lambda: postgres.postgres_program(
                    self.var / "postgres" / "data", s.bind_host, s.postgres_port, self.service_user
                ),
                prepare=lambda: self._prepare_postgres(pw),
                health=lambda: check_postgres(
                    s.postgres_host, s.postgres_port, s.postgres_user, pw, "postgres"
                ),
                after_start=self.bootstrap_database,
                start_timeout=90,
            ),
            Component(
                name="redis",
                port=s.redis_port,
                program=lambda: redis_node.redis_program(self.var / "redis" / "redis.conf"),
                prepare=self._prepare_redis,
                health=lambda: check_redis(
                    s.redis_host, s.redis_port, self.secrets.redis_password.get_secret_value()
                ),
                start_timeout=30,
            ),
            *self._kafka_components(),
            *self._spark_components(),
            Component(
                name="speed-layer",
                port=s.spark_ui_port,
                program=self._speed_layer_program,
                health=lambda: check_speed_layer(
                    self.var / "run" / "speed_layer.json",
                    SPEED_LAYER_QUERIES,
                    self.supervisor.info("speed-layer")["pid"] or None,
                ),
                start_timeout=300,  # the first start resolves the Kafka connector from Maven
                depends_on=("postgres", *kafka_names(s), *spark_names(s)),
                notice=lambda: speed_layer_notice(
                    self.var / "run" / "speed_layer.json",
                    self.supervisor.info("speed-layer")["pid"] or None,
                ),
            ),
            *self._airflow_components(),
            Component(
                name=superset_node.PROGRAM,
                port=s.superset_port,
                program=lambda: superset_node.superset_program(s, self.secrets),
                prepare=self._prepare_superset,
                health=lambda: check_superset(s.superset_base_url),
                start_timeout=180,
                depends_on=("postgres",),
            ),
        ]

    def _kafka_components(self) -> list[Component]:
        """One node, or the cluster profile's three (started together: a quorum needs two)."""
        s = self.settings
        components = []
        for name, (node, port, _) in zip(kafka_names(s), s.kafka_nodes, strict=True):
            home = self.var / name
            components.append(
                Component(
                    name=name,
                    port=port,
                    program=lambda name=name, home=home: kafka_node.kafka_program(
                        self._kafka_libs(),
                        home / "server.properties",
                        home / "log4j2.yaml",
                        s.kafka_heap_mb,
                        name=name,
                    ),
                    prepare=lambda node=node, home=home: self._prepare_kafka(node, home),
                    health=lambda port=port: check_kafka(f"{s.bind_host}:{port}"),
                    start_timeout=120,
                )
            )
        return components

    def _spark_components(self) -> list[Component]:
        s = self.settings
        if not spark_names(s):
            return []
        master = Component(
            name=spark_node.MASTER,
            port=s.spark_master_port,
            program=lambda: spark_node.master_program(s),
            health=lambda: spark_node.check_master(s),
            start_timeout=90,
        )
        workers = [
            Component(
                name=name,
                port=spark_node.worker_ui_port(s, name),
                program=lambda name=name: spark_node.worker_program(s, name),
                health=lambda name=name: spark_node.check_worker(s, name),
                start_timeout=90,
                depends_on=(spark_node.MASTER,),
            )
            for name in spark_node.WORKERS
        ]
        return [master, *workers]

    def _airflow_components(self) -> list[Component]:
        """The api-server migrates the metadata database first; the rest follow it."""
        components = []
        for name, part in airflow_node.HEALTH_KEYS.items():
            is_api = name == "airflow-api-server"
            components.append(
                Component(
                    name=name,
                    port=self.settings.airflow_port if is_api else 0,
                    program=lambda name=name: airflow_node.airflow_program(
                        name, self.settings, self.secrets
                    ),
                    prepare=self._prepare_airflow if is_api else lambda: None,
                    after_start=self._ensure_spark_connection if is_api else lambda: None,
                    health=lambda part=part: check_airflow(self.settings.airflow_base_url, part),
                    start_timeout=180,
                    depends_on=("postgres",) if is_api else ("airflow-api-server",),
                )
            )
        return components

    def _prepare_airflow(self) -> None:
        with db.connect(self.settings, self.secrets, "postgres", role="owner") as admin:
            airflow_node.prepare_metadata_database(self.settings, self.secrets, admin)

    def _ensure_spark_connection(self) -> None:
        """Airflow's ``spark_default`` from settings: created once, moved with the settings
        while nobody edited it, an operator's edit kept (``connection_action``)."""
        client = AirflowClient.from_settings(self.settings, self.secrets)
        wanted = spark_connection(self.settings)
        record = airflow_node.airflow_home(self.settings) / "spark_default.json"
        before = json.loads(record.read_text()) if record.exists() else None
        current = client.connection(wanted["connection_id"])
        action = connection_action(current, wanted, before)
        if action in ("create", "update"):
            client.put_connection(wanted, exists=current is not None)
        if action != "keep":
            record.write_text(json.dumps(wanted))

    def _prepare_superset(self) -> None:
        """Metadata database, then the assets (its reader role was granted at
        ``bootstrap_database``)."""
        with db.connect(self.settings, self.secrets, "postgres", role="owner") as admin:
            superset_node.prepare_metadata_database(self.settings, self.secrets, admin)
        superset_node.provision(self.settings, self.secrets)

    def _speed_layer_program(self) -> ProgramSpec:
        """The Spark driver (local mode) in the core environment, bound to loopback."""
        return ProgramSpec(
            name="speed-layer",
            command=[sys.executable, "-m", "spark_apps.speed_layer"],
            directory=self.settings.root,
            environment={
                "SPARK_LOCAL_IP": self.settings.bind_host,
                "PYSPARK_PYTHON": sys.executable,
                "LAMBDAWATCH_VAR_DIR": str(self.var),
                "PYTHONUNBUFFERED": "1",
                "SPEED_LAYER_STARTING_OFFSETS": self.settings.speed_layer_starting_offsets,
            },
            stop_signal="TERM",
            stop_wait_seconds=60,
            start_seconds=5,
        )

    # --- first-run preparation ----------------------------------------------------------------
    def _prepare_postgres(self, password: str) -> None:
        postgres.init_cluster(
            self.var / "postgres" / "data", self.settings.postgres_user, password, self.service_user
        )

    def _prepare_redis(self) -> None:
        data = self.var / "redis"
        data.mkdir(parents=True, exist_ok=True)
        conf = redis_node.render_redis_conf(
            self.settings.bind_host,
            self.settings.redis_port,
            data,
            self.secrets.redis_password.get_secret_value(),
        )
        path = data / "redis.conf"
        path.touch(mode=0o600)
        path.chmod(0o600)  # it holds the password
        path.write_text(conf)

    def _kafka_libs(self) -> Path:
        return kafka_node.resolve_classpath(self.settings.root / "jvm" / "kafka" / "pom.xml")

    def _prepare_kafka(self, node: int, home: Path) -> None:
        s = self.settings
        cluster = s.stack_profile == "cluster"
        _, port, controller_port = s.kafka_nodes[node - 1]
        home.mkdir(parents=True, exist_ok=True)
        properties, log4j = home / "server.properties", home / "log4j2.yaml"
        log4j.write_text(kafka_node.LOG4J2_YAML)
        properties.write_text(
            kafka_node.render_server_properties(
                node,
                s.bind_host,
                port,
                controller_port,
                home / "data",
                voters=[(n, c) for n, _, c in s.kafka_nodes] if cluster else None,
            )
        )
        kafka_node.format_storage(
            self._kafka_libs(),
            properties,
            home / "data",
            log4j,
            id_file=self.var / "kafka-cluster.id" if cluster else None,
            standalone=not cluster,
        )

    # --- post-start steps -----------------------------------------------------------------------
    def bootstrap_database(self) -> None:
        """Create the platform database and its roles, bring its schema up to date, grant."""
        prepare_platform_database(self.settings, self.secrets)

    # --- lifecycle ------------------------------------------------------------------------------
    def up(
        self,
        names: list[str] | None = None,
        on_event: Callable[[str], None] = print,
        on_waiting: Callable[[str, str], None] | None = None,
    ) -> None:
        """Bring the selected components (default: all) to healthy; harmless when already up.

        ``on_waiting(name, reason)`` hears each change of what a starting component waits on.
        """
        chosen = [c for c in self.components if names is None or c.name in names]
        for directory in ("log", "run"):
            (self.var / directory).mkdir(parents=True, exist_ok=True)
        self.var.chmod(0o755)
        self.supervisor.ensure_started([c.program() for c in self.components])
        for wave in start_waves(chosen):
            for component in wave:  # after the previous wave: a step may need its services
                component.prepare()
            for component in wave:
                self.supervisor.start_async(component.name)
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                waits = {c.name: pool.submit(self._wait_healthy, c, on_waiting) for c in wave}
                for name, future in waits.items():
                    future.result()
                    on_event(f"{name} healthy")
            for component in wave:
                component.after_start()

    def _wait_healthy(
        self, component: Component, on_waiting: Callable[[str, str], None] | None = None
    ) -> None:
        deadline = time.monotonic() + component.start_timeout
        reason: str | None = "not checked yet"
        while time.monotonic() < deadline:
            info = self.supervisor.info(component.name)
            if info["statename"] in {"FATAL", "EXITED"}:
                reason = f"process {info['statename'].lower()}"
                break
            waited_on, reason = reason, component.health()
            if reason is None and info["statename"] == "RUNNING":
                return  # healthy, and past supervisord's startsecs: ``status`` agrees
            if reason is None:
                reason = f"healthy, supervisord still says {info['statename']}"
            if on_waiting is not None and reason != waited_on:
                on_waiting(component.name, reason)
            time.sleep(0.5)
        log = self.var / "log" / f"{component.name}.log"
        excerpt = failure_excerpt(log.read_text(errors="replace")) if log.exists() else ""
        raise RuntimeError(f"{component.name} did not become healthy ({reason}); {log}:\n{excerpt}")

    def down(self) -> None:
        # A KRaft broker's controlled shutdown waits for the controller quorum's approval:
        # stopped one by one (supervisord's shutdown), the last voter standing waits for a
        # majority that has left, until its stop timeout kills it. Together, each is approved.
        nodes = kafka_names(self.settings)
        if len(nodes) > 1:
            self.supervisor.stop_together(list(nodes))
        self.supervisor.shutdown()

    def status(self) -> list[ComponentStatus]:
        info = {entry["name"]: entry for entry in self.supervisor.all_info()}
        rows = []
        for component in self.components:
            entry = info.get(component.name, {})
            pid = entry.get("pid") or None
            state = entry.get("statename", "STOPPED" if not info else "UNKNOWN")
            problem = component.health() if state == "RUNNING" else state.lower()
            notice = component.notice() if state == "RUNNING" else None
            rows.append(
                ComponentStatus(
                    name=component.name,
                    state=state,
                    healthy=problem is None,
                    detail=problem or "ok",
                    pid=pid,
                    port=component.port,
                    rss_bytes=process_tree_rss(pid),
                    notice=notice,
                )
            )
        return rows


def start_waves(components: list[Component]) -> list[list[Component]]:
    """Group components so each starts after what it depends on is healthy (and set up).

    Dependencies outside ``components`` are assumed to be up already (``up --only x``).
    """
    names = {c.name for c in components}
    done: set[str] = set()
    waves: list[list[Component]] = []
    remaining = list(components)
    while remaining:
        ready = [c for c in remaining if all(d in done or d not in names for d in c.depends_on)]
        if not ready:
            cycle = ", ".join(c.name for c in remaining)
            raise ValueError(f"dependency cycle among: {cycle}")
        waves.append(ready)
        done.update(c.name for c in ready)
        remaining = [c for c in remaining if c.name not in done]
    return waves


ERROR_START = re.compile(
    r"^(Traceback \(most recent call last\)|Caused by: |\S*(Error|Exception)\b|.* (ERROR|FATAL) )"
)


def failure_excerpt(log_text: str, window: int = 500, context: int = 12, tail: int = 15) -> str:
    """The first error block among a log's last ``window`` lines, and its last lines.

    A JVM or Python process that dies prints its cause first and then pages of plans and
    shutdown noise, so the last lines alone rarely say why it died. The window keeps an earlier
    run's errors (a supervised program appends to one log) out of the excerpt.
    """
    lines = log_text.splitlines()[-window:]
    last = lines[-tail:]
    first_error = next((i for i, line in enumerate(lines) if ERROR_START.match(line)), None)
    if first_error is None or first_error >= len(lines) - tail:
        return "\n".join(last)
    cause = [line[:500] for line in lines[first_error : first_error + context]]
    return "\n".join(["first error:", *cause, "...", "last lines:", *last])


def process_tree_rss(pid: int | None) -> int:
    """Memory of a process and its children (postmasters fork), as PSS where readable.

    PSS splits shared pages between the processes that map them, so PostgreSQL's shared
    buffers are counted once rather than once per backend.
    """
    if not pid:
        return 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.AccessDenied:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
