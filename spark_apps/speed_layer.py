"""The speed layer: one always-on Spark application, several streaming queries over Kafka.

This module composes and supervises them. Each query is a module of ``spark_apps.queries``:
source → transforms and detectors (``spark_apps.transforms``, ``spark_apps.detectors``) →
sink (``spark_apps.io``), with its own checkpoint. PostgreSQL sinks upsert on natural keys
inside ``foreachBatch``, so a micro-batch replayed after a crash rewrites the same rows; Kafka
sinks are at-least-once with stable keys.

No record can stop a query: every Kafka sink holds each record to its topic's size limit
(a larger one becomes a dead letter) with a producer sized from the same configuration, and
every ``foreachBatch`` sink sets the records it cannot write aside (``spark_apps.sink_guard``).

Run locally (``lambdawatch up`` supervises it) or submit unchanged to a ``spark://`` master::

    python -m spark_apps.speed_layer
    spark-submit --master spark://spark-master:7077 spark_apps/speed_layer.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lambdawatch.core.catalog import DOWNSTREAM_QUERIES, SPEED_LAYER_QUERIES
from lambdawatch.core.kafka_admin import admin_client, ensure_topics
from lambdawatch.core.pipeline_health import (
    SinkError,
    progress_rows,
    write_progress,
    write_sink_error,
)
from lambdawatch.core.secrets import secrets_for
from lambdawatch.core.settings import Settings, load_settings
from spark_apps.io import StreamIO
from spark_apps.late_events import LateEvents
from spark_apps.queries import LATE_RULES, STARTERS
from spark_apps.session import build_session
from spark_apps.supervision import RestartPolicy, supervise

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

log = logging.getLogger("lambdawatch.speed_layer")
# RocksDB state with changelog checkpointing: a micro-batch commits only the changed keys, not
# a snapshot per partition, which is most of a small stateful batch's time. (Stored in each
# checkpoint: queries started under the default provider keep it until their version bumps.)
STATE_STORE = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
}


class SpeedLayer(StreamIO):
    """Every query of ``spark_apps.queries`` on one settings object, sources and sinks."""

    def start(self, names: tuple[str, ...] = SPEED_LAYER_QUERIES) -> list[StreamingQuery]:
        return [STARTERS[name](self) for name in names]


class ProgressFile(StreamingQueryListener):
    """Writes each query's last progress to a JSON file: the supervisor's health signal.

    Also hands each progress, as its JSON dict, to ``on_progress``: one Python listener for
    every use, because each listener costs Spark a conversion of every progress event through
    Py4J (dozens of calls for a stateful query's metrics, measured at a third of a core with two
    listeners on a 200 events/s feed).
    """

    def __init__(
        self, path: Path, on_progress: Callable[[dict[str, Any]], None] = lambda _p: None
    ) -> None:
        self.path = path
        self.on_progress = on_progress
        self.state: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, Any]] = {}  # query → records it set aside, the last why
        self.names: dict[str, str] = {}  # run id → query name
        self.lock = threading.Lock()  # listener events and sinks' errors come on other threads
        path.parent.mkdir(parents=True, exist_ok=True)
        self._flush()  # replace whatever an earlier run left behind

    def _flush(self) -> None:
        # The pid lets the health check ignore a file an earlier (crashed) process wrote.
        with self.lock:
            tmp = self.path.with_suffix(".tmp")
            document = {"pid": os.getpid(), "queries": self.state, "set_aside": self.errors}
            tmp.write_text(json.dumps(document, default=str))
            tmp.replace(self.path)

    def record_error(self, error: SinkError) -> None:
        """A sink set records aside: counted per query for ``lambdawatch status``."""
        entry = self.errors.setdefault(error.query, {"records": 0, "batches": 0})
        entry["records"] += error.records
        entry["batches"] += 1
        entry.update(last_error=error.error, last_at=error.recorded_at)
        entry.update(disposition=error.disposition, batch_id=error.batch_id)
        self._flush()

    def restarting(self, name: str, reason: str, delay_s: float, failures: int) -> None:
        """A query failed and is restarted alone after ``delay_s`` (``spark_apps.supervision``)."""
        self.state[name] = {
            "status": "restarting",
            "updated": time.time(),
            "error": reason,
            "failures": failures,
            "restart_in_s": round(delay_s, 1),
        }
        self._flush()

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's listener API
        self.names[str(event.runId)] = event.name
        self.state[event.name] = {"status": "started", "updated": time.time()}
        self._flush()

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        progress = event.progress
        self.state[progress.name] = {
            "status": "active",
            "updated": time.time(),
            "batch_id": progress.batchId,
            "input_rows_per_second": progress.inputRowsPerSecond,
            "processed_rows_per_second": progress.processedRowsPerSecond,
        }
        self._flush()
        self.on_progress(json.loads(progress.json))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        name = self.names.get(str(event.runId), str(event.runId))
        self.state.setdefault(name, {}).update({"status": "active", "updated": time.time()})
        self._flush()

    def wait_terminated(self, names: list[str], timeout: float = 30.0) -> bool:
        """Block until the termination of every query in ``names`` has reached the listeners.

        Spark delivers listener events asynchronously and in order, so once a query's
        termination is here, so is its last progress (for every listener registered after).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.state.get(n, {}).get("status") == "terminated" for n in names):
                return True
            time.sleep(0.1)
        return False

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        name = self.names.get(str(event.runId), str(event.runId))
        if self.state.get(name, {}).get("status") == "restarting":
            return  # the supervisor saw it first: it says when the restart is due
        self.state[name] = {
            "status": "terminated",
            "updated": time.time(),
            "error": event.exception,
        }
        self._flush()


