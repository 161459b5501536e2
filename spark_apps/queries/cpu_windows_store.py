"""The ``cpu_windows_store`` query.

The CPU status topic → each window's last verdict in PostgreSQL.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core import db
from lambdawatch.core.tables import TABLES
from spark_apps.detectors.anomaly import ANOMALY_COLUMNS, ANOMALY_KEY
from spark_apps.detectors.cpu import (
    CPU_WINDOW_COLUMNS,
    cpu_store_rows,
    latest_cpu_store_writes,
    parse_cpu_status,
)
from spark_apps.io import StreamIO

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """The CPU status topic → ``rt_cpu_windows`` and the ``anomalies`` table: each window's
    last verdict, upserted on natural keys (so records Kafka holds twice land once); an
    anomaly row whose window a later verdict found SAFE is deleted."""
    statuses = parse_cpu_status(io.kafka_source("cpu_status"))

    def sink(frame: DataFrame, _batch_id: int) -> None:
        writes = latest_cpu_store_writes(cpu_store_rows(frame).toArrow())
        if writes.windows.num_rows == 0:
            return
        # one transaction: a micro-batch's windows and anomalies land together or not at all
        with io.pool.connection() as conn, conn.transaction():
            db.upsert_rows(
                conn,
                "rt_cpu_windows",
                CPU_WINDOW_COLUMNS,
                writes.windows,
                TABLES["rt_cpu_windows"].key,
            )
            db.upsert_rows(conn, "anomalies", ANOMALY_COLUMNS, writes.anomalies, ANOMALY_KEY)
            db.delete_rows(conn, "anomalies", ANOMALY_KEY, writes.withdrawn)

    return io.start_query("cpu_windows_store", statuses, batch_sink=sink)
