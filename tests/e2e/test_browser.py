"""The UIs in a real browser after the demo: headless Debian chromium driven by Playwright.

Airflow: log in, find InitialDag's run succeeded and every scheduled DAG listed. Superset: log
in, open every dashboard, wait for each chart to render, and fail on an error or "No results"
tile. Screenshots go to the test's output folder (pytest's ``tmp_path``), named by page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from lambdawatch.core.settings import Settings
from lambdawatch.ops.dashboards import DASHBOARDS
from lambdawatch.ops.stack.local import LocalStack
from lambdawatch.pipelines.platform_init import SCHEDULED_DAGS

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]  # fmt: skip
TIMEOUT_MS = 90_000
# Assertions wait as long as actions: with Spark busy on both cores, Airflow's UI can take more
# than expect()'s default 5 s to fetch its translations and the runs list.
expect.set_options(timeout=TIMEOUT_MS)
BROKEN_TILE = re.compile(
    r"No results|Unexpected error|An error occurred|was not found|Data error", re.IGNORECASE
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


def _new_context(browser: Browser, storage_state: Any = None) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": 1600, "height": 1200}, storage_state=storage_state
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = _new_context(browser)
    opened = context.new_page()
    yield opened
    context.close()


LOGIN_ATTEMPTS = 3
LOGIN_WAIT_MS = 30_000


@pytest.fixture(scope="module")
def superset_session(
    browser: Browser, superset_stack: LocalStack, settings: Settings, tmp_path_factory: Any
) -> Any:
    """One Superset login for every dashboard, as a user keeps one session across tabs.

    Twice in full runs the page stayed at /login/ after the click, both fields empty: the form
    (drawn by React after the load event) lost what was typed, or the login was refused. So
    the form is filled once the page is idle, the values are checked before the click, and a
    login that stays at /login/ is tried again, as a user would; what the page said each time
    goes into the failure, so a refusal is told apart from a lost form.
    """
    context = _new_context(browser)
    login = context.new_page()
    password = superset_stack.secrets.superset_admin_password.get_secret_value()
    said: list[str] = []
    try:
        for attempt in range(1, LOGIN_ATTEMPTS + 1):
            login.goto(f"{settings.superset_base_url}/login/", wait_until="networkidle")
            for field, value in (
                ("#username", settings.superset_admin_user),
                ("#password", password),
            ):
                login.locator(field).fill(value)
                expect(login.locator(field)).to_have_value(value)
            login.locator("button[type='submit']").click()
            try:
                login.wait_for_url(re.compile(r"^(?!.*/login/).*$"), timeout=LOGIN_WAIT_MS)
                return context.storage_state()
            except PlaywrightTimeoutError:
                said.append(f"attempt {attempt}: {login.locator('body').inner_text()[:300]!r}")
        raise AssertionError("Superset's login never left /login/:\n" + "\n".join(said))
    except Exception:
        _shot(login, tmp_path_factory.mktemp("superset-login"), "superset-login")
        raise
    finally:
        context.close()


@pytest.fixture
def superset_page(browser: Browser, superset_session: Any) -> Iterator[Page]:
    context = _new_context(browser, superset_session)
    opened = context.new_page()
    yield opened
    context.close()


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _tile_problem(holder: Locator, chart: Any) -> str | None:
    """None once the chart is drawn; otherwise the tile's text (an error, or nothing yet)."""
    text = holder.inner_text()
    if BROKEN_TILE.search(text):
        return text[:200]
    if chart.viz == "big_number":
        drawn = re.search(r"\d", text.replace(chart.name, "")) is not None
    else:
        drawn = holder.locator("canvas, table").count() > 0  # ECharts draw on a canvas
    return None if drawn else text[:200]


def _wait_until_drawn(page: Page, holder: Locator, chart: Any) -> str | None:
    """The tile's problem, waiting while it is merely not drawn yet.

    The spinner goes before ECharts paints its canvas, so a tile read right then holds only its
    title; an error tile is final and is returned at once.
    """
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    problem = _tile_problem(holder, chart)
    while problem is not None and not BROKEN_TILE.search(problem) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        problem = _tile_problem(holder, chart)
    return problem


def _publish(page: Page, name: str) -> None:
    """The README's screenshots, taken anew by every passing run (the viewport, not the page)."""
    page.screenshot(path=str(DOCS_IMAGES / f"{name}.png"))


def test_airflow_shows_initial_dag_succeeded_and_the_scheduled_dags(
    demo_report: Any, airflow_stack: LocalStack, settings: Settings, page: Page, tmp_path: Path
) -> None:
    base = settings.airflow_base_url
    page.goto(f"{base}/")
    page.locator("input[name='username']").fill(settings.airflow_admin_user)
    page.locator("input[name='password']").fill(
        airflow_stack.secrets.airflow_admin_password.get_secret_value()
    )
    page.locator("button[type='submit']").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/(?!auth).*"))
    page.goto(f"{base}/dags")
    try:
        for dag_id in ["InitialDag", *SCHEDULED_DAGS]:
            expect(page.get_by_text(dag_id, exact=True).first).to_be_visible()
        _publish(page, "airflow-dags")
    finally:
        _shot(page, tmp_path, "airflow-dags")
    page.goto(f"{base}/dags/InitialDag/runs")
    try:
        expect(page.get_by_text(re.compile(r"^success$", re.IGNORECASE)).first).to_be_visible()
    finally:
        _shot(page, tmp_path, "airflow-initialdag-runs")


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d.slug for d in DASHBOARDS])
def test_every_dashboard_renders_every_chart_with_data(
    demo_report: Any,
    settings: Settings,
    superset_page: Page,
    tmp_path: Path,
    dashboard: Any,
) -> None:
    page = superset_page
    problems = {}
    try:
        page.goto(f"{settings.superset_base_url}/superset/dashboard/{dashboard.slug}/")
        holders = page.locator("[data-test='dashboard-component-chart-holder']")
        expect(holders).to_have_count(len(dashboard.charts))
        page.wait_for_load_state("networkidle")
        # every chart finished loading: no spinner ("Waiting on …") left on the page
        expect(page.locator("[data-test='loading-indicator']")).to_have_count(0)
        for index, chart in enumerate(dashboard.charts):
            problem = _wait_until_drawn(page, holders.nth(index), chart)
            if problem is not None:
                problems[chart.name] = problem
    finally:  # the screenshot shows what a failed wait was waiting for
        _shot(page, tmp_path, f"superset-{dashboard.slug}")
    assert problems == {}, problems
    if dashboard.slug == "anomalies":
        _publish(page, "anomalies-dashboard")
