"""The database's pure rules: which migrations are pending, and the grants derived from the
table declarations (the real refusals are tried in tests/integration/test_privileges.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdawatch.core import db
from lambdawatch.core.settings import load_settings
from lambdawatch.core.tables import SERVICES, TABLES, VIEWS

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = load_settings(ROOT / "config.json", ROOT / ".env")


def rendered() -> list[str]:
    """The statements as text (``as_string`` needs a connection only for quoting context)."""
    return [statement.as_string(None) for statement in db.privilege_statements(SETTINGS)]  # type: ignore[arg-type]


def granted(verb: str, relation: str) -> set[str]:
    pattern = re.compile(rf'^GRANT {verb} ON "{relation}" TO (.+)$')
    roles: set[str] = set()
    for statement in rendered():
        match = pattern.match(statement)
        if match:
            roles |= {name.strip().strip('"') for name in match.group(1).split(",")}
    return roles


def test_every_table_declares_the_services_that_write_it() -> None:
    assert all(table.writers for table in TABLES.values())
    assert {w for table in TABLES.values() for w in table.writers} == set(SERVICES)
    assert all(not view.writers for view in VIEWS.values())


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_table_is_written_only_by_its_declared_writers(table: str) -> None:
    assert granted("INSERT, UPDATE, DELETE", table) == {
        db.ROLE_NAMES[w] for w in TABLES[table].writers
    }
    assert granted("SELECT", table) == {db.ROLE_NAMES[s] for s in SERVICES}  # no reader


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_the_reader_reads_every_view_and_writes_none(view: str) -> None:
    assert db.ROLE_NAMES["reader"] in granted("SELECT", view)
    assert granted("INSERT, UPDATE, DELETE", view) == set()


def test_grants_start_from_nothing_and_cap_the_reader_s_statements() -> None:
    statements = rendered()
    revokes = [s for s in statements if s.startswith("REVOKE ALL ON ALL TABLES")]
    assert revokes
    assert statements.index(revokes[0]) < min(
        i for i, s in enumerate(statements) if s.startswith('GRANT SELECT ON "')
    )
    assert statements[-1] == (
        'ALTER ROLE "superset" IN DATABASE "lambdawatch" SET statement_timeout = '
        f"'{SETTINGS.superset_statement_timeout_s}s'"
    )


def test_pending_migrations_are_those_the_ledger_lacks(tmp_path: Path) -> None:
    for name in ("001_a.sql", "002_b.sql"):
        (tmp_path / name).write_text(f"-- {name}")
    found = db.discover_migrations(tmp_path)
    ledger = {"001_a": found[0].checksum}
    assert [m.version for m in db.pending_of(found, ledger)] == ["002_b"]
    assert db.pending_of(found, {m.version: m.checksum for m in found}) == []
    with pytest.raises(RuntimeError, match="001_a changed after it was applied"):
        db.pending_of(found, {"001_a": "edited"})


def test_each_role_connects_as_its_own_login() -> None:
    assert db.role_name(SETTINGS, "owner") == SETTINGS.postgres_user
    names = {db.role_name(SETTINGS, role) for role in db.ROLE_NAMES}  # type: ignore[arg-type]
    assert len(names) == len(db.ROLE_NAMES)
    assert SETTINGS.postgres_user not in names


def test_only_the_batch_role_may_run_retention() -> None:
    statements = rendered()
    function = "lambdawatch_apply_retention(text, integer, integer)"
    revoke = statements.index(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    grants = [s for s in statements if s.startswith(f"GRANT EXECUTE ON FUNCTION {function}")]
    assert grants == [f'GRANT EXECUTE ON FUNCTION {function} TO "{db.ROLE_NAMES["batch"]}"']
    assert revoke < statements.index(grants[0])
