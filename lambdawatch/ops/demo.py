"""``lambdawatch demo``: the whole lambda architecture, end to end, on this machine.

Brings the local stack up, triggers ``InitialDag`` through Airflow's REST API, seeds a few days
of hourly IP history (so the forecast has seasons to fit), feeds every generator live with
injected anomalies for a few minutes, runs each batch DAG once, and reports what landed where:
events per topic, anomalies per detector scored against the ground truth, forecasts written,
the CDN model in use, and the URLs to look at.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from kafka import KafkaConsumer, TopicPartition
from pyspark import SparkContext
from pyspark.sql import SparkSession

from generators.ip import IpGenerator
from generators.registry import SOURCES, make_generator
from lambdawatch.core import db
from lambdawatch.core.airflow_api import AirflowClient
from lambdawatch.core.catalog import CPU_WINDOW_COLUMNS
from lambdawatch.core.hot_store import open_hot_store, redis_client
from lambdawatch.core.model_registry import promoted_model
from lambdawatch.core.producers import make_producer
from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings
from lambdawatch.core.tables import TABLES
from lambdawatch.ops.dashboards import DASHBOARDS
from lambdawatch.pipelines.archive import store_history
from lambdawatch.pipelines.backtest import cpu_verdicts, event_frame
from lambdawatch.pipelines.event_feed import feed_batch
from lambdawatch.pipelines.live_feed import FeedCounts, plan_feed, run_feed
from lambdawatch.pipelines.platform_init import SCHEDULED_DAGS, create_topics
from lambdawatch.pipelines.quality import (
    IncidentSpan,
    Interval,
    Label,
    Quality,
    detector_for,
    detector_quality,
    incident_quality,
)
from spark_apps.session import build_session

HOUR_MS = 3_600_000
# The models train beside the live feed, on seeded history, so most of the feed is judged by
# them; the others run after the feed, on what it produced. baseline_stats is last of those:
# until it has run the CPU detector judges by the .env fallback; the others have none.
BASELINE_DAG, FORECAST_DAG, MODEL_DAG = (
    "baseline_stats",
    "forecast_ip_traffic",
    "retrain_cdn_kmeans",
)
ARCHIVE_DAG, BACKTEST_DAG = "archive_raw_events", "backtest"
DAGS_WITH_FEED = (MODEL_DAG, FORECAST_DAG, BASELINE_DAG)
# After the feed, in stages whose DAGs run side by side (none reads what another writes):
# archive the hot store, baselines of what was fed, the feed's raw events archived; then
# history through the same code: the CPU detector backtested over those raw events by those
# baselines, judged against the ground truth and beside the live findings (Backtests).
DAGS_AFTER_FEED = (("archive_hot_store", BASELINE_DAG, ARCHIVE_DAG), (BACKTEST_DAG,))
BACKTEST_DETECTOR = "cpu_anomalies"
CDN_HISTORY = timedelta(minutes=30)
CPU_HISTORY = timedelta(minutes=10)
BATCH_DAGS = DAGS_WITH_FEED + tuple(dag for stage in DAGS_AFTER_FEED for dag in stage)
CDN_MODEL = "cdn_kmeans"
FIRST_ANOMALY_HEAD_START = 90.0  # seconds the feed runs alone, at most, before the batch jobs
# On a fresh stack the first KMeans model and forecast come out of their DAGs while the feed
# runs, and may come late on a busy machine: the feed goes on past its minutes until each has
# judged live events this long, by at most FEED_EXTENSION_CAP, so their dashboards have data.
JUDGING_SPAN = timedelta(minutes=1)
FEED_EXTENSION_CAP = timedelta(minutes=3)
T = TypeVar("T")


@dataclass
class DemoReport:
    started_at: datetime
    initial_dag: str = ""
    history_rows: int = 0
    fed: dict[str, int] = field(default_factory=dict)
    feed_extended_s: float = 0.0  # how long the feed ran past its minutes (see feed_end)
    batch_runs: dict[str, str] = field(default_factory=dict)
    events_per_topic: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, dict[str, int]] = field(default_factory=dict)  # detector → severity
    quality: dict[str, Quality] = field(default_factory=dict)
    forecasts: int = 0
    model_version: str | None = None
    backtest: dict[str, Any] = field(default_factory=dict)  # v_backtest_runs' row, agreement
    # state → incidents the feed's findings opened or joined; of those, opened before the feed
    incidents: dict[str, int] = field(default_factory=dict)
    incidents_continued: int = 0
    incident_quality: Quality | None = None
    readiness: Readiness | None = None
    urls: dict[str, str] = field(default_factory=dict)


def with_anomaly_rate(settings: Settings, rate: float) -> Settings:
    """The same settings, with the generators injecting anomalies at ``rate``."""
    generators = settings.generators.model_copy(update={"anomaly_rate": rate})
    return settings.model_copy(update={"generators": generators})


FORECAST_LEAD = timedelta(minutes=2)  # the forecast job runs while the feed has started


# Which traffic anomalies to watch first: scans show on the network dashboard's scan table.
WATCH_PRIORITY = ("port_scan", "ddos", "exfiltration")


def ips_to_watch(settings: Settings, start: datetime, minutes: float, count: int) -> list[str]:
    """``count`` IPs to seed history for: first those the generator will give a traffic
    anomaly (scan, DDoS, exfiltration) that lasts past the forecast's lead time, scans first,
    then the longest judged; then the first configured IPs.

    Generators are pure functions of time, so the feed's episodes are known beforehand; the
    forecast detector can only judge IPs that have a forecast, i.e. history, and only samples
    that arrive once the forecast is written. Every watched IP costs one Prophet fit per
    feature, which must finish while the feed still runs: hence a fixed count.
    """
    start_ms = int(start.timestamp() * 1000)
    batch = make_generator("ip", settings).generate(start_ms, start_ms + int(minutes * 60_000))
    judged_from = start + FORECAST_LEAD
    best: dict[str, tuple[int, float]] = {}
    for label in batch.labels:
        if label["kind"] not in WATCH_PRIORITY:
            continue
        judged = (_when(label["end_ts"]) - judged_from).total_seconds()
        if judged <= 0:
            continue
        rank = (WATCH_PRIORITY.index(label["kind"]), -judged)
        best[label["entity"]] = min(best.get(label["entity"], rank), rank)
    chosen = sorted(best, key=lambda ip: (best[ip], ip))[:count]
    for ip in settings.ips.resolved_addresses:
        if len(chosen) >= count:
            break
        if ip not in chosen:
            chosen.append(ip)
    return chosen


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def seed_history(
    settings: Settings, secrets: Secrets, end: datetime, hours: int, ips: list[str]
) -> int:
    """Hourly features of ``ips`` for the ``hours`` before the hot window, straight into
    ip_history.

    A stand-in for days of archived traffic, which a fresh laptop does not have; written the
    way the archive writes (insert-if-absent), so a second demo adds nothing. A few IPs are
    enough to watch forecasts; every IP × feature with history is one Prophet fit.
    """
    last = int(end.timestamp() * 1000) - int(settings.hot_store.hot_window_hours * HOUR_MS)
    last -= last % HOUR_MS
    batch = IpGenerator(tuple(ips), interval_ms=HOUR_MS, seed=settings.generators.seed).generate(
        last - hours * HOUR_MS, last
    )
    rows = []
    for event in batch.events:
        ts = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        ms = int(ts.timestamp() * 1000)
        rows.extend(
            (event["src_ip"], feature, ms, float(event[feature]))
            for feature in settings.ips.features
        )
    with db.connect(settings, secrets) as conn:
        inserted, _already = store_history(conn, rows)
    return inserted


def seed_cdn_events(settings: Settings, secrets: Secrets, end: datetime) -> int:
    """The last half hour of CDN events into their topic, for the first KMeans model to learn
    from (a fresh stack has none; the speed layer clusters only once a model is promoted).

    At the stack's own anomaly rate, not the demo's: a model trained on a feed full of error
    storms would take them for normal traffic and flag none."""
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - int(CDN_HISTORY.total_seconds() * 1000)
    batch = make_generator("cdn", settings).generate(start_ms, end_ms)
    producer = make_producer(settings.kafka_bootstrap)
    try:
        with db.connect(settings, secrets) as conn:
            counts = feed_batch(batch, settings, producer, None, conn)
    finally:
        producer.close()
    return sum(counts.events.values())


def cpu_window_rows(spark: SparkSession, events: list[dict[str, Any]], settings: Settings) -> Any:
    """Server events → ``rt_cpu_windows`` rows (an Arrow table) by the speed layer's own CPU
    detector, run in batch, as it judges before any baseline exists (the ``.env`` fallback)."""
    frame = event_frame(spark, events, "server")
    return cpu_verdicts(spark, frame, settings).select(*CPU_WINDOW_COLUMNS).toArrow()


def seed_cpu_windows(settings: Settings, secrets: Secrets, end: datetime) -> int:
    """The last minutes of server CPU windows into ``rt_cpu_windows``, for ``baseline_stats``
    to learn each server's normal mean and σ from before the live feed (a fresh stack has
    none, and one fallback mean for every server misjudges the quiet and the busy ones)."""
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - int(CPU_HISTORY.total_seconds() * 1000)
    batch = make_generator("server", settings).generate(start_ms, end_ms)
    # a session of its own, stopped after, unless this process runs Spark already (tests)
    own_session = SparkContext._active_spark_context is None
    spark = build_session(
        "lambdawatch-demo-seed",
        master="local[1]",
        with_kafka=False,
        shuffle_partitions=1,
        extra={"spark.ui.enabled": "false"},
    )  # getOrCreate: the running session, if there is one
    try:
        rows = cpu_window_rows(spark, batch.events, settings)
    finally:
        if own_session:
            spark.stop()
    with db.connect(settings, secrets) as conn:
        return db.upsert_rows(
            conn, "rt_cpu_windows", CPU_WINDOW_COLUMNS, rows, TABLES["rt_cpu_windows"].key,
            update=False,
        )  # fmt: skip


def has_promoted_model(settings: Settings, secrets: Secrets) -> bool:
    with db.connect(settings, secrets) as conn:
        return promoted_model(conn, CDN_MODEL) is not None


def feed_all_sources(
    settings: Settings,
    secrets: Secrets,
    seconds: float,
    on_progress: Callable[[str, FeedCounts], None] = lambda _s, _c: None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Every generator live (real time) until ``seconds`` from now or ``stop``, one thread per
    source.

    Every source from the first second: CDN events that arrive before the first KMeans model
    is promoted are not clustered (the speed layer logs it), but they are fed, counted, watched
    for silence and kept in their topic, where retraining reads them.
    """
    totals: dict[str, int] = {}
    failures: list[BaseException] = []
    ends_at = time.time() + seconds

    def feed(source: str) -> None:
        try:
            remaining = ends_at - time.time()
            if remaining <= 0:
                totals[source] = 0
                return
            producer = make_producer(settings.kafka_bootstrap)
            client = redis_client(settings) if source == "ip" else None
            store = open_hot_store(client, settings) if client is not None else None
            plan = plan_feed(1.0, None, remaining, int(time.time() * 1000))
            try:
                with db.connect(settings, secrets) as conn:
                    counts = run_feed(
                        settings,
                        source,
                        producer,
                        plan,
                        store,
                        conn,
                        on_progress=lambda c, _elapsed: on_progress(source, c),
                        stop=stop,
                    )
            finally:
                producer.close()
                if client is not None:
                    client.close()
            totals[source] = sum(counts.events.values())
        except BaseException as error:  # re-raised in the caller's thread
            failures.append(error)

    threads = [threading.Thread(target=feed, args=(s,), name=f"feed-{s}") for s in SOURCES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return totals


def feed_end(
    planned: datetime,
    clustering_since: datetime | None,
    forecast_since: datetime | None,
    cap: timedelta = FEED_EXTENSION_CAP,
) -> datetime:
    """When the demo's feed may stop: at ``planned``, or later, once the promoted KMeans model
    (first clustered event at ``clustering_since``) and the forecast (written at
    ``forecast_since``) have each judged live events for ``JUDGING_SPAN``; never past
    ``planned + cap``."""
    latest = planned + cap
    needed = [latest if since is None else since + JUDGING_SPAN
              for since in (clustering_since, forecast_since)]  # fmt: skip
    return min(max(planned, *needed), latest)


def models_judging_since(
    settings: Settings, secrets: Secrets, feed_started: datetime
) -> tuple[datetime | None, datetime | None]:
    """When the speed layer first clustered a fed CDN event, and when this run's forecast was
    written (``None``: not yet)."""
    with db.connect(settings, secrets) as conn:
        clustered = conn.execute(
            "SELECT min(ts) FROM rt_cdn_clusters WHERE ts >= %s", (feed_started,)
        ).fetchone()
        forecast = conn.execute(
            "SELECT min(created_at) FROM ip_forecasts WHERE created_at >= %s", (feed_started,)
        ).fetchone()
    return (clustered[0] if clustered else None, forecast[0] if forecast else None)


def run_dags(
    client: AirflowClient,
    dag_ids: tuple[str, ...],
    timeout: float,
    forms: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, str]]:
    """Trigger each DAG once (with its form, if any), in order, each after the previous
    finished; returns each DAG's run id and final state."""
    runs = {}
    for dag_id in dag_ids:
        run_id = trigger_now(client, dag_id, (forms or {}).get(dag_id))
        runs[dag_id] = {"run_id": run_id,
                        "state": client.wait_for_run(dag_id, run_id, timeout=timeout)}  # fmt: skip
    return runs


