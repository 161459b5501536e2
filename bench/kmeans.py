"""KMeans training: Spark MLlib (our retraining pipeline) vs scikit-learn, same data, same run.

The data are CDN events from the generator (the configured KMeans features, including the
injected error storms), at several sizes. Both sides standardise and fit KMeans with the
configured k, iteration cap and seed, one initialisation each (MLlib's ``k-means||`` vs
scikit-learn's ``k-means++``). Timed:

* **spark fit**: ``kmeans_pipeline(...).fit`` (assemble → StandardScaler → KMeans) on a cached
  DataFrame, local mode on every core;
* **spark end to end**: the same plus getting the rows into Spark (pandas → Arrow → DataFrame);
* **sklearn**: ``StandardScaler`` + ``KMeans(n_init=1)`` on the NumPy array.

Quality is one silhouette for both, computed by scikit-learn on the same 10,000-row sample of
the standardised data with each model's labels, so the scores are comparable.

Goal (issue 4/6): MLlib within 10× of scikit-learn end to end, or the data size at which Spark
wins, documented. On one 2-core machine Spark's overhead is not amortised; the crossover is
reported as ``null`` when no measured size reaches it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from bench.common import write_result
from generators.cdn import CdnGenerator
from lambdawatch.core.settings import load_settings
from spark_apps.detectors.cdn_kmeans import kmeans_pipeline
from spark_apps.session import build_session

T0 = 1_767_225_600_000
SILHOUETTE_SAMPLE = 10_000


def cdn_features(rows: int, features: list[str], seed: int) -> pd.DataFrame:
    """``rows`` generated CDN events (40 edges every 10 s), as a float frame of ``features``."""
    generator = CdnGenerator(edges=40, interval_ms=10_000, seed=seed)
    ticks = -(-rows // generator.edges)
    events = generator.generate(T0, T0 + ticks * generator.interval_ms).events[:rows]
    return pd.DataFrame(events)[features].astype("float64")


def sklearn_kmeans(data: np.ndarray, k: int, max_iter: int, seed: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    scaled = StandardScaler().fit_transform(data)
    model = KMeans(k, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed)
    labels = model.fit_predict(scaled)
    return time.perf_counter() - started, labels


def spark_kmeans(
    spark: Any, frame: pd.DataFrame, k: int, max_iter: int, seed: int
) -> tuple[float, float, np.ndarray]:
    """(load seconds, fit seconds, labels in row order)."""
    indexed = frame.assign(row_id=np.arange(len(frame)))
    started = time.perf_counter()
    data = spark.createDataFrame(indexed).repartition(spark.sparkContext.defaultParallelism)
    data = data.cache()
    data.count()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    model = kmeans_pipeline(list(frame.columns), k, max_iter, seed).fit(data)
    fitted = time.perf_counter() - started
    labels = model.transform(data).select("row_id", "cluster").toPandas()
    data.unpersist()
    ordered = labels.sort_values("row_id")["cluster"].to_numpy()
    return loaded, fitted, ordered


def silhouette(scaled: np.ndarray, labels: np.ndarray, sample: np.ndarray) -> float | None:
    chosen = labels[sample]
    if len(set(chosen.tolist())) < 2:
        return None
    return round(float(silhouette_score(scaled[sample], chosen)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    console = Console()
    settings = load_settings()
    config = settings.models.kmeans
    spark = build_session(
        "lambdawatch-bench-kmeans",
        master="local[*]",
        with_kafka=False,
        extra={"spark.ui.enabled": "false", "spark.driver.memory": "4g"},
    )
    spark.sparkContext.setLogLevel("ERROR")
    # Warm-up: JVM start, class loading and JIT are not charged to the first size.
    spark_kmeans(spark, cdn_features(2_000, config.features, 7), config.k, 5, config.seed)
    results = []
    try:
        for size in args.sizes:
            frame = cdn_features(size, config.features, settings.generators.seed)
            data = frame.to_numpy()
            sk_seconds, sk_labels = sklearn_kmeans(data, config.k, config.max_iter, config.seed)
            load_s, fit_s, spark_labels = spark_kmeans(
                spark, frame, config.k, config.max_iter, config.seed
            )
            scaled = StandardScaler().fit_transform(data)
            rng = np.random.default_rng(0)
            sample = rng.choice(size, min(size, SILHOUETTE_SAMPLE), replace=False)
            row = {
                "rows": size,
                "features": len(config.features),
                "k": config.k,
                "sklearn_seconds": round(sk_seconds, 3),
                "spark_fit_seconds": round(fit_s, 3),
                "spark_load_seconds": round(load_s, 3),
                "spark_end_to_end_seconds": round(load_s + fit_s, 3),
                "spark_vs_sklearn_fit": round(fit_s / sk_seconds, 2),
                "spark_vs_sklearn_end_to_end": round((load_s + fit_s) / sk_seconds, 2),
                "silhouette_sklearn": silhouette(scaled, sk_labels, sample),
                "silhouette_spark": silhouette(scaled, spark_labels, sample),
            }
            results.append(row)
            console.print(row)
    finally:
        spark.stop()
    wins = [r["rows"] for r in results if r["spark_end_to_end_seconds"] <= r["sklearn_seconds"]]
    payload = {
        "goal": "MLlib within 10x of scikit-learn end to end, or the size where Spark wins",
        "spark_master": "local[*]",
        "sizes": results,
        "within_10x_at_largest": results[-1]["spark_vs_sklearn_end_to_end"] <= 10,
        "smallest_size_where_spark_wins": min(wins) if wins else None,
    }
    path = write_result("kmeans", payload)
    console.print(f"→ {path}")


if __name__ == "__main__":
    main()
