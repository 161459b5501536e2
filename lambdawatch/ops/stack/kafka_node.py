"""Kafka nodes (combined broker + controller, KRaft) built from Maven Central jars: one, or
three voting together in the cluster profile.

``jvm/kafka/pom.xml`` pins the Kafka version; Maven resolves it into ``~/.m2`` and the runtime
classpath is copied once into a cache directory keyed by the pom's hash, so a changed pom
re-resolves and an unchanged one never touches the network again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from lambdawatch.ops.stack.supervisor import ProgramSpec

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
      - name: state.change.logger
        level: WARN
"""


def cache_dir() -> Path:
    """Shared across var directories (tests, dev, demo) so jars are copied once per version."""
    base = os.environ.get("LAMBDAWATCH_CACHE_DIR") or Path.home() / ".cache" / "lambdawatch"
    return Path(base)


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java not found; install a JDK 17+ (the README's setup does)")
    return found


def resolve_classpath(pom: Path, cache: Path | None = None) -> Path:
    """Directory holding Kafka's runtime jars; resolves with Maven on first use."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    libs = (cache or cache_dir()) / f"kafka-{digest}" / "libs"
    marker = libs.parent / "resolved"
    if marker.exists():
        return libs
    staging = libs.parent / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    mvn = shutil.which("mvn")
    if not mvn:
        raise FileNotFoundError("mvn not found; install Debian's maven package")
    subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ],
        check=True,
    )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(pom.read_text())
    return libs


def render_server_properties(
    node_id: int,
    host: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    voters: list[tuple[int, int]] | None = None,
) -> str:
    """KRaft combined mode; topics are created explicitly, never auto. Alone: a dynamic quorum
    of itself, single-replica internal topics. With ``voters`` (node id, controller port): a
    static quorum of those nodes, Kafka's internal topics at three replicas, two in sync."""
    replicas, in_sync = ("3", "2") if voters else ("1", "1")
    quorum = (
        {"controller.quorum.voters": ",".join(f"{n}@{host}:{p}" for n, p in voters)}
        if voters
        else {"controller.quorum.bootstrap.servers": f"{host}:{controller_port}"}
    )
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        **quorum,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": in_sync,
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "3",
        "num.io.threads": "4",
        "log.segment.bytes": str(256 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
    }
    return "".join(f"{key}={value}\n" for key, value in properties.items())


def new_cluster_id() -> str:
    """A KRaft cluster id; like Kafka's own ``Uuid.randomUuid`` it never starts with ``-``,
    which the storage tool's argument parser would take for an option (1 id in 64)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def format_storage(
    libs: Path,
    properties: Path,
    data_dir: Path,
    log4j: Path,
    id_file: Path | None = None,
    standalone: bool = True,
) -> bool:
    """Format KRaft storage once; return False if ``meta.properties`` already exists.

    Nodes of one cluster share ``id_file`` (the cluster id); ``standalone`` makes a node the
    sole voter of a dynamic quorum, otherwise the static voters of its properties vote."""
    if (data_dir / "meta.properties").exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    id_file = id_file or data_dir.parent / "cluster.id"
    if not id_file.exists():
        id_file.write_text(new_cluster_id())
    result = subprocess.run(
        [
            java_executable(),
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            STORAGE_TOOL,
            "format",
            "--cluster-id",
            id_file.read_text().strip(),
            "--config",
            str(properties),
            *(["--standalone"] if standalone else []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Kafka storage format failed:\n{result.stdout}\n{result.stderr}")
    return True


def kafka_program(
    libs: Path, properties: Path, log4j: Path, heap_mb: int, name: str = "kafka"
) -> ProgramSpec:
    """The broker JVM with an explicit heap: the default would claim a quarter of the RAM."""
    initial = min(256, heap_mb)
    return ProgramSpec(
        name=name,
        command=[
            java_executable(),
            f"-Xms{initial}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            MAIN_CLASS,
            str(properties),
        ],
        directory=properties.parent,
        stop_signal="TERM",
        stop_wait_seconds=60,
        start_seconds=3,
    )
