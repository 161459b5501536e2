"""The hot time-series store in Redis: one interface, two backends.

* ``TimeSeriesStore`` uses RedisTimeSeries commands (``TS.*``), built into Redis 8 and Redis
  Stack (the docker-compose deployment).
* ``PlainRedisStore`` keeps the same semantics on plain Redis (Debian's redis-server in local
  mode): one small hash per series and hour plus a sorted set of bucket starts, a Lua script
  that applies the duplicate policy and the retention server-side in one round trip per
  series, and label index sets (layout described above ``BUCKET_MS``).

Semantics shared by both (and by the contract tests): a series has labels and a retention
measured back from its newest sample; a duplicate timestamp keeps the ``last`` (default) or
``first`` value, so re-sending a sample is idempotent; ranges are inclusive; aggregation buckets
are aligned to multiples of the bucket size since the epoch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

import numpy as np
import redis

from lambdawatch.core.events import parse_timestamp_ms
from lambdawatch.core.secrets import Secrets, secrets_for
from lambdawatch.core.settings import Settings

Sample = tuple[str, int, float]  # (series key, timestamp ms, value)
Point = tuple[int, float]
Aggregation = Literal["avg", "sum", "min", "max", "count", "first", "last"]
DuplicatePolicy = Literal["last", "first"]
PIPELINE_CHUNK = 4096


class HotStore(Protocol):
    backend: str

    def ensure_series(self, key: str, labels: dict[str, str], retention_ms: int) -> bool: ...

    def add(self, samples: Iterable[Sample]) -> int: ...

    def range(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        aggregation: Aggregation | None = None,
        bucket_ms: int | None = None,
    ) -> list[Point]: ...

    def mrange(
        self, filters: dict[str, str], start_ms: int, end_ms: int
    ) -> dict[str, list[Point]]: ...

    def delete_range(self, key: str, start_ms: int, end_ms: int) -> int: ...

    def delete_ranges(self, keys: Sequence[str], start_ms: int, end_ms: int) -> int:
        """``delete_range`` of every key, in one round trip."""
        ...

    def labels(self, key: str) -> dict[str, str]: ...

    def retention_ms(self, key: str) -> int: ...

    def set_retention(self, key: str, retention_ms: int) -> None: ...

    def first_timestamps(self, keys: Sequence[str]) -> dict[str, int | None]:
        """Each key's oldest sample (None for an empty series), in one or two round trips."""
        ...

    def query_index(self, filters: dict[str, str]) -> list[str]: ...


def aggregate(points: Sequence[Point], aggregation: Aggregation, bucket_ms: int) -> list[Point]:
    """Bucket ``points`` (sorted by time) the way ``TS.RANGE … AGGREGATION`` does."""
    if bucket_ms <= 0:
        raise ValueError("bucket_ms must be positive")
    buckets: dict[int, list[float]] = defaultdict(list)
    for timestamp, value in points:
        buckets[timestamp - timestamp % bucket_ms].append(value)
    reducers = {
        "avg": lambda values: math.fsum(values) / len(values),
        "sum": math.fsum,
        "min": min,
        "max": max,
        "count": lambda values: float(len(values)),
        "first": lambda values: values[0],
        "last": lambda values: values[-1],
    }
    reduce = reducers[aggregation]
    return [(start, float(reduce(values))) for start, values in sorted(buckets.items())]


def _group(samples: Iterable[Sample]) -> dict[str, list[tuple[int, float]]]:
    grouped: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for key, timestamp, value in samples:
        grouped[key].append((int(timestamp), float(value)))
    return grouped


# Layout per series ``key``: one hash per time bucket, ``key:h:<bucket start>`` (field =
# timestamp, value = sample), and a sorted set ``key:b`` of bucket starts. A sample costs one
# hash insert into a small, compact (listpack) hash; duplicates need no lookup (HSET overwrites:
# last wins; HSETNX keeps: first wins); retention drops whole buckets plus the expired fields of
# the boundary bucket. Samples travel as one little-endian (float64 ts, float64 value) blob per
# series and batch, decoded by Redis's bundled Lua ``struct`` library: redis-py packs four
# arguments per series instead of two per sample. (Derived key names are not cluster-slot
# safe; this backend serves the single local redis-server, clusters run RedisTimeSeries.)
BUCKET_MS = 3_600_000