def run_side_by_side(
    client: AirflowClient,
    dag_ids: tuple[str, ...],
    timeout: float,
    forms: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, str]]:
    """Each DAG triggered at once (with its form, if any); returns, once all have finished,
    each DAG's run id and final state (see ``run_dags``)."""
    waits = [
        in_background(
            lambda dag_id=dag_id: run_dags(client, (dag_id,), timeout, forms),
            name=f"demo-run-{dag_id}",
        )
        for dag_id in dag_ids
    ]
    runs: dict[str, dict[str, str]] = {}
    for wait in waits:
        runs |= wait()
    return runs


def run_dag_stages(
    client: AirflowClient,
    stages: tuple[tuple[str, ...], ...],
    timeout: float,
    forms: dict[str, dict[str, Any]] | None = None,
    on_stage: Callable[[dict[str, dict[str, str]]], None] = lambda _runs: None,
) -> dict[str, dict[str, str]]:
    """Each stage's DAGs side by side, each stage once the previous one has finished;
    ``on_stage`` gets each finished stage's runs."""
    runs: dict[str, dict[str, str]] = {}
    for stage in stages:
        finished = run_side_by_side(client, stage, timeout, forms)
        on_stage(finished)
        runs |= finished
    return runs


def backtest_form(detector: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The ``backtest`` DAG's form for a detector over ``[start, end)``."""
    return {"detector": detector, "from": start.isoformat(), "to": end.isoformat()}


def topic_end_offsets(settings: Settings) -> dict[str, int]:
    """Records per topic (summed end offsets): what went through Kafka."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        totals = {}
        for topic in settings.topics:
            partitions = consumer.partitions_for_topic(topic.name) or set()
            offsets = consumer.end_offsets([TopicPartition(topic.name, p) for p in partitions])
            totals[topic.name] = sum(offsets.values())
        return totals
    finally:
        consumer.close()


@dataclass(frozen=True)
class Readiness:
    """When each detector could first judge: the feed's start, the baselines, the forecast,
    the model."""

    feed_started: datetime
    forecast_ips: frozenset[str] = frozenset()
    forecast_at: datetime | None = None
    model_at: datetime | None = None
    baselines_at: datetime | None = None

    def judging_since(self, detector: str) -> datetime | None:
        """From when ``detector``'s findings are its own (``None``: never in this run).

        Before its baselines exist the CPU detector judges every server by the one ``.env``
        mean, which flags the quiet and the busy ones: the warm-up is shown, not scored.
        """
        return {
            "cpu_anomalies": self.baselines_at,
            "forecast_deviations": self.forecast_at,
            "cdn_clusters": self.model_at,
        }.get(detector, self.feed_started)


# What each detector waits for before its findings are its own (``Readiness.judging_since``):
# said in the present, and in the past for when it never came.
READY_WHEN = {
    "cpu_anomalies": ("baselines exist", "baselines existed"),
    "forecast_deviations": ("a forecast exists", "a forecast existed"),
    "cdn_clusters": ("a model is promoted", "a model was promoted"),
}


def judgement(detector: str, quality: Quality, ready: Readiness | None) -> str:
    """How a detector's ERROR findings fared, or why nothing could be judged: a 0.00 where
    nothing was there to judge reads as a failure when it is not one."""
    since, before = READY_WHEN.get(detector, ("the feed started", "the feed started"))
    if ready is not None and ready.judging_since(detector) is None:
        return f"not judged: the demo ended before {before}"
    if not quality.episodes and not quality.detections:
        return f"nothing to judge: no labelled episode has ended and no ERROR since {since}"
    precision = (
        f"ERROR precision {quality.precision:.2f}"
        if quality.detections
        else f"no ERROR finding since {since}"
    )
    recall = (
        f"recall {quality.recall:.2f} ({quality.episodes} labelled episodes judged)"
        if quality.episodes
        else f"recall not judged: no labelled episode has ended since {since}"
    )
    return f"{precision}, {recall}"


def judgeable(labels: list[Label], ready: Readiness) -> list[Label]:
    """The episodes a detector could have caught; counting the others as missed would measure
    the demo's warm-up, not the detector.

    Traffic anomalies need a forecast for their IP, written before they end; CPU and CDN
    anomalies baselines or a promoted model before they end; an outage must begin once the
    feed runs (silence is relative to an entity's earlier events).
    """
    kept = []
    for label in labels:
        detector = detector_for(label.kind)
        if detector is not None:
            since = ready.judging_since(detector)
            if since is None or label.end <= since:
                continue
            if detector == "forecast_deviations" and label.entity not in ready.forecast_ips:
                continue
            if detector == "silence" and label.start < since:
                continue
        kept.append(label)
    return kept


def judged_detections(
    detections: dict[str, list[Interval]], ready: Readiness
) -> dict[str, list[Interval]]:
    """Each detector's findings from when it could judge (see ``Readiness.judging_since``)."""
    kept = {}
    for detector, found in detections.items():
        since = ready.judging_since(detector)
        kept[detector] = [] if since is None else [d for d in found if d.start >= since]
    return kept


def summarize(
    settings: Settings,
    secrets: Secrets,
    report: DemoReport,
    since: datetime,
    horizon: datetime,
    baselines_at: datetime | None,
) -> None:
    """Fill the report from what is in Kafka and PostgreSQL now; ``since`` is the feed's
    start, ``baselines_at`` when the first baselines were written."""
    report.events_per_topic = topic_end_offsets(settings)
    with db.connect(settings, secrets) as conn:
        for detector, severity, count in conn.execute(
            "SELECT detector, severity, count(*) FROM anomalies WHERE window_start >= %s "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            (since,),
        ).fetchall():
            report.anomalies.setdefault(detector, {})[severity] = count
        labels = [  # every episode the feed overlapped (one may have begun before it)
            Label(*row)
            for row in conn.execute(
                "SELECT entity, kind, start_ts, end_ts FROM ground_truth WHERE end_ts > %s",
                (since,),
            ).fetchall()
        ]
        # Scored on ERROR findings, what an operator is paged for; WARN marks the unusual.
        detections: dict[str, list[Interval]] = {}
        for detector, entity, start, end in conn.execute(
            "SELECT detector, entity, window_start, window_end FROM anomalies "
            "WHERE window_start >= %s AND severity = 'ERROR'",
            (since,),
        ).fetchall():
            detections.setdefault(detector, []).append(Interval(entity, start, end))
        latest = conn.execute(
            "SELECT run_id, max(created_at) FROM forecast_quality GROUP BY run_id "
            "ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        ips: list[str] = []
        if latest and latest[0]:
            count, ips = conn.execute(
                "SELECT count(*), coalesce(array_agg(DISTINCT ip), '{}') FROM ip_forecasts "
                "WHERE run_id = %s",
                (latest[0],),
            ).fetchone() or (0, [])
            report.forecasts = int(count)
        # the model judged from the first fed event it clustered: on a stack with a promoted
        # model, from the start, though the demo's own retraining promotes a newer one
        clustering_since, _forecast = models_judging_since(settings, secrets, since)
        ready = Readiness(
            feed_started=since,
            forecast_ips=frozenset(ips),
            forecast_at=latest[1] if latest and latest[0] else None,
            model_at=clustering_since,
            baselines_at=baselines_at,
        )
        judged_labels = judgeable(labels, ready)
        report.quality = detector_quality(
            judged_labels, judged_detections(detections, ready), horizon
        )
        report.readiness = ready
        incidents = []
        # Every incident the feed's findings went into: on a stack with history, a finding may
        # join an incident opened before the feed (its entity or datacenter was already in one,
        # e.g. a silence that lasted until the feed began), and an operator sees it there.
        for state, entities, first, last in conn.execute(
            "SELECT state, entities, first_seen, last_seen FROM incidents WHERE last_seen >= %s",
            (since,),
        ).fetchall():
            report.incidents[state] = report.incidents.get(state, 0) + 1
            report.incidents_continued += first < since
            incidents.append(IncidentSpan(tuple(entities), max(first, since), last))
        targets = [
            label.interval
            for label in judged_labels
            if detector_for(label.kind) is not None and label.end <= horizon
        ]
        report.incident_quality = incident_quality(
            incidents, targets, [label.interval for label in judged_labels]
        )
        model = promoted_model(conn, CDN_MODEL)
        report.model_version = model.version if model else None
    report.urls = {"Airflow": settings.airflow_base_url}
    for dashboard in DASHBOARDS:
        report.urls[dashboard.title] = (
            f"{settings.superset_base_url}/superset/dashboard/{dashboard.slug}/"
        )


def in_background(work: Callable[[], T], name: str) -> Callable[[], T]:
    """Start ``work`` in a daemon thread; the returned function waits for its result (or
    raises its error). A daemon, so a failed demo or Ctrl-C does not wait for the feed."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # re-raised in the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return cast(T, outcome["result"])

    return wait


def wait_for_first_anomaly(
    settings: Settings, secrets: Secrets, since: datetime, timeout: float
) -> float | None:
    """Seconds until the speed layer recorded an anomaly detected after ``since`` (``None``
    after ``timeout``).

    The batch jobs' JVMs and InitialDag's tasks take both cores while they start; the speed
    layer gets the machine to itself until its first finding is on the dashboards.
    """
    deadline = time.monotonic() + timeout
    with db.connect(settings, secrets) as conn:
        conn.autocommit = True
        while time.monotonic() < deadline:
            if conn.execute(
                "SELECT 1 FROM anomalies WHERE detected_at >= %s LIMIT 1", (since,)
            ).fetchone():
                return (datetime.now(UTC) - since).total_seconds()
            time.sleep(1)
    return None


def trigger_now(client: AirflowClient, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    """A manual run that starts at once: unpaused first, as InitialDag would, which may still
    be running."""
    client.set_paused(dag_id, paused=False)
    return client.trigger(dag_id, conf)


def run_demo(
    settings: Settings,
    secrets: Secrets,
    minutes: float,
    anomaly_rate: float,
    history_hours: int,
    history_ips: int = 4,
    say: Callable[[str], None] = print,
    on_feed: Callable[[str, FeedCounts], None] = lambda _s, _c: None,
    dag_timeout: float = 1800,
    feed_extension_cap: timedelta = FEED_EXTENSION_CAP,
) -> DemoReport:
    """Everything after ``up``: live feed, InitialDag, history, batch DAGs, summary.

    The feed starts first (it needs only the topics, created here as InitialDag would, and the
    tables ``up`` migrated), so anomalies show within a minute. InitialDag, the seeding and the
    first batch jobs run beside it; until their results exist the speed layer judges by its
    fallbacks, and the summary scores each detector only from when it had what it needs. The
    feed goes on past ``minutes`` by at most ``feed_extension_cap`` (see ``feed_end``).
    """
    report = DemoReport(started_at=datetime.now(UTC))
    create_topics(settings)  # InitialDag's first step, idempotent
    feed_settings = with_anomaly_rate(settings, anomaly_rate)
    say(f"feeding every generator live for {minutes:g} min (anomaly rate {anomaly_rate:g})")
    feed_started = datetime.now(UTC)
    stop_feed = threading.Event()
    feed = in_background(
        lambda: feed_all_sources(
            feed_settings,
            secrets,
            minutes * 60 + feed_extension_cap.total_seconds(),
            on_feed,
            stop_feed,
        ),
        name="demo-feed",
    )
    waited = wait_for_first_anomaly(settings, secrets, feed_started, FIRST_ANOMALY_HEAD_START)
    say(
        f"first anomaly recorded {waited:.0f} s into the feed"
        if waited is not None
        else f"no anomaly yet after {FIRST_ANOMALY_HEAD_START:.0f} s; going on"
    )
    client = AirflowClient.from_settings(settings, secrets)
    client.wait_for_dags(["InitialDag", *SCHEDULED_DAGS])
    say("triggering InitialDag through Airflow's REST API")
    initial_run = client.trigger("InitialDag")
    runs: dict[str, str] = {}
    # The detectors with no fallback first (the CPU detector has the .env one): the KMeans
    # model, then the forecast, each triggered before the CPU windows' seeding (a Spark session
    # of its own, 90 s on a busy machine). Not one after another: InitialDag unpauses the
    # scheduled DAGs, whose catch-up runs go first, so waiting on a manual run waits on them.
    if not has_promoted_model(settings, secrets):
        seeded_cdn = seed_cdn_events(settings, secrets, datetime.now(UTC))
        say(f"seeded {seeded_cdn:,} CDN events (last {CDN_HISTORY}) for the first KMeans model")
    runs[MODEL_DAG] = trigger_now(client, MODEL_DAG)
    watched = ips_to_watch(feed_settings, feed_started, minutes, history_ips)
    report.history_rows = seed_history(settings, secrets, report.started_at, history_hours, watched)
    say(
        f"seeded {report.history_rows:,} hourly history rows: "
        f"{len(watched)} IPs × {history_hours} h"
    )
    runs[FORECAST_DAG] = trigger_now(client, FORECAST_DAG)
    seeded_cpu = seed_cpu_windows(settings, secrets, datetime.now(UTC))
    say(f"seeded {seeded_cpu:,} CPU windows (last {CPU_HISTORY}) for the first baselines")
    runs[BASELINE_DAG] = trigger_now(client, BASELINE_DAG)
    report.initial_dag = client.wait_for_run("InitialDag", initial_run, timeout=dag_timeout)
    if report.initial_dag != "success":
        raise RuntimeError(
            f"InitialDag {initial_run} failed: {client.task_states('InitialDag', initial_run)}"
        )
    say("InitialDag: success")
    planned_end = feed_started + timedelta(minutes=minutes)
    extending = False
    while datetime.now(UTC) < (
        end := feed_end(
            planned_end, *models_judging_since(settings, secrets, feed_started), feed_extension_cap
        )
    ):
        if end > planned_end and not extending:
            extending = True
            say(f"the feed goes on past {minutes:g} min until the first KMeans model and "
                f"forecast have judged live events for {JUDGING_SPAN.total_seconds():.0f} s "
                f"(at most {feed_extension_cap.total_seconds() / 60:g} min more)")  # fmt: skip
        time.sleep(2)
    stop_feed.set()
    report.fed = feed()
    if extending:
        report.feed_extended_s = max(0.0, (datetime.now(UTC) - planned_end).total_seconds())
    say(f"feed stopped after {sum(report.fed.values()):,} events")
    # The speed layer judges an episode once its watermark (driven by event time, which stops
    # with the feed) has passed the episode's end: later episodes are not counted as missed.
    horizon = datetime.now(UTC) - timedelta(minutes=1)
    forms = {BACKTEST_DAG: backtest_form(BACKTEST_DETECTOR, feed_started, horizon)}
    say("running on what was fed, beside the runs started with the feed: "
        + ", then ".join(" beside ".join(stage) for stage in DAGS_AFTER_FEED))  # fmt: skip
    # Started now, not after the runs started with the feed: nothing in them waits on those
    # (a second baseline_stats run queues behind the first, max_active_runs=1).
    after_feed = in_background(
        lambda: run_dag_stages(
            client, DAGS_AFTER_FEED, dag_timeout, forms,
            on_stage=lambda done: say(", ".join(f"{d}: {r['state']}" for d, r in done.items())),
        ),
        name="demo-after-feed",
    )  # fmt: skip
    for dag_id, run_id in runs.items():
        report.batch_runs[dag_id] = client.wait_for_run(dag_id, run_id, timeout=dag_timeout)
        say(f"{dag_id}: {report.batch_runs[dag_id]}")
    baselines_at = client.run_ended_at(BASELINE_DAG, runs[BASELINE_DAG])
    after = after_feed()
    report.batch_runs |= {dag_id: run["state"] for dag_id, run in after.items()}
    summarize(settings, secrets, report, feed_started, horizon, baselines_at)
    report.backtest = backtest_summary(settings, secrets, after[BACKTEST_DAG]["run_id"])
    return report


def backtest_summary(settings: Settings, secrets: Secrets, run_id: str) -> dict[str, Any]:
    """The demo's backtest as the Backtests dashboard shows it: its row of
    ``v_backtest_runs`` and its findings beside the live ones (``agreement`` → count)."""
    with db.connect(settings, secrets) as conn:
        cursor = conn.execute("SELECT * FROM v_backtest_runs WHERE run_id = %s", (run_id,))
        row = cursor.fetchone()
        if row is None:
            return {}
        summary = dict(zip([c.name for c in cursor.description or ()], row, strict=True))
        summary["agreement"] = dict(
            conn.execute(
                "SELECT agreement, count(*) FROM v_backtest_findings WHERE run_id = %s "
                "GROUP BY 1 ORDER BY 1",
                (run_id,),
            ).fetchall()
        )
    return summary


def report_rows(report: DemoReport) -> list[tuple[str, Any]]:
    """The report as (what, value) lines, for the CLI and the logs."""
    rows: list[tuple[str, Any]] = [("InitialDag", report.initial_dag)]
    rows += [(f"fed: {source}", f"{count:,} events") for source, count in report.fed.items()]
    if report.feed_extended_s:
        rows.append(("feed extended", f"{report.feed_extended_s:.0f} s, for the models to judge"))
    rows += [(f"topic: {topic}", f"{n:,} records") for topic, n in report.events_per_topic.items()]
    rows += [(f"DAG: {dag}", state) for dag, state in report.batch_runs.items()]
    for detector, counts in sorted(report.anomalies.items()):
        quality = report.quality.get(detector)
        judged = f"; {judgement(detector, quality, report.readiness)}" if quality else ""
        severities = ", ".join(f"{n} {severity}" for severity, n in sorted(counts.items()))
        rows.append((f"anomalies: {detector}", severities + judged))
    if report.incidents or report.incident_quality:
        rows.append(
            (
                "incidents",
                incidents_line(
                    report.incidents, report.incident_quality, report.incidents_continued
                ),
            )
        )
    if report.backtest:
        rows.append((f"backtest: {report.backtest['detector']}", backtest_line(report.backtest)))
    if report.readiness is not None:
        rows.append(("detectors judging since", readiness_line(report.readiness)))
    rows.append(("forecasts written (latest run)", f"{report.forecasts:,}"))
    rows.append(("CDN model in use", report.model_version or "none promoted"))
    rows += [(f"url: {name}", url) for name, url in report.urls.items()]
    return rows


def readiness_line(ready: Readiness) -> str:
    """When each model-backed detector began judging, in seconds into the feed: what a
    detector could not judge before then is shown, not scored."""
    parts = []
    for detector in READY_WHEN:
        since = ready.judging_since(detector)
        if since is None:
            parts.append(f"{detector} never")
        elif since <= ready.feed_started:
            parts.append(f"{detector} from the start")
        else:
            parts.append(f"{detector} {(since - ready.feed_started).total_seconds():.0f} s in")
    return ", ".join(parts)


def incidents_line(by_state: dict[str, int], quality: Quality | None, continued: int = 0) -> str:
    """Incidents the demo's findings went into (opened during it, or ``continued`` from
    before) and, against the labels, how many were real and how many episodes they caught."""
    total = sum(by_state.values())
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items()))
    line = f"{total - continued} opened" + (
        f", {continued} continued from before" if continued else ""
    )
    line += f" ({states})" if total else ""
    if quality is None or (not quality.detections and not quality.episodes):
        return line + "; nothing to judge yet"
    precision = f"precision {quality.precision:.2f}" if quality.detections else "none opened"
    recall = (
        f"recall {quality.recall:.2f} ({quality.episodes} labelled episodes judged)"
        if quality.episodes
        else "recall not judged: no labelled episode has ended yet"
    )
    return f"{line}; {precision}, {recall}"


def backtest_line(summary: dict[str, Any]) -> str:
    """The demo's backtest in one line: what it judged, against the labels, beside live."""
    line = (
        f"{summary['judged']:,} windows re-judged, {summary['warn']} WARN, {summary['error']} ERROR"
    )
    if summary.get("episodes"):
        line += f"; found {summary['detected']}/{summary['episodes']} labelled episodes"
        if summary.get("median_time_to_detect_s") is not None:
            line += f" (median {summary['median_time_to_detect_s']:.1f} s to detect)"
    agreement = summary.get("agreement") or {}
    if agreement:
        line += "; beside live: " + ", ".join(f"{n} {what}" for what, n in agreement.items())
    return line
