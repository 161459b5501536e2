"""A benchmark result says whether the measured tree had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.common import ALLOW_DIRTY, require_clean_tree, tree_is_dirty


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "a.json").write_text("{}\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_only_changes_outside_the_results_make_a_tree_dirty(checkout: Path) -> None:
    assert tree_is_dirty(checkout) is False
    (checkout / "bench" / "results" / "a.json").write_text('{"new": 1}\n')
    (checkout / "bench" / "results" / "b.json").write_text("{}\n")
    assert tree_is_dirty(checkout) is False  # a benchmark writing its results
    (checkout / "code.py").write_text("x = 2\n")
    assert tree_is_dirty(checkout) is True
    (checkout / "code.py").write_text("x = 1\n")
    (checkout / "new.py").write_text("")
    assert tree_is_dirty(checkout) is True  # an untracked file is a change too


def test_a_dirty_tree_is_refused_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.common.tree_is_dirty", lambda: True)
    monkeypatch.delenv(ALLOW_DIRTY, raising=False)
    with pytest.raises(SystemExit, match="uncommitted changes"):
        require_clean_tree()
    monkeypatch.setenv(ALLOW_DIRTY, "1")
    assert require_clean_tree() is True
