"""A small client for Airflow 3's public REST API (``/api/v2``), used by the CLI, the demo,
InitialDag (to unpause the scheduled DAGs) and the tests.

Airflow 3 authenticates API calls with a JWT from ``POST /auth/token``; the client fetches one
on first use and again when the server answers 401 (tokens expire).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from lambdawatch.core.secrets import Secrets
from lambdawatch.core.settings import Settings

FINISHED_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    """Airflow answered with an error; the message carries its status and detail."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    timeout: float = 30.0
    _token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, secrets: Secrets) -> AirflowClient:
        return cls(
            settings.airflow_base_url,
            settings.airflow_admin_user,
            secrets.airflow_admin_password.get_secret_value(),
        )

    def _login(self) -> str:
        response = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=self.timeout,
        )
        _raise_for(response)
        return str(response.json()["access_token"])

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(2):
            if self._token is None:
                self._token = self._login()
            response = httpx.request(
                method,
                f"{self.base_url}/api/v2{path}",
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self.timeout,
                **kwargs,
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired: log in again once
                continue
            _raise_for(response)
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    # --- connections --------------------------------------------------------------------------
    def connection(self, connection_id: str) -> dict[str, Any] | None:
        """The connection's fields, or None when Airflow has none by that id."""
        try:
            return dict(self.request("GET", f"/connections/{connection_id}"))
        except AirflowApiError as error:
            if error.status == 404:
                return None
            raise

    def put_connection(self, fields: dict[str, Any], exists: bool) -> None:
        if exists:
            self.request("PATCH", f"/connections/{fields['connection_id']}", json=fields)
        else:
            self.request("POST", "/connections", json=fields)

    # --- DAGs -------------------------------------------------------------------------------
    def dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}")  # type: ignore[no-any-return]

    def dag_ids(self) -> list[str]:
        document = self.request("GET", "/dags", params={"limit": 1000})
        return sorted(entry["dag_id"] for entry in document["dags"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors")["import_errors"]  # type: ignore[no-any-return]

    def wait_for_dags(
        self, dag_ids: list[str], timeout: float = 180, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Until the dag-processor has parsed every one of ``dag_ids`` (fresh stacks lag)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = sorted(set(dag_ids) - set(self.dag_ids()))
            if not missing:
                return
            if time.monotonic() > deadline:
                errors = "; ".join(e["filename"] for e in self.import_errors())
                raise TimeoutError(f"DAGs not parsed: {missing} (import errors in: {errors})")
            sleep(2)

    # --- runs -------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a manual run now; returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def run_ended_at(self, dag_id: str, run_id: str) -> datetime | None:
        """When the run finished (``None`` while it runs)."""
        ended = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}").get("end_date")
        return datetime.fromisoformat(ended) if ended else None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        document = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {entry["task_id"]: entry["state"] for entry in document["task_instances"]}

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 600,
        sleep: Callable[[float], None] = time.sleep,
    ) -> str:
        """Poll until the run finishes; returns ``success`` or ``failed``."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINISHED_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
            sleep(2)
        return state


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise AirflowApiError(
        f"{response.request.method} {response.request.url}: {response.status_code} {detail}",
        response.status_code,
    )
