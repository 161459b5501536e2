"""A small client for Superset's REST API (``/api/v1``), used by the demo and the tests.

Superset issues a JWT from ``POST /api/v1/security/login``; read calls need nothing more.
Lists are paged with Rison ``q`` arguments, which for the simple queries here are plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings

PAGE_SIZE = 100


class SupersetApiError(RuntimeError):
    """Superset answered with an error; the message carries its status and body."""


@dataclass
class SupersetClient:
    base_url: str
    username: str
    password: str
    timeout: float = 60.0
    _token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, secrets: Secrets) -> SupersetClient:
        return cls(
            settings.superset_base_url,
            settings.superset_admin_user,
            secrets.superset_admin_password.get_secret_value(),
        )

    def login(self) -> str:
        response = httpx.post(
            f"{self.base_url}/api/v1/security/login",
            json={
                "username": self.username,
                "password": self.password,
                "provider": "db",
                "refresh": False,
            },
            timeout=self.timeout,
        )
        _raise_for(response)
        self._token = str(response.json()["access_token"])
        return self._token

    def get(self, path: str, **params: Any) -> Any:
        for attempt in range(2):
            token = self._token or self.login()
            response = httpx.get(
                f"{self.base_url}/api/v1{path}",
                params=params or None,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired: log in again once
                continue
            _raise_for(response)
            return response.json()
        raise AssertionError("unreachable")

    def _all(self, resource: str, columns: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 0
        while True:
            query = f"(columns:!({','.join(columns)}),page:{page},page_size:{PAGE_SIZE})"
            result = self.get(f"/{resource}/", q=query)["result"]
            rows.extend(result)
            if len(result) < PAGE_SIZE:
                return rows
            page += 1

    def dashboards(self) -> list[dict[str, Any]]:
        return self._all("dashboard", ["id", "uuid", "dashboard_title", "slug", "url"])

    def charts(self) -> list[dict[str, Any]]:
        return self._all("chart", ["id", "uuid", "slice_name", "viz_type"])

    def chart(self, chart_id: int) -> dict[str, Any]:
        return dict(self.get(f"/chart/{chart_id}")["result"])

    def dashboard_charts(self, dashboard: int | str) -> list[dict[str, Any]]:
        return list(self.get(f"/dashboard/{dashboard}/charts")["result"])

    def chart_data(self, chart_id: int) -> list[dict[str, Any]]:
        """Run the chart's saved query context (what alerts, reports and warm-up run)."""
        return list(self.get(f"/chart/{chart_id}/data/")["result"])


def _raise_for(response: httpx.Response) -> None:
    if response.is_error:
        raise SupersetApiError(
            f"{response.request.method} {response.request.url.path}: "
            f"HTTP {response.status_code} {response.text[:500]}"
        )
