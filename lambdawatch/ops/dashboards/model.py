"""The chart model: datasets, charts and dashboards by what they show, rendered to Superset's YAML.

Superset keeps a chart's form data (``params``, what the browser renders) and its saved
``query_context`` (what ``/api/v1/chart/{id}/data/``, alerts, reports and cache warm-up run)
as two separate documents that must agree. Writing both by hand for every chart drifts, so
each chart is declared here by what it shows, and both are derived from that. The rendered
YAML is committed (``lambdawatch dashboards render``) and a unit test fails when it is stale.
UUIDs are derived from names, so a re-render keeps every reference and a re-import updates.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lambdawatch.core.tables import TIMESTAMPTZ, VIEWS

NAMESPACE = uuid.UUID("6f4f2d1c-5b7e-4c1e-9a44-7a6d2b0f1c3e")
VERSION = "1.0.0"
DATABASE_NAME = "lambdawatch"
# A placeholder: provision.py replaces the whole URI with the deployment's own.
DATABASE_URI = "postgresql+psycopg2://superset:XXXXXXXXXX@postgres:5432/lambdawatch"
# Superset's "Last day" ends at midnight; live dashboards want windows that end now.
LAST_DAY = 'DATEADD(DATETIME("now"), -1, day) : now'
LAST_HOUR = 'DATEADD(DATETIME("now"), -1, hour) : now'
WEEK_AND_NEXT_DAY = 'DATEADD(DATETIME("now"), -7, day) : DATEADD(DATETIME("now"), 1, day)'
DEFAULT_TIME_RANGE = LAST_DAY


def asset_uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


# --- datasets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A Superset dataset on one of the views in ``sql/``; metrics are saved SQL expressions."""

    view: str
    description: str
    time_column: str | None
    metrics: dict[str, str] = field(default_factory=dict)  # name → SQL aggregate

    @property
    def uuid(self) -> str:
        return asset_uuid("dataset", self.view)

    @property
    def columns(self) -> dict[str, str]:
        """Name → type, from the view's declaration (``lambdawatch.core.tables``)."""
        return {column.name: column.type.upper() for column in VIEWS[self.view].columns}


TIMESTAMP = TIMESTAMPTZ.upper()


