"""The dashboards bench holds only the days a running platform would retain."""

from __future__ import annotations

from bench.dashboards import retained
from lambdawatch.core.config_model import RetentionConfig
from lambdawatch.core.settings import load_settings


def test_a_table_holds_only_the_days_its_retention_keeps() -> None:
    shipped = load_settings()
    settings = shipped.model_copy(update={"retention": RetentionConfig(days={"rt_cpu_windows": 7})})
    assert retained(settings, "rt_cpu_windows", 7)  # its end is after today - 7 days
    assert not retained(settings, "rt_cpu_windows", 8)
    assert retained(settings, "rt_weather", 29)  # no retention: every day stays
