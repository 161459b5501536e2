"""A batch job's JSON summary reaches whoever submitted it, however it was launched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdawatch.core.catalog import SUMMARY_FILE
from spark_apps.jobs.common import print_summary


def test_the_summary_is_the_last_stdout_line_and_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "summaries" / "job.json"
    monkeypatch.setenv(SUMMARY_FILE, str(target))
    print_summary({"rows": 3, "at": "2026-01-01"})
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"rows": 3, "at": "2026-01-01"}
    assert json.loads(target.read_text()) == {"rows": 3, "at": "2026-01-01"}
    assert list(target.parent.iterdir()) == [target]  # no partial file left behind


def test_without_a_file_named_only_stdout_carries_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SUMMARY_FILE, raising=False)
    print_summary({"rows": 1})
    assert capsys.readouterr().out == '{"rows": 1}\n'