# --- charts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    """One chart, by what it shows; ``params()`` and ``query_context()`` are derived."""

    name: str
    dataset: Dataset
    # timeseries_line | timeseries_bar | bar | pie | table | big_number | heatmap | histogram
    viz: str
    metrics: tuple[str, ...] = ()
    groupby: tuple[str, ...] = ()
    x_axis: str | None = None  # timeseries & heatmap: default the dataset's time column
    time_grain: str | None = "PT1M"
    columns: tuple[str, ...] = ()  # table (raw rows) | histogram (one column)
    order_by: tuple[str, bool] | None = None  # (column or metric, ascending)
    time_range: str = DEFAULT_TIME_RANGE
    where: str = ""  # a SQL filter, e.g. "severity = 'ERROR'"
    row_limit: int = 10_000
    width: int = 6
    height: int = 50
    options: dict[str, Any] = field(default_factory=dict)  # viz-specific form data

    @property
    def uuid(self) -> str:
        return asset_uuid("chart", self.name)

    @property
    def source(self) -> Dataset:
        return self.dataset

    @property
    def superset_viz(self) -> str:
        return {
            "timeseries_line": "echarts_timeseries_line",
            "timeseries_bar": "echarts_timeseries_bar",
            "bar": "echarts_timeseries_bar",
            "pie": "pie",
            "table": "table",
            "big_number": "big_number_total",
            "heatmap": "heatmap_v2",
            "histogram": "histogram_v2",
        }[self.viz]

    def _time_filter(self) -> dict[str, Any]:
        return {
            "clause": "WHERE",
            "subject": self.source.time_column,
            "operator": "TEMPORAL_RANGE",
            "comparator": self.time_range,
            "expressionType": "SIMPLE",
        }

    def _adhoc_filters(self) -> list[dict[str, Any]]:
        filters = [self._time_filter()] if self.source.time_column else []
        if self.where:
            filters.append(
                {"clause": "WHERE", "sqlExpression": self.where, "expressionType": "SQL"}
            )
        return filters

    @property
    def axis(self) -> str:
        axis = self.x_axis or self.source.time_column
        if axis is None:
            raise ValueError(f"chart {self.name!r} needs an x axis")
        return axis

    def _temporal_axis(self) -> bool:
        return self.source.columns.get(self.axis) == TIMESTAMP

    def params(self) -> dict[str, Any]:
        """Superset's form data: what the browser builds the chart from."""
        base: dict[str, Any] = {
            "datasource": f"{self.source.uuid}__table",  # replaced by id on import
            "viz_type": self.superset_viz,
            "adhoc_filters": self._adhoc_filters(),
            "row_limit": self.row_limit,
        }
        if self.viz in {"timeseries_line", "timeseries_bar", "bar"}:
            base.update(
                x_axis=self.axis,
                metrics=list(self.metrics),
                groupby=list(self.groupby),
                x_axis_sort_asc=True,
                show_legend=True,
                rich_tooltip=True,
                truncate_metric=True,
                # live data is sparse at first: a lone point needs a marker to be seen
                markerEnabled=True,
                markerSize=4,
            )
            if self._temporal_axis():
                base["time_grain_sqla"] = self.time_grain
        elif self.viz == "pie":
            base.update(
                metric=self.metrics[0],
                groupby=list(self.groupby),
                sort_by_metric=True,
                show_labels=True,
                label_type="key_percent",
                show_legend=True,
            )
        elif self.viz == "big_number":
            base.update(metric=self.metrics[0], header_font_size=0.4, subheader_font_size=0.15)
        elif self.viz == "table":
            if self.metrics:
                base.update(query_mode="aggregate", metrics=list(self.metrics))
                base["groupby"] = list(self.groupby)
            else:
                base.update(query_mode="raw", all_columns=list(self.columns))
            if self.order_by:
                column, ascending = self.order_by
                key = "timeseries_limit_metric" if self.metrics else "order_by_cols"
                base[key] = column if self.metrics else [json.dumps([column, ascending])]
                base["order_desc"] = not ascending
            base["server_pagination"] = False
        elif self.viz == "heatmap":
            base.update(
                x_axis=self.axis,
                time_grain_sqla=self.time_grain,
                groupby=self.groupby[0],
                metric=self.metrics[0],
                normalize_across="heatmap",
                sort_x_axis="alpha_asc",  # time order (Superset's default follows the rows)
                sort_y_axis="alpha_asc",
                linear_color_scheme="blue_white_yellow",
                legend_type="continuous",
            )
        elif self.viz == "histogram":
            base.update(column=self.columns[0], groupby=list(self.groupby), bins=20)
        base.update(self.options)
        return base

    def _axis_column(self) -> dict[str, Any] | str:
        if not self._temporal_axis():
            return self.axis
        return {
            "timeGrain": self.time_grain,
            "columnType": "BASE_AXIS",
            "sqlExpression": self.axis,
            "label": self.axis,
            "expressionType": "SQL",
        }

    def _query(self) -> dict[str, Any]:
        """The one query Superset's own front end would send for this chart."""
        filters = (
            [{"col": self.source.time_column, "op": "TEMPORAL_RANGE", "val": self.time_range}]
            if self.source.time_column
            else []
        )
        query: dict[str, Any] = {
            "filters": filters,
            "extras": {"having": "", "where": f"({self.where})" if self.where else ""},
            "applied_time_extras": {},
            "columns": [],
            "metrics": list(self.metrics),
            "orderby": [],
            "annotation_layers": [],
            "row_limit": self.row_limit,
            "series_limit": 0,
            "order_desc": True,
            "url_params": {},
            "custom_params": {},
            "custom_form_data": {},
            "post_processing": [],
        }
        if self.viz in {"timeseries_line", "timeseries_bar", "bar"}:
            query["columns"] = [self._axis_column(), *self.groupby]
            query["series_columns"] = list(self.groupby)
            query["orderby"] = [[self.metrics[0], False]]
            query["time_offsets"] = []
            aggregates = {m: {"operator": "mean"} for m in self.metrics}
            query["post_processing"] = [
                {
                    "operation": "pivot",
                    "options": {
                        "index": [self.axis],
                        "columns": list(self.groupby),
                        "aggregates": aggregates,
                        "drop_missing_columns": False,
                    },
                },
                {"operation": "flatten"},
            ]
        elif self.viz == "pie":
            query["columns"] = list(self.groupby)
            query["orderby"] = [[self.metrics[0], False]]
        elif self.viz == "table":
            query["columns"] = list(self.groupby if self.metrics else self.columns)
            if self.order_by:
                query["orderby"] = [[self.order_by[0], self.order_by[1]]]
        elif self.viz == "heatmap":
            query["columns"] = [self._axis_column(), self.groupby[0]]
            query["orderby"] = [[self.metrics[0], False]]
        elif self.viz == "histogram":
            query["columns"] = [self.columns[0], *self.groupby]
            query["metrics"] = []
            query["post_processing"] = [
                {
                    "operation": "histogram",
                    "options": {
                        "column": self.columns[0],
                        "groupby": list(self.groupby),
                        "bins": 20,
                        "cumulative": False,
                        "normalize": False,
                    },
                }
            ]
        return query

    def query_context(self) -> dict[str, Any]:
        return {
            "datasource": {"id": 0, "type": "table"},  # replaced by the real id on import
            "force": False,
            "queries": [self._query()],
            "form_data": self.params(),
            "result_format": "json",
            "result_type": "full",
        }


# --- dashboards -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dashboard:
    title: str
    slug: str
    refresh_seconds: int
    rows: tuple[tuple[Chart, ...], ...]
    description: str = ""

    @property
    def uuid(self) -> str:
        return asset_uuid("dashboard", self.slug)

    @property
    def charts(self) -> list[Chart]:
        return [chart for row in self.rows for chart in row]


def line_chart(name: str, dataset: Dataset, metrics: Iterable[str], **kw: Any) -> Chart:
    return Chart(name, dataset, "timeseries_line", metrics=tuple(metrics), **kw)