ADD_SCRIPT = """
local key, meta = KEYS[1], KEYS[2]
local keep_last = ARGV[1] == 'last'
local retention = tonumber(ARGV[2])
local bucket_ms = tonumber(ARGV[3])
local blob = ARGV[4]
local buckets, order = {}, {}
local newest = tonumber(redis.call('HGET', meta, '__newest') or '-1')
local pos, size = 1, #blob
while pos <= size do
  local ts, value
  ts, value, pos = struct.unpack('<dd', blob, pos)
  local b = ts - (ts % bucket_ms)
  local fields = buckets[b]
  if fields == nil then
    fields = {}
    buckets[b] = fields
    order[#order + 1] = b
  end
  fields[#fields + 1] = string.format('%d', ts)
  fields[#fields + 1] = string.format('%.17g', value)
  if ts > newest then newest = ts end
end
local added = 0
for _, b in ipairs(order) do
  local name = string.format('%d', b)
  local hash = key .. ':h:' .. name
  local fields = buckets[b]
  for i = 1, #fields, 2000 do
    local last = math.min(i + 1999, #fields)
    if keep_last then
      added = added + redis.call('HSET', hash, unpack(fields, i, last))
    else
      for j = i, last, 2 do added = added + redis.call('HSETNX', hash, fields[j], fields[j + 1]) end
    end
  end
  redis.call('ZADD', key .. ':b', b, name)
end
redis.call('HSET', meta, '__newest', string.format('%d', newest))
if retention > 0 and newest >= 0 then
  local cutoff = newest - retention
  local upper = '(' .. string.format('%d', cutoff)
  local expired = redis.call('ZRANGE', key .. ':b', '-inf', upper, 'BYSCORE')
  for _, name in ipairs(expired) do
    local hash = key .. ':h:' .. name
    if tonumber(name) + bucket_ms <= cutoff then
      redis.call('DEL', hash)
      redis.call('ZREM', key .. ':b', name)
    else
      local old = {}
      for _, field in ipairs(redis.call('HKEYS', hash)) do
        if tonumber(field) < cutoff then old[#old + 1] = field end
      end
      for i = 1, #old, 2000 do
        redis.call('HDEL', hash, unpack(old, i, math.min(i + 1999, #old)))
      end
    end
  end
end
return added
"""

RANGE_SCRIPT = """
local key = KEYS[1]
local low, high, bucket_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = low - (low % bucket_ms)
local out = {}
for _, name in ipairs(redis.call('ZRANGE', key .. ':b', first, high, 'BYSCORE')) do
  local flat = redis.call('HGETALL', key .. ':h:' .. name)
  for i = 1, #flat, 2 do
    local ts = tonumber(flat[i])
    if ts >= low and ts <= high then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
    end
  end
end
return out
"""

DELETE_SCRIPT = """
local key = KEYS[1]
local low, high, bucket_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = low - (low % bucket_ms)
local removed = 0
for _, name in ipairs(redis.call('ZRANGE', key .. ':b', first, high, 'BYSCORE')) do
  local hash = key .. ':h:' .. name
  local b = tonumber(name)
  if b >= low and b + bucket_ms - 1 <= high then
    -- the whole bucket is in range (the archive's usual case): drop it in one step
    removed = removed + redis.call('HLEN', hash)
    redis.call('UNLINK', hash)
  else
    local doomed = {}
    for _, field in ipairs(redis.call('HKEYS', hash)) do
      local ts = tonumber(field)
      if ts >= low and ts <= high then doomed[#doomed + 1] = field end
    end
    for i = 1, #doomed, 2000 do
      removed = removed + redis.call('HDEL', hash, unpack(doomed, i, math.min(i + 1999, #doomed)))
    end
  end
  if redis.call('EXISTS', hash) == 0 then redis.call('ZREM', key .. ':b', name) end
end
return removed
"""


