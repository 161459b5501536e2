"""The ``forecast_deviations`` query.

IP samples judged against the latest Prophet forecast for their hour.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lambdawatch.core.events import (
    IP_SCHEMA,
)
from spark_apps.detectors.forecast_deviations import (
    FORECAST_LOOKUP_SCHEMA,
    forecast_deviations,
    judge_against_forecast,
)
from spark_apps.io import StreamIO
from spark_apps.transforms.rollups import (
    melt_ip_features,
)

log = logging.getLogger("lambdawatch.speed_layer")


def start(io: StreamIO) -> StreamingQuery:
    """IP samples against the latest forecast for their hour (read per micro-batch, so a
    new forecast run applies at once)."""
    prophet = io.settings.models.prophet
    factor, direction = prophet.deviation_error_factor, prophet.deviation_error_direction
    warn_factor = prophet.deviation_warn_factor
    events, _dead = io.parse(io.kafka_source("ip_events"), IP_SCHEMA, "forecast_deviations")
    samples = melt_ip_features(events, io.settings.ips.features)

    def sink(frame: DataFrame, _batch_id: int) -> None:
        frame = frame.persist()
        try:
            bounds = frame.agg(
                F.min(F.unix_micros("timestamp")), F.max(F.unix_micros("timestamp"))
            ).first()
            if bounds is None or bounds[0] is None:
                return
            forecasts = io.forecasts(bounds[0], bounds[1])
            if not forecasts:
                return
            lookup = io.spark.createDataFrame(forecasts, FORECAST_LOOKUP_SCHEMA)
            judged = judge_against_forecast(frame, lookup)
            io.record_anomalies(
                forecast_deviations(judged, factor, direction, warn_factor), "forecast_deviations"
            )
        finally:
            frame.unpersist()

    return io.start_query("forecast_deviations", samples, batch_sink=sink)