# --- rendering ------------------------------------------------------------------------------------
def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def database_yaml() -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME,
        "sqlalchemy_uri": DATABASE_URI,
        "cache_timeout": None,
        "expose_in_sqllab": False,  # provision.py follows superset_sql_lab
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "extra": {"allows_virtual_table_explore": False},
        "uuid": asset_uuid("database", DATABASE_NAME),
        "version": VERSION,
    }


def dataset_yaml(dataset: Dataset) -> dict[str, Any]:
    return {
        "table_name": dataset.view,
        "main_dttm_col": dataset.time_column,
        "description": dataset.description,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "schema": "public",
        "sql": None,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": dataset.uuid,
        "metrics": [
            {
                "metric_name": name,
                "verbose_name": name.replace("_", " "),
                "metric_type": None,
                "expression": expression,
                "description": None,
                "d3format": None,
                "extra": None,
                "warning_text": None,
            }
            for name, expression in dataset.metrics.items()
        ]
        or [
            {
                "metric_name": "count",
                "verbose_name": "COUNT(*)",
                "metric_type": "count",
                "expression": "COUNT(*)",
                "description": None,
                "d3format": None,
                "extra": None,
                "warning_text": None,
            }
        ],
        "columns": [
            {
                "column_name": name,
                "verbose_name": None,
                "is_dttm": kind == TIMESTAMP,
                "is_active": True,
                "type": kind,
                "advanced_data_type": None,
                "groupby": True,
                "filterable": True,
                "expression": None,
                "description": None,
                "python_date_format": None,
                "extra": None,
            }
            for name, kind in dataset.columns.items()
        ],
        "version": VERSION,
        "database_uuid": asset_uuid("database", DATABASE_NAME),
    }


def chart_yaml(chart: Chart) -> dict[str, Any]:
    return {
        "slice_name": chart.name,
        "description": None,
        "certified_by": None,
        "certification_details": None,
        "viz_type": chart.superset_viz,
        "params": chart.params(),
        "query_context": json.dumps(chart.query_context(), sort_keys=True),
        "cache_timeout": None,
        "uuid": chart.uuid,
        "version": VERSION,
        "dataset_uuid": chart.source.uuid,
    }


def position(dashboard: Dashboard) -> dict[str, Any]:
    """Superset's layout tree: header, grid, one ROW per row, one CHART per chart."""
    layout: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": dashboard.title}},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
    }
    for r, row in enumerate(dashboard.rows, start=1):
        row_id = f"ROW-{r}"
        layout["GRID_ID"]["children"].append(row_id)
        layout[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for c, chart in enumerate(row, start=1):
            chart_id = f"CHART-{r}-{c}"
            layout[row_id]["children"].append(chart_id)
            layout[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": chart.width,
                    "height": chart.height,
                    "chartId": 0,  # replaced by the imported chart's id
                    "uuid": chart.uuid,
                    "sliceName": chart.name,
                },
            }
    return layout


def dashboard_yaml(dashboard: Dashboard) -> dict[str, Any]:
    return {
        "dashboard_title": dashboard.title,
        "description": dashboard.description,
        "css": "",
        "slug": dashboard.slug,
        "certified_by": None,
        "certification_details": None,
        "published": True,
        "uuid": dashboard.uuid,
        "position": position(dashboard),
        "metadata": {
            "refresh_frequency": dashboard.refresh_seconds,
            "timed_refresh_immune_slices": [],
            "expanded_slices": {},
            "color_scheme": "supersetColors",
            "label_colors": {},
            "shared_label_colors": [],
            "cross_filters_enabled": True,
            "native_filter_configuration": [],
            "chart_configuration": {},
        },
        "version": VERSION,
    }


def _file_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".yaml"


def render_files(datasets: Iterable[Dataset], dashboards: Iterable[Dashboard]) -> dict[str, str]:
    """Every asset file Superset imports, relative path → YAML text."""
    files = {
        "metadata.yaml": _dump(
            {"version": VERSION, "type": "assets", "timestamp": "2026-01-01T00:00:00+00:00"}
        ),
        f"databases/{DATABASE_NAME}.yaml": _dump(database_yaml()),
    }
    for dataset in datasets:
        files[f"datasets/{DATABASE_NAME}/{dataset.view}.yaml"] = _dump(dataset_yaml(dataset))
    for dashboard in dashboards:
        for chart in dashboard.charts:
            files[f"charts/{_file_name(chart.name)}"] = _dump(chart_yaml(chart))
        files[f"dashboards/{_file_name(dashboard.slug)}"] = _dump(dashboard_yaml(dashboard))
    return files


def write_files(root: Path, files: dict[str, str]) -> list[Path]:
    """Write rendered assets under ``root`` and remove asset files no longer rendered."""
    for folder in ("databases", "datasets", "charts", "dashboards"):
        for stale in (root / folder).rglob("*.yaml") if (root / folder).exists() else []:
            if stale.relative_to(root).as_posix() not in files:
                stale.unlink()
    written = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