class PlainRedisStore:
    """Time series on plain Redis data structures (no module needed)."""

    backend = "plain"

    def __init__(self, client: redis.Redis, duplicate_policy: DuplicatePolicy = "last") -> None:
        self.client = client
        self.duplicate_policy = duplicate_policy
        self._add = client.register_script(ADD_SCRIPT)
        self._range = client.register_script(RANGE_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)

    @staticmethod
    def _meta(key: str) -> str:
        return f"lwmeta:{key}"

    @staticmethod
    def _index(label: str, value: str) -> str:
        return f"lwidx:{label}={value}"

    def ensure_series(self, key: str, labels: dict[str, str], retention_ms: int) -> bool:
        meta = self._meta(key)
        created = bool(self.client.hsetnx(meta, "__retention_ms", retention_ms))
        if created:
            pipe = self.client.pipeline(transaction=True)
            if labels:
                pipe.hset(meta, mapping={f"label:{k}": v for k, v in labels.items()})
            for label, value in labels.items():
                pipe.sadd(self._index(label, value), key)
            pipe.sadd("lwidx:__all__", key)
            pipe.execute()
        return created

    def _retention(self, keys: list[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._meta(key), "__retention_ms")
        return {key: int(value or 0) for key, value in zip(keys, pipe.execute(), strict=True)}

    def add(self, samples: Iterable[Sample]) -> int:
        grouped = _group(samples)
        retention = self._retention(list(grouped))
        added = 0
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for key, points in grouped.items():
            blob = np.asarray(points, dtype="<f8").tobytes()
            self._add(
                keys=[key, self._meta(key)],
                args=[self.duplicate_policy, retention[key], BUCKET_MS, blob],
                client=pipe,
            )
            queued += len(points)
            if queued >= PIPELINE_CHUNK * 8:
                added += sum(pipe.execute())
                queued = 0
        if queued:
            added += sum(pipe.execute())
        return added

    @staticmethod
    def _pairs(flat: list[bytes]) -> list[Point]:
        return sorted((int(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2))

    def range(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        aggregation: Aggregation | None = None,
        bucket_ms: int | None = None,
    ) -> list[Point]:
        points = self._pairs(self._range(keys=[key], args=[start_ms, end_ms, BUCKET_MS]))
        if aggregation:
            return aggregate(points, aggregation, bucket_ms or 1)
        return points

    def query_index(self, filters: dict[str, str]) -> list[str]:
        sets = [self._index(k, v) for k, v in filters.items()] or ["lwidx:__all__"]
        return sorted(member.decode() for member in self.client.sinter(sets))

    def mrange(self, filters: dict[str, str], start_ms: int, end_ms: int) -> dict[str, list[Point]]:
        keys = self.query_index(filters)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            self._range(keys=[key], args=[start_ms, end_ms, BUCKET_MS], client=pipe)
        return {key: self._pairs(flat) for key, flat in zip(keys, pipe.execute(), strict=True)}

    def delete_range(self, key: str, start_ms: int, end_ms: int) -> int:
        return int(self._delete(keys=[key], args=[start_ms, end_ms, BUCKET_MS]))

    def delete_ranges(self, keys: Sequence[str], start_ms: int, end_ms: int) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            self._delete(keys=[key], args=[start_ms, end_ms, BUCKET_MS], client=pipe)
        return sum(int(removed) for removed in pipe.execute())

    def retention_ms(self, key: str) -> int:
        return self._retention([key])[key]

    def set_retention(self, key: str, retention_ms: int) -> None:
        self.client.hset(self._meta(key), "__retention_ms", retention_ms)

    def first_timestamps(self, keys: Sequence[str]) -> dict[str, int | None]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(f"{key}:b", 0, 0)
        buckets = {key: first[0] for key, first in zip(keys, pipe.execute(), strict=True) if first}
        for key, bucket in buckets.items():
            pipe.hkeys(f"{key}:h:{_text(bucket)}")
        stamps = dict(zip(buckets, pipe.execute(), strict=True))
        return {
            key: min(int(stamp) for stamp in stamps[key]) if stamps.get(key) else None
            for key in keys
        }

    def labels(self, key: str) -> dict[str, str]:
        meta = self.client.hgetall(self._meta(key))
        return {
            k.decode()[len("label:") :]: v.decode()
            for k, v in meta.items()
            if k.decode().startswith("label:")
        }


class TimeSeriesStore:
    """RedisTimeSeries (``TS.*``) backend."""

    backend = "timeseries"

    def __init__(self, client: redis.Redis, duplicate_policy: DuplicatePolicy = "last") -> None:
        self.client = client
        self.duplicate_policy = duplicate_policy

    def ensure_series(self, key: str, labels: dict[str, str], retention_ms: int) -> bool:
        args: list[object] = ["TS.CREATE", key, "RETENTION", retention_ms]
        args += ["DUPLICATE_POLICY", self.duplicate_policy.upper()]
        if labels:
            args.append("LABELS")
            for label, value in labels.items():
                args += [label, value]
        try:
            self.client.execute_command(*args)
        except redis.ResponseError as exc:
            if "already exists" in str(exc).lower():
                return False
            raise
        return True

    def add(self, samples: Iterable[Sample]) -> int:
        added = 0
        batch: list[object] = []
        pipe = self.client.pipeline(transaction=False)
        for key, timestamp, value in samples:
            batch += [key, int(timestamp), float(value)]
            if len(batch) >= PIPELINE_CHUNK * 3:
                pipe.execute_command("TS.MADD", *batch)
                batch = []
        if batch:
            pipe.execute_command("TS.MADD", *batch)
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, Exception):
                raise result
            added += sum(1 for item in result if not isinstance(item, Exception))
        return added

    @staticmethod
    def _points(raw: list) -> list[Point]:  # type: ignore[type-arg]
        # RedisTimeSeries answers in time order; sorting keeps that contract for servers that
        # emulate it (fakeredis returns out-of-order inserts unsorted).
        return sorted((int(timestamp), float(value)) for timestamp, value in raw)

    def range(
        self,
        key: str,
        start_ms: int,
        end_ms: int,
        aggregation: Aggregation | None = None,
        bucket_ms: int | None = None,
    ) -> list[Point]:
        args: list[object] = ["TS.RANGE", key, start_ms, end_ms]
        if aggregation:
            args += ["AGGREGATION", aggregation, bucket_ms or 1]
        return self._points(self.client.execute_command(*args))

    def _filters(self, filters: dict[str, str]) -> list[str]:
        return [f"{k}={v}" for k, v in filters.items()]

    def mrange(self, filters: dict[str, str], start_ms: int, end_ms: int) -> dict[str, list[Point]]:
        raw = self.client.execute_command(
            "TS.MRANGE", start_ms, end_ms, "FILTER", *self._filters(filters)
        )
        result: dict[str, list[Point]] = {}
        if isinstance(raw, dict):  # RESP3 / some clients return a mapping
            for key, entry in raw.items():
                result[_text(key)] = self._points(entry[-1])
        else:
            for key, _labels, points in raw:
                result[_text(key)] = self._points(points)
        return dict(sorted(result.items()))

    def delete_range(self, key: str, start_ms: int, end_ms: int) -> int:
        return int(self.client.execute_command("TS.DEL", key, start_ms, end_ms))

    def delete_ranges(self, keys: Sequence[str], start_ms: int, end_ms: int) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("TS.DEL", key, start_ms, end_ms)
        return sum(int(removed) for removed in pipe.execute())

    def _info(self, key: str) -> dict[str, object]:
        info = self.client.execute_command("TS.INFO", key)
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2], strict=True))
        return {_text(k): v for k, v in info.items()}

    def retention_ms(self, key: str) -> int:
        return int(self._info(key)["retentionTime"])  # type: ignore[call-overload]

    def set_retention(self, key: str, retention_ms: int) -> None:
        self.client.execute_command("TS.ALTER", key, "RETENTION", retention_ms)

    def first_timestamps(self, keys: Sequence[str]) -> dict[str, int | None]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("TS.RANGE", key, "-", "+", "COUNT", 1)
        return {
            key: int(first[0][0]) if first else None
            for key, first in zip(keys, pipe.execute(), strict=True)
        }

    def labels(self, key: str) -> dict[str, str]:
        raw = self._info(key).get("labels", [])
        if isinstance(raw, dict):
            return {_text(k): _text(v) for k, v in raw.items()}
        return {_text(k): _text(v) for k, v in raw}  # type: ignore[union-attr]

    def query_index(self, filters: dict[str, str]) -> list[str]:
        found = self.client.execute_command("TS.QUERYINDEX", *self._filters(filters))
        return sorted(_text(key) for key in found)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def detect_backend(client: redis.Redis) -> Literal["timeseries", "plain"]:
    """Ask the server: ``MODULE LIST`` names timeseries, or a ``TS.*`` command is known."""
    try:
        modules = client.execute_command("MODULE", "LIST")
        for module in modules or []:
            entry = (
                module
                if isinstance(module, dict)
                else dict(zip(module[::2], module[1::2], strict=False))
            )
            name = _text(entry.get(b"name", entry.get("name", "")))
            if name.lower() == "timeseries":
                return "timeseries"
    except redis.ResponseError:
        pass
    try:
        client.execute_command("TS.INFO", "__lambdawatch_probe__")
    except redis.ResponseError as exc:
        return "plain" if "unknown command" in str(exc).lower() else "timeseries"
    return "timeseries"


