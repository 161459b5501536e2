"""Every Airflow Asset, declared once: the producing DAG lists it in ``outlets``, consumers
schedule on it (data-aware scheduling)."""

from __future__ import annotations

from airflow.sdk import Asset

IP_HISTORY = Asset(name="ip_history", uri="postgres://lambdawatch/public/ip_history")
BASELINES = Asset(name="baselines", uri="postgres://lambdawatch/public/baselines")
IP_FORECASTS = Asset(name="ip_forecasts", uri="postgres://lambdawatch/public/ip_forecasts")
CDN_MODEL = Asset(name="cdn_kmeans_model", uri="postgres://lambdawatch/public/model_registry")
RAW_EVENTS = Asset(name="raw_events", uri="file://lambdawatch/history/raw")
