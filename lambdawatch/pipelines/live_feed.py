"""Running a generator live: simulated time advanced at a chosen event rate.

Real time by default (event timestamps are the wall clock). With ``rate`` the simulated
clock runs faster than the wall clock and starts far enough in the past that it reaches "now"
when the run ends, so no event is ever stamped in the future. ``max_rate`` sends back-to-back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generators.registry import entities_per_interval, make_generator
from lambdawatch.core.hot_store import HotStore, ensure_ip_series
from lambdawatch.core.producers import EventProducer
from lambdawatch.core.settings import Settings
from lambdawatch.pipelines.event_feed import FeedCounts, feed_batch, publish_events

TICK_SECONDS = 0.5
MAX_RATE_CHUNK_EVENTS = 50_000


@dataclass(frozen=True)
class FeedPlan:
    start_ms: int
    speed: float  # simulated ms per wall ms; inf = as fast as possible
    duration_s: float

    def target_ms(self, elapsed_s: float, now_ms: int) -> int:
        """Where the simulated clock should be after ``elapsed_s`` (never past now)."""
        if self.speed == float("inf"):
            return now_ms
        return min(now_ms, self.start_ms + int(elapsed_s * 1000 * self.speed))


def plan_feed(
    natural_rate: float,
    rate: float | None,
    duration_s: float,
    now_ms: int,
    max_rate: bool = False,
    max_rate_span_ms: int = 86_400_000,
) -> FeedPlan:
    """Choose the simulated start and speed for a run of ``duration_s`` at ``rate`` events/s."""
    if max_rate:
        return FeedPlan(now_ms - max_rate_span_ms, float("inf"), duration_s)
    if rate is None:
        return FeedPlan(now_ms, 1.0, duration_s)
    if rate <= 0:
        raise ValueError("rate must be positive (or use max_rate)")
    speed = rate / natural_rate
    return FeedPlan(now_ms - int(duration_s * 1000 * speed), speed, duration_s)


def run_feed(
    settings: Settings,
    source: str,
    producer: EventProducer,
    plan: FeedPlan,
    hot_store: HotStore | None = None,
    ground_truth_conn: Any = None,
    on_progress: Callable[[FeedCounts, float], None] = lambda _c, _e: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    tick_s: float = TICK_SECONDS,
    stop: threading.Event | None = None,
) -> FeedCounts:
    """Feed ``source`` following ``plan``; labels are sent once even if episodes span chunks.
    ``stop`` ends the feed early (after the batch in flight), as reaching ``duration_s`` does.

    In real time an event is sent at the first tick after its timestamp, so ``tick_s`` is how
    late (at most) it reaches Kafka: half a second is plenty for a demo, and a latency
    benchmark feeds with a short tick so the feed's own delay does not dominate what it
    measures.
    """
    generator = make_generator(source, settings)
    if hot_store is not None and source == "ip":
        ensure_ip_series(hot_store, settings)
    chunk_ms = max(
        generator.interval_ms,
        int(MAX_RATE_CHUNK_EVENTS / entities_per_interval(source, settings))
        * generator.interval_ms,
    )
    total, seen_labels = FeedCounts(), set()
    started = clock()
    cursor = plan.start_ms
    while (elapsed := clock() - started) < plan.duration_s and not (stop and stop.is_set()):
        target = plan.target_ms(elapsed, int(clock() * 1000))
        if plan.speed == float("inf"):
            target = min(target, cursor + chunk_ms)
        if target <= cursor:
            sleep(tick_s)
            continue
        batch = generator.generate(cursor, target)
        batch.episodes = [e for e in batch.episodes if e.label_id not in seen_labels]
        seen_labels.update(e.label_id for e in batch.episodes)
        total.merge(feed_batch(batch, settings, producer, hot_store, ground_truth_conn))
        cursor = target
        on_progress(total, clock() - started)
        if plan.speed != float("inf"):
            sleep(max(0.0, tick_s - (clock() - started - elapsed)))
    return total


def run_live_weather(
    settings: Settings,
    producer: EventProducer,
    poller: Any,
    duration_s: float,
    on_progress: Callable[[FeedCounts, float], None] = lambda _c, _e: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> FeedCounts:
    """Poll OpenWeatherMap every weather interval and send new readings; API trouble is
    counted in ``poller.stats``, never fatal, so the stream outlives a bad key or a 429."""
    total = FeedCounts()
    interval_s = settings.generators.weather_interval_seconds
    started = clock()
    while clock() - started < duration_s:
        round_started = clock()
        readings = poller.poll()
        keys = [reading["city"] for reading in readings]
        sent = publish_events(producer, settings, "weather", readings, keys)
        producer.flush()
        total.events["weather"] = total.events.get("weather", 0) + sent
        on_progress(total, clock() - started)
        remaining = duration_s - (clock() - started)
        sleep(max(0.0, min(interval_s - (clock() - round_started), remaining)))
    return total