def open_hot_store(client: redis.Redis, settings: Settings) -> HotStore:
    policy = settings.hot_store.duplicate_policy
    if detect_backend(client) == "timeseries":
        return TimeSeriesStore(client, policy)
    return PlainRedisStore(client, policy)


def redis_client(settings: Settings, secrets: Secrets | None = None) -> redis.Redis:
    """A client of the hot store, authenticated with the generated ``REDIS_PASSWORD``."""
    secrets = secrets or secrets_for(settings)
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=secrets.redis_password.get_secret_value(),
    )


def series_key(settings: Settings, ip: str, feature: str) -> str:
    return settings.hot_store.key_template.format(ip=ip, feature=feature)


def ensure_ip_series(store: HotStore, settings: Settings) -> int:
    """Create the series per IP × feature (labels ``ip``, ``feature``); return how many were new.

    No series expires samples by itself (retention 0, set on series an earlier version created
    with one): only the archive trims, and only what it has committed and verified, so a late
    archive never loses a sample. ``hot_store.retention_hours`` is how late it may be before
    Pipeline health says so (``lambdawatch.core.pipeline_health.archive_lag``)."""
    created = 0
    for ip in settings.ips.resolved_addresses:
        for feature in settings.ips.features:
            key = series_key(settings, ip, feature)
            labels = {"source": "ip", "ip": ip, "feature": feature}
            if store.ensure_series(key, labels, 0):
                created += 1
            elif store.retention_ms(key) != 0:
                store.set_retention(key, 0)
    return created


def ip_event_samples(settings: Settings, events: Iterable[dict[str, object]]) -> list[Sample]:
    """One sample per IP event × configured feature, timestamped by the event."""
    template, features = settings.hot_store.key_template, settings.ips.features
    samples: list[Sample] = []
    for event in events:
        timestamp = parse_timestamp_ms(str(event["timestamp"]))
        ip = str(event["src_ip"])
        for feature in features:
            samples.append(
                (template.format(ip=ip, feature=feature), timestamp, float(event[feature]))
            )  # type: ignore[arg-type]
    return samples