class ProgressTable:
    """Records each micro-batch's events/s and consumer lag per Kafka source in PostgreSQL
    (``speed_layer_progress``), for the Pipeline health dashboard (fed by ``ProgressFile``).

    A failed write is logged and dropped: a health record must never stop the stream.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def record(self, progress: dict[str, Any]) -> None:
        rows = progress_rows(progress)
        for row in rows:
            if row.lost_rows:
                log.warning(
                    "%s batch %d lost %d records of %s: retention deleted them before they "
                    "were read",
                    row.query, row.batch_id, row.lost_rows, row.source,
                )  # fmt: skip
        try:
            with self.pool.connection(timeout=5) as conn:
                write_progress(conn, rows)
        except Exception as error:  # see the class docstring
            log.warning("progress not recorded: %s", error)

    def previous_watermark(self, query: str, batch_id: int) -> str | None:
        """The watermark recorded for ``query``'s batch before ``batch_id``."""
        try:
            with self.pool.connection(timeout=5) as conn:
                row = conn.execute(
                    "SELECT max(watermark) FROM speed_layer_progress WHERE query = %s "
                    "AND batch_id = %s",
                    (query, batch_id - 1),
                ).fetchone()
        except Exception as error:  # see the class docstring
            log.warning("previous watermark of %s not read: %s", query, error)
            return None
        return None if row is None or row[0] is None else row[0].isoformat()

    def record_error(self, error: SinkError) -> None:
        """Records a sink set aside, for the Pipeline health dashboard."""
        try:
            with self.pool.connection(timeout=5) as conn:
                write_sink_error(conn, error)
        except Exception as failure:  # see the class docstring
            log.warning("set-aside records not recorded: %s", failure)


def ensure_input_topics(settings: Settings) -> None:
    """The topics of config.json, created if missing, before anything subscribes to them.

    InitialDag creates them too (both idempotent), but the speed layer starts with the stack,
    before anyone has triggered InitialDag, and a Kafka source cannot subscribe to a topic the
    broker does not have.
    """
    admin = admin_client(settings.kafka_bootstrap)
    try:
        changes = ensure_topics(admin, settings.kafka_topics)
    finally:
        admin.close()
    created = [change for change in changes if change.action != "unchanged"]
    if created:
        log.info("topics prepared: %s", ", ".join(f"{c.name} {c.action}" for c in created))


