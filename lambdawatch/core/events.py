"""Event schemas shared by the generators, the producers and the Spark speed layer.

Each source is described once, as an ordered list of (field, type). Python code validates and
serialises events from it; ``spark_schema`` turns the same list into a Spark ``StructType``
so the streaming queries parse exactly what the producers send.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

FieldType = Literal["string", "long", "double", "timestamp", "int"]
Source = Literal["ip", "server", "cdn", "weather", "metric"]
EVENT_NAMESPACE = uuid.UUID("5b3c1f0e-8a41-4d52-9a7c-2f61c1d0a7e3")


@dataclass(frozen=True)
class EventSchema:
    source: Source
    topic_role: str
    key_field: str
    fields: tuple[tuple[str, FieldType], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)


IP_SCHEMA = EventSchema(
    source="ip",
    topic_role="ip_events",
    key_field="src_ip",
    fields=(
        ("event_id", "string"),
        ("src_ip", "string"),
        ("unq_dst_ip", "long"),
        ("allow", "long"),
        ("drop", "long"),
        ("frequency", "long"),
        ("pkts_sent", "long"),
        ("pkts_received", "long"),
        ("bytesin", "long"),
        ("bytesout", "long"),
        ("unq_dst_port", "long"),
        ("timestamp", "timestamp"),
    ),
)
SERVER_SCHEMA = EventSchema(
    source="server",
    topic_role="server_events",
    key_field="server_id",
    fields=(
        ("event_id", "string"),
        ("server_id", "string"),
        ("server_type", "string"),
        ("datacenter", "string"),
        ("country_code", "string"),
        ("country_name", "string"),
        ("city", "string"),
        ("status_color", "string"),
        ("severity_level", "int"),
        ("estimated_resolution_time", "long"),
        ("cpu_usage", "double"),
        ("mem_usage", "double"),
        ("timestamp", "timestamp"),
    ),
)
CDN_SCHEMA = EventSchema(
    source="cdn",
    topic_role="cdn_events",
    key_field="edge_id",
    fields=(
        ("event_id", "string"),
        ("edge_id", "string"),
        ("pop", "string"),
        ("region", "string"),
        ("requests", "long"),
        ("bytes_sent", "long"),
        ("cache_hit_ratio", "double"),
        ("latency_p50_ms", "double"),
        ("latency_p95_ms", "double"),
        ("status_4xx", "long"),
        ("status_5xx", "long"),
        ("origin_errors", "long"),
        ("timestamp", "timestamp"),
    ),
)
WEATHER_SCHEMA = EventSchema(
    source="weather",
    topic_role="weather_events",
    key_field="city",
    fields=(
        ("event_id", "string"),
        ("city", "string"),
        ("lat", "double"),
        ("lon", "double"),
        ("temperature", "double"),
        ("feels_like", "double"),
        ("timestamp", "timestamp"),
    ),
)
METRIC_SCHEMA = EventSchema(
    source="metric",
    topic_role="metrics",
    key_field="entity",
    fields=(
        ("event_id", "string"),
        ("entity", "string"),
        ("metric", "string"),
        ("value", "double"),
        ("timestamp", "timestamp"),
    ),
)
SCHEMAS: dict[str, EventSchema] = {
    schema.source: schema
    for schema in (IP_SCHEMA, SERVER_SCHEMA, CDN_SCHEMA, WEATHER_SCHEMA, METRIC_SCHEMA)
}

GROUND_TRUTH_FIELDS = ("label_id", "source", "entity", "kind", "start_ts", "end_ts", "details")


def event_id(source: str, entity: str, timestamp_ms: int, metric: str = "") -> str:
    """Stable id from what identifies an event, so a re-sent event keeps its id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source}|{entity}|{metric}|{timestamp_ms}"))


def iso_utc(timestamp_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: the one timestamp format on the wire."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def parse_timestamp_ms(text: str) -> int:
    """Parse an ISO-8601 timestamp (``Z`` or offset; naive means UTC) to epoch milliseconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def serialize(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def spark_schema(schema: EventSchema) -> Any:
    """The Spark StructType for ``schema`` (imports PySpark lazily; generators don't need it)."""
    from pyspark.sql import types as T  # noqa: N812, PLC0415 - PySpark is optional here

    mapping = {
        "string": T.StringType(),
        "long": T.LongType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "timestamp": T.TimestampType(),
    }
    return T.StructType([T.StructField(name, mapping[kind], True) for name, kind in schema.fields])
