"""The platform configuration held in ``config.json``: topics, IPs, hot store, schedules, models.

These models only describe and validate; they do no I/O. ``lambdawatch.core.settings`` loads them
together with ``.env`` into one object.
"""

from __future__ import annotations

import ipaddress
import random
import re
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lambdawatch.core.tables import RETAINED

TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
IP_FEATURES = (
    "unq_dst_ip",
    "allow",
    "drop",
    "frequency",
    "pkts_sent",
    "pkts_received",
    "bytesin",
    "bytesout",
    "unq_dst_port",
)
# every measurement of a CDN event (the KMeans model's default features)
CDN_FEATURES = (
    "requests",
    "bytes_sent",
    "cache_hit_ratio",
    "latency_p50_ms",
    "latency_p95_ms",
    "status_4xx",
    "status_5xx",
    "origin_errors",
)
TopicRole = Literal[
    "ip_events",
    "server_events",
    "cdn_events",
    "weather_events",
    "metrics",
    "ip_averages",
    "cpu_status",
    "cdn_clusters",
    "metric_scores",
    "anomalies",
    "incidents",
    "ground_truth",
    "dead_letters",
]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in config.json must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicConfig(StrictModel):
    """One Kafka topic; ``role`` is how code refers to it, ``name`` is what the broker sees."""

    role: TopicRole
    name: Annotated[str, Field(pattern=TOPIC_NAME.pattern)]
    partitions: Annotated[int, Field(ge=1, le=1024)]
    replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    retention_ms: Annotated[int, Field(ge=-1)] = 7 * 24 * 3600 * 1000
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    # The topic's ``max.message.bytes`` and the ``max.request.size`` of every producer we run
    # that writes to it: one figure, so nothing we write is refused by the broker.
    max_message_bytes: Annotated[int, Field(ge=16 * 1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # Replicas that must have a write before an acks=all producer hears it succeeded: with
    # three replicas, 2 lets one broker be lost without losing an acknowledged record.
    min_insync_replicas: Annotated[int, Field(ge=1, le=16)] = 1

    @model_validator(mode="after")
    def _quorum_within_replicas(self) -> TopicConfig:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever succeed"
            )
        return self


class IpConfig(StrictModel):
    """The simulated source IPs and their partition assignment.

    ``addresses`` lists IPs explicitly; when fewer than ``count`` are given the rest are drawn
    deterministically from ``cidr`` with ``seed``. ``partition_map`` pins IPs to partitions of
    the IP topic; unpinned IPs are spread round-robin in address order, so the map is stable.
    """

    count: Annotated[int, Field(ge=1, le=100_000)] = 200
    cidr: str = "198.18.0.0/16"
    seed: int = 7
    addresses: list[str] = Field(default_factory=list)
    partition_map: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=lambda: list(IP_FEATURES))

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"not a CIDR network: {value!r}") from exc
        return value

    @field_validator("addresses")
    @classmethod
    def _valid_addresses(cls, value: list[str]) -> list[str]:
        for position, address in enumerate(value):
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise ValueError(f"item {position} is not an IP address: {address!r}") from exc
        if len(set(value)) != len(value):
            raise ValueError("addresses must be unique")
        return value

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(IP_FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {list(IP_FEATURES)}")
        if not value:
            raise ValueError("at least one feature is required")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> IpConfig:
        if len(self.addresses) > self.count:
            raise ValueError(f"addresses lists {len(self.addresses)} IPs but count is {self.count}")
        network = ipaddress.ip_network(self.cidr, strict=False)
        if network.num_addresses - 2 < self.count - len(self.addresses):
            raise ValueError(f"cidr {self.cidr} is too small for count={self.count}")
        unknown = sorted(set(self.partition_map) - set(self.resolved_addresses))
        if unknown:
            raise ValueError(f"partition_map names IPs that are not simulated: {unknown[:5]}")
        return self

    @cached_property
    def resolved_addresses(self) -> list[str]:
        """The full, deterministic IP list: explicit addresses first, then seeded draws."""
        chosen = list(self.addresses)
        taken = set(chosen)
        network = ipaddress.ip_network(self.cidr, strict=False)
        rng = random.Random(self.seed)
        hosts = network.num_addresses - 2
        while len(chosen) < self.count:
            candidate = str(network.network_address + 1 + rng.randrange(hosts))
            if candidate not in taken:
                taken.add(candidate)
                chosen.append(candidate)
        return chosen

    def partition_for(self, partitions: int) -> dict[str, int]:
        """IP → partition for a topic of ``partitions`` partitions (explicit pins win)."""
        unpinned = sorted(
            (ip for ip in self.resolved_addresses if ip not in self.partition_map),
            key=ipaddress.ip_address,
        )
        mapping = {ip: index % partitions for index, ip in enumerate(unpinned)}
        mapping.update(self.partition_map)
        return mapping


class HotStoreConfig(StrictModel):
    """Redis time-series layout: key naming, labels and how long samples stay hot."""

    key_template: str = "ts:ip:{ip}:{feature}"
    # How long a sample may wait in the hot store for the archive before Pipeline health raises
    # an archive-lag anomaly. Never a deletion: series do not expire samples by themselves, the
    # archive trims only what it committed and verified.
    retention_hours: Annotated[float, Field(gt=0)] = 48.0
    hot_window_hours: Annotated[float, Field(gt=0)] = 6.0
    duplicate_policy: Literal["last", "first"] = "last"
    # The archive's unit of work: about this many samples read, committed, verified and trimmed
    # at a time, so its memory stays bounded whatever the backlog.
    archive_chunk_samples: Annotated[int, Field(ge=1000, le=10_000_000)] = 500_000

    @field_validator("key_template")
    @classmethod
    def _has_placeholders(cls, value: str) -> str:
        missing = [name for name in ("{ip}", "{feature}") if name not in value]
        if missing:
            raise ValueError(f"must contain {' and '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _window_inside_retention(self) -> HotStoreConfig:
        if self.hot_window_hours > self.retention_hours:
            raise ValueError("hot_window_hours must not exceed retention_hours")
        return self


CRON_FIELD = r"(\*|\d+|\d+-\d+)(/\d+)?(,(\*|\d+|\d+-\d+)(/\d+)?)*"
CRON = re.compile(rf"^{CRON_FIELD}( {CRON_FIELD}){{4}}$")
PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@once", "@continuous", "asset"}


def _check_schedule(value: str | None) -> str | None:
    if value is None or value in PRESETS or CRON.match(value):
        return value
    raise ValueError(f"not a cron expression or preset: {value!r}")


class SchedulesConfig(StrictModel):
    """Cron expressions (or presets) for the scheduled DAGs; ``asset`` means data-aware."""

    feed_events: str | None = "*/5 * * * *"
    archive_hot_store: str | None = "@hourly"
    forecast_ip_traffic: str | None = "asset"
    baseline_stats: str | None = "@hourly"
    retrain_cdn_kmeans: str | None = "@daily"
    archive_raw_events: str | None = "@hourly"
    apply_retention: str | None = "@daily"

    @field_validator("*")
    @classmethod
    def _valid(cls, value: str | None) -> str | None:
        return _check_schedule(value)


class ProphetConfig(StrictModel):
    horizon_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 24
    interval_width: Annotated[float, Field(gt=0, lt=1)] = 0.95
    min_points: Annotated[int, Field(ge=2)] = 48
    holdout_hours: Annotated[int, Field(ge=1)] = 24
    seasonality_mode: Literal["additive", "multiplicative", "auto"] = "auto"
    # speed layer: outside the interval and over deviation_warn_factor half-widths from yhat
    # (1: the interval's edge) is WARN; over deviation_error_factor half-widths is ERROR
    deviation_warn_factor: Annotated[float, Field(ge=1)] = 1.5
    deviation_error_factor: Annotated[float, Field(gt=1)] = 3.0
    # which side of the forecast may be ERROR ("both", or one side; the other stays WARN).
    # "above": scans, exfiltration and DDoS are surges, a lost host is the silence detector's,
    # and a bursty host's quiet hours fall below a forecast that averages its bursts in.
    deviation_error_direction: Literal["above", "below", "both"] = "above"

    @model_validator(mode="after")
    def _error_beyond_warn(self) -> ProphetConfig:
        if self.deviation_error_factor <= self.deviation_warn_factor:
            raise ValueError("deviation_error_factor must be above deviation_warn_factor")
        return self


class KMeansConfig(StrictModel):
    k: Annotated[int, Field(ge=2, le=100)] = 5
    max_iter: Annotated[int, Field(ge=1)] = 50
    seed: int = 11
    threshold_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.99
    # beyond the threshold: WARN; beyond this multiple of it: ERROR
    error_threshold_factor: Annotated[float, Field(gt=1)] = 2.0
    training_hours: Annotated[int, Field(ge=1)] = 24
    features: list[str] = Field(default_factory=lambda: list(CDN_FEATURES))


class CpuAnomalyConfig(StrictModel):
    window: str = "500 milliseconds"
    watermark: str = "2 seconds"
    # against a server's learned baseline (tuned by bench/detection_quality) …
    warn_sigma: Annotated[float, Field(gt=0)] = 5.0
    error_sigma: Annotated[float, Field(gt=0)] = 6.0
    # … and against the fallback normal (normal_mean ± normal_stddev, or a backtest's given
    # normal) while a server has none: a population's σ is far wider than one server's
    fallback_warn_sigma: Annotated[float, Field(gt=0)] = 1.0
    fallback_error_sigma: Annotated[float, Field(gt=0)] = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> CpuAnomalyConfig:
        if self.error_sigma <= self.warn_sigma:
            raise ValueError("error_sigma must be greater than warn_sigma")
        if self.fallback_error_sigma <= self.fallback_warn_sigma:
            raise ValueError("fallback_error_sigma must be greater than fallback_warn_sigma")
        return self


class BaselineConfig(StrictModel):
    trailing_hours: Annotated[int, Field(ge=1)] = 24


class SilenceConfig(StrictModel):
    """A source silent for ``missed_intervals`` expected intervals raises an anomaly."""

    missed_intervals: Annotated[int, Field(ge=1)] = 3
    # per source; the slowest source's watermark holds the timeouts back
    watermark: str = "30 seconds"


class MetricScoresConfig(StrictModel):
    """The online scorer of the generic metrics topic (``spark_apps/detectors/metric_model``):
    nearest-neighbour discord, seasonal and spike channels turned into one calibrated score.
    ``range_gain`` weighs, in the spike channel, how far a sample lies beyond the range of the
    history before its last ``average`` samples (0 turns that test off). ``weekly`` says what
    the seasonal channel compares with: ``off`` (the default), the nearest past day; ``auto``,
    the same time a week ago once two weeks of a series show a week ago to be the closer match;
    ``on``, always a week ago. On the development corpus ``on`` cost about 4 points, and
    ``auto`` gained 1–3 in-sample but lost 1–2 held out; take ``auto`` for telemetry with
    weekly rhythms.

    ``warn_score`` and ``error_score`` are on the calibrated score: a score s means a deviation
    this unusual has probability about 10^(-10 s) in the series' recent history (0.3: one in a
    thousand, 0.5: one in 100,000). WARN's default is the threshold the NAB scorer found best on
    the development corpus for all three of its profiles (``bench/real_corpus``); ERROR's is
    HTM's red level, one in 100,000 (no profile chose a higher one).
    """

    history: Annotated[int, Field(ge=64, le=2500)] = 2016  # ≤ 2500: the state stays within 64 KB
    window: Annotated[int, Field(ge=2, le=64)] = 8
    seasonal_days: Annotated[int, Field(ge=0, le=28)] = 7
    warmup: Annotated[int, Field(ge=10)] = 300
    likelihood_memory: Annotated[float, Field(ge=10)] = 1000.0
    average: Annotated[int, Field(ge=1, le=100)] = 20
    rest: Annotated[int, Field(ge=0)] = 75
    rest_level: Annotated[float, Field(gt=0, le=1)] = 0.3
    range_gain: Annotated[float, Field(ge=0)] = 5.0
    # the seasonal channel's reference, a week ago or the nearest past day (``history`` must span
    # a week for a week ago to count)
    weekly: Literal["off", "auto", "on"] = "off"
    warn_score: Annotated[float, Field(gt=0, le=1)] = 0.313
    error_score: Annotated[float, Field(gt=0, le=1)] = 0.5
    # arrival time: a series that sends nothing this long forgets its model
    idle_ttl: timedelta = timedelta(days=7)

    @model_validator(mode="after")
    def _ordered(self) -> MetricScoresConfig:
        if self.error_score <= self.warn_score:
            raise ValueError("error_score must be greater than warn_score")
        if self.idle_ttl <= timedelta(0):
            raise ValueError("idle_ttl must be positive")
        return self


class ModelsConfig(StrictModel):
    prophet: ProphetConfig = ProphetConfig()
    kmeans: KMeansConfig = KMeansConfig()
    cpu_anomaly: CpuAnomalyConfig = CpuAnomalyConfig()
    baselines: BaselineConfig = BaselineConfig()
    silence: SilenceConfig = SilenceConfig()
    metric_scores: MetricScoresConfig = MetricScoresConfig()


class RetentionConfig(StrictModel):
    """How many days of each large table are kept (``apply_retention``, daily): a table
    partitioned by day loses whole days; the others have their old rows deleted."""

    days: dict[str, Annotated[int, Field(ge=1, le=36_500)]] = {
        "rt_cpu_windows": 7,
        "rt_ip_windows": 30,
        "rt_server_status": 90,
        "rt_cdn_clusters": 14,
        "ip_history": 400,
        "anomalies": 180,
        "speed_layer_progress": 14,
    }
    # Daily partitions made ahead of time, so rows seldom land in a table's DEFAULT partition.
    days_ahead: Annotated[int, Field(ge=1, le=60)] = 7

    @field_validator("days")
    @classmethod
    def _retained_tables(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(RETAINED))
        if unknown:
            raise ValueError(
                f"no retention for {', '.join(unknown)}; tables with one: {', '.join(RETAINED)}"
            )
        return value


class IncidentsConfig(StrictModel):
    """How anomalies become incidents (``spark_apps/transforms/incidents``): an entity's
    ERROR opens one, or ``warn_count`` of its WARNs in distinct windows within
    ``warn_window``; it resolves ``quiet`` after its last finding."""

    warn_count: Annotated[int, Field(ge=1)] = 4
    warn_window: timedelta = timedelta(minutes=1)
    quiet: timedelta = timedelta(minutes=5)
    # Each opening, escalation, reopening and resolution is POSTed to every webhook, signed
    # with INCIDENT_WEBHOOK_SECRET (``lambdawatch.core.webhooks``).
    webhooks: list[Annotated[str, Field(pattern=r"^https?://[^\s/$.?#].[^\s]*$")]] = Field(
        default_factory=list
    )
    webhook_timeout: timedelta = timedelta(seconds=5)
    webhook_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    webhook_first_retry: timedelta = timedelta(seconds=1)
    webhook_max_retry: timedelta = timedelta(minutes=5)
    webhook_max_age: timedelta = timedelta(hours=1)

    @model_validator(mode="after")
    def _positive(self) -> IncidentsConfig:
        spans = ("warn_window", "quiet", "webhook_timeout", "webhook_first_retry")
        for name in spans:
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.webhook_max_retry < self.webhook_first_retry:
            raise ValueError("webhook_max_retry must be at least webhook_first_retry")
        return self


class DeadLettersConfig(StrictModel):
    """How much of a rejected record a dead letter keeps.

    A dead letter carries the record's first ``max_raw_bytes`` (base64), its size and the
    SHA-256 of the whole record, so it stays small whatever arrives. A record larger than
    this is not parsed at all: no telemetry event is that large, and parsing megabytes of JSON
    per record would stall every query that reads the topic.
    """

    max_raw_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024


class GeneratorsConfig(StrictModel):
    seed: int = 20260101
    ip_interval_seconds: Annotated[int, Field(ge=1)] = 60
    servers: Annotated[int, Field(ge=1)] = 50
    server_interval_ms: Annotated[int, Field(ge=10)] = 250
    cdn_edges: Annotated[int, Field(ge=1)] = 40
    cdn_interval_seconds: Annotated[int, Field(ge=1)] = 10
    weather_interval_seconds: Annotated[int, Field(ge=1)] = 60
    anomaly_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