def speed_layer_session(
    settings: Settings,
    app_name: str = "lambdawatch-speed-layer",
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """The session the speed layer's queries are tuned for (benchmarks build it too). On a
    cluster it takes at most ``speed_layer_cores``: it never ends, and batch jobs need cores."""
    cluster = {} if settings.spark_is_local else {
        "spark.cores.max": str(settings.speed_layer_cores),
        "spark.driver.host": settings.driver_host,
    }  # fmt: skip
    return build_session(
        app_name,
        settings,
        with_jdbc=True,  # the baselines' stream-static join
        shuffle_partitions=settings.speed_layer_partitions,
        extra={**STATE_STORE, **cluster, **(extra or {})},
    )


def driver_alive(spark: SparkSession) -> bool:
    """Whether the driver's SparkContext still runs (a JVM gone answers no, too)."""
    try:
        return not spark.sparkContext._jsc.sc().isStopped()
    except Exception:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--queries", default=",".join(SPEED_LAYER_QUERIES), help="comma-separated subset"
    )
    parser.add_argument(
        "--available-now", action="store_true", help="process what is there, then stop"
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="default: $LAMBDAWATCH_VAR_DIR/checkpoints"
    )
    parser.add_argument(
        "--starting-offsets",
        choices=("earliest", "latest"),
        help="where a query without a checkpoint starts reading (latest skips the backlog); "
        "default: SPEED_LAYER_STARTING_OFFSETS",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    secrets = secrets_for(settings)
    ensure_input_topics(settings)
    spark = speed_layer_session(
        settings,
        extra={
            "spark.ui.port": str(settings.spark_ui_port),
            "spark.driver.bindAddress": settings.bind_host,
            "spark.driver.host": settings.driver_host,
        },
    )
    spark.sparkContext.setLogLevel("WARN")
    trigger = {"availableNow": True} if args.available_now else None
    checkpoints = args.checkpoint_dir or settings.var_path / "checkpoints"
    layer = SpeedLayer(
        spark,
        settings,
        secrets,
        checkpoints,
        trigger=trigger,
        starting_offsets=args.starting_offsets or settings.speed_layer_starting_offsets,
    )
    progress_table = ProgressTable(layer.pool)
    names = tuple(name for name in args.queries.split(",") if name)
    late = LateEvents(
        layer,
        {name: LATE_RULES[name](settings) for name in names if name in LATE_RULES},
        progress_table.previous_watermark,
    )

    def on_progress(progress: dict[str, Any]) -> None:  # recorded first: late events read it
        progress_table.record(progress)
        late.observe(progress)

    listener = ProgressFile(settings.var_path / "run" / "speed_layer.json", on_progress)

    def record_sink_error(error: SinkError) -> None:  # for status and for Pipeline health
        listener.record_error(error)
        progress_table.record_error(error)

    layer.guard.on_error = record_sink_error
    spark.streams.addListener(listener)
    try:
        if args.available_now:  # upstream queries to the end first, then their readers
            for stage in (
                [n for n in names if n not in DOWNSTREAM_QUERIES],
                [n for n in names if n in DOWNSTREAM_QUERIES],
            ):
                queries = layer.start(tuple(stage))
                log.info("started %d queries: %s", len(queries), ", ".join(stage))
                for query in queries:
                    query.awaitTermination()
                listener.wait_terminated(stage)
        else:
            log.info("starting %d queries: %s", len(names), ", ".join(names))
            supervise(
                spark.streams,
                lambda name: layer.start((name,))[0],
                names,
                RestartPolicy(),
                driver_alive=lambda: driver_alive(spark),
                on_restart=listener.restarting,
            )
    finally:
        spark.streams.removeListener(listener)  # no callbacks into an exiting Python
        late.close()  # the late events already counted are sent before the session stops
        spark.stop()
        layer.close()


if __name__ == "__main__":
    main()
