"""Event schemas shared by the generators, the producers and the Spark speed layer.

Each source is described once, as an ordered list of (field, type) and the fields its
detectors need (``required``); the rest are optional and default to null, so a user's
``time,cpu`` file can reach the CPU detector. Python code validates and serialises events from
it; ``spark_schema`` turns the same list into a Spark ``StructType`` so the streaming queries
parse exactly what the producers send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from lambdawatch.core.config_model import CDN_FEATURES, IP_FEATURES

FieldType = Literal["string", "long", "double", "timestamp", "int"]
Source = Literal["ip", "server", "cdn", "weather", "metric"]


@dataclass(frozen=True)
class EventSchema:
    source: Source
    topic_role: str
    key_field: str
    fields: tuple[tuple[str, FieldType], ...]
    required: tuple[str, ...]  # what a detector needs; ``event_id`` is derived when absent
    identity: tuple[str, ...] = ()  # what, beside the time, identifies an event (default: key)
    value_field: str | None = None  # the one measured value, when a source has one

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name not in self.required)

    @property
    def identity_fields(self) -> tuple[str, ...]:
        return self.identity or (self.key_field,)

    def field_type(self, name: str) -> FieldType:
        return dict(self.fields)[name]


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
    required=("src_ip", *IP_FEATURES, "timestamp"),
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
    required=("server_id", "cpu_usage", "timestamp"),
    value_field="cpu_usage",
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
    required=("edge_id", *CDN_FEATURES, "timestamp"),
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
    required=("city", "temperature", "timestamp"),
    value_field="temperature",
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
    required=("entity", "metric", "value", "timestamp"),
    identity=("entity", "metric"),
    value_field="value",
)
SCHEMAS: dict[str, EventSchema] = {
    schema.source: schema
    for schema in (IP_SCHEMA, SERVER_SCHEMA, CDN_SCHEMA, WEATHER_SCHEMA, METRIC_SCHEMA)
}

GROUND_TRUTH_FIELDS = ("label_id", "source", "entity", "kind", "start_ts", "end_ts", "details")


def event_id(source: str, identity: tuple[str, ...], timestamp_ms: int) -> str:
    """``source:identity…:epoch-ms``: the id of an event that came without one, stable so a
    re-sent event keeps it (the generators write the same form). Spark derives it for an event
    without ``event_id`` by the same rule (``spark_apps.transforms.parsing``)."""
    return ":".join((source, *identity, str(timestamp_ms)))


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
