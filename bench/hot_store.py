"""Hot-store write and read throughput per backend, next to ``redis-benchmark -P 16``.

The plain backend runs against a real local redis-server; the RedisTimeSeries backend can
only run against fakeredis here (the module is not packaged for Debian), so its numbers
measure our client path over an in-process emulator, not a server, and are labelled so.
Memory per stored sample is read from ``INFO memory`` before and after the writes.

Goal (issue 2/6): >= 200,000 samples/s written from one process to local Redis.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from typing import Any

import fakeredis
import redis
from rich.console import Console

from bench.common import running_stack, write_result
from lambdawatch.core.hot_store import HotStore, PlainRedisStore, TimeSeriesStore

T0 = 1_767_225_600_000
SERIES = 200 * 9  # the default IP × feature layout
BATCH_SAMPLES = 50_000


def redis_benchmark(host: str, port: int, password: str, requests: int) -> dict[str, float]:
    binary = shutil.which("redis-benchmark")
    if not binary:
        raise FileNotFoundError("redis-benchmark not found (Debian package redis-tools)")
    output = subprocess.run(
        [
            binary,
            "-h",
            host,
            "-p",
            str(port),
            "--user",
            "default",
            "-a",
            password,
            "-P",
            "16",
            "-n",
            str(requests),
            "-q",
            "-t",
            "set,zadd",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = {}
    for line in output.replace("\r", "\n").splitlines():
        match = re.match(r"^(\w+).*?: ([\d.]+) requests per second", line.strip())
        if match:
            rates[match.group(1).lower()] = float(match.group(2))
    return rates


def _samples(count: int, per_series: int) -> list[tuple[str, int, float]]:
    samples = []
    for index in range(count):
        series, step = index % SERIES, index // SERIES
        samples.append((f"ts:bench:{series}", T0 + step * 60_000, float(index % 997)))
    del per_series
    return samples


def _used_memory(client: Any) -> int | None:
    try:
        return int(client.info("memory")["used_memory"])
    except redis.ResponseError:  # fakeredis has no INFO
        return None


def measure(store: HotStore, client: Any, samples: int) -> dict[str, float | None]:
    for series in range(SERIES):
        store.ensure_series(f"ts:bench:{series}", {"bench": "1", "series": str(series)}, 0)
    data = _samples(samples, samples // SERIES)
    memory_before = _used_memory(client)
    start = time.perf_counter()
    written = 0
    for offset in range(0, len(data), BATCH_SAMPLES):
        written += store.add(data[offset : offset + BATCH_SAMPLES])
    write_seconds = time.perf_counter() - start
    memory_after = _used_memory(client)
    start = time.perf_counter()
    read = sum(len(store.range(f"ts:bench:{s}", 0, T0 * 2)) for s in range(SERIES))
    read_seconds = time.perf_counter() - start
    return {
        "samples_written": written,
        "write_samples_per_s": round(written / write_seconds),
        "samples_read": read,
        "read_samples_per_s": round(read / read_seconds),
        "bytes_per_sample": (
            round((memory_after - memory_before) / max(written, 1), 1)
            if memory_before is not None and memory_after is not None
            else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    console = Console()
    with running_stack(["redis"]) as (settings, stack):
        password = stack.secrets.redis_password.get_secret_value()
        real = redis.Redis(
            host=settings.redis_host, port=settings.redis_port, db=2, password=password
        )
        real.flushdb()
        reference = redis_benchmark(
            settings.redis_host, settings.redis_port, password, args.samples
        )
        real.flushdb()
        plain = measure(PlainRedisStore(real), real, args.samples)
        real.flushdb()
    fake = fakeredis.FakeRedis()
    emulated = measure(TimeSeriesStore(fake), fake, min(args.samples, 200_000))
    result = {
        "samples": args.samples,
        "series": SERIES,
        "reference_redis_benchmark_P16_requests_per_s": reference,
        "plain_backend_real_redis": plain,
        "timeseries_backend_fakeredis_emulator": {
            **emulated,
            "note": "fakeredis runs in-process in Python; not comparable with a server",
        },
        "ratios": {
            "plain_write_vs_zadd_P16": round(plain["write_samples_per_s"] / reference["zadd"], 3),  # type: ignore[operator]
        },
        "goals": {"write_samples_per_s": 200_000, "met": plain["write_samples_per_s"] >= 200_000},  # type: ignore[operator]
    }
    path = write_result("hot_store", result)
    console.print_json(data=result)
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
